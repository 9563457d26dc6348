"""Similar-items quality on real product photos: import -> embed -> evaluate, against a colour histogram.

    python bench/quality.py [--myntra 1000] [--psychobunny 0] [--k 10] [--encoder efficientnet_lite0]

- myntra: a seeded sample of labelled fashion photos (byte-identical duplicates dropped by md5); relevant =
  same articleType, then same articleType + baseColour; precision@k etc., micro and macro.
- psychobunny: every photo is imported as its own product; relevant = the other photos of the same product
  (handle): hit-rate@k and recall@k. ``--psychobunny 0`` imports all 3,945 photos.

Each photo becomes a Store/Product/ProductImage row in a throw-away database; vectors are stored as the
shop stores them and ``manage.py evaluate_similarity`` scores what the shop serves (HNSW or exact scan, as
configured). In the same run: the same embeddings ranked by brute force, an 8x8x8 RGB colour histogram
(cosine) and random rankings as baselines. Photos are read from LOOKALIKE_DATA_DIR (default ../shared/data).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--myntra", type=int, default=1000, help="photos sampled from myntra (0: all)")
    parser.add_argument("--psychobunny", type=int, default=0, help="photos sampled from psychobunny (0: all)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--weights", default="DEFAULT")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write all results here")
    parser.add_argument(
        "--save-vectors", default=None, help="save the product vectors (.npy) for other benches"
    )
    return parser.parse_args()


args = parse_args()
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(os.environ.get("LOOKALIKE_DATA_DIR", ROOT.parent / "shared" / "data"))

from bench._database import benchmark_database


def sample_rows(labels: Path, *, size: int, id_column: str) -> list[dict[str, str]]:
    """Rows of a labels CSV without md5 duplicates, a seeded sample of ``size`` (0: all)."""
    with open(labels, newline="", encoding="utf-8") as handle:
        rows, seen = [], set()
        for row in csv.DictReader(handle):
            if row["md5"] in seen:
                continue
            seen.add(row["md5"])
            rows.append(row)
    if size and size < len(rows):
        rows = random.Random(args.seed).sample(rows, size)
    return sorted(rows, key=lambda row: row[id_column])


def import_photos(
    store_name: str,
    rows: list[dict[str, str]],
    *,
    folder: Path,
    id_column: str,
    image_column: str,
    title_column: str,
    category_columns: list[str],
) -> tuple[object, dict[int, Path]]:
    """One Product + ProductImage per row, the photo file put into media storage as an import would.

    Rows are bulk-created, so no post_save signal queues embedding tasks: the run embeds them itself.
    """
    import hashlib

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from shop.models import Category, Product, ProductImage, Store

    store = Store.objects.create(name=store_name)
    categories = {
        names: Category.from_path(list(names))
        for names in {tuple(row[c] for c in category_columns) for row in rows}
    }
    products = Product.objects.bulk_create(
        Product(
            store=store,
            external_id=row[id_column],
            title=row[title_column][:500],
            price="10.00",
            category=categories[tuple(row[c] for c in category_columns)],
        )
        for row in rows
    )
    images, files = [], {}
    for product, row in zip(products, rows, strict=True):
        path = folder / row[image_column]
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        name = default_storage.save(f"products/{digest[:2]}/{digest}.jpg", ContentFile(data))
        images.append(ProductImage(product=product, image=name, sha256=digest, status="stored"))
        files[product.pk] = path
    ProductImage.objects.bulk_create(images)
    return store, files


def embed_products(files: dict[int, Path]):
    """Embed every product's photo through the shop's embedding service (storage -> decode -> model ->
    vectors in Postgres, the HNSW index built on activation); returns the space and images/s."""
    from recommendations import services
    from shop.models import ProductImage

    space = services.prepare_space(args.encoder, args.weights)  # the first space is activated at once
    image_ids = list(ProductImage.objects.filter(product_id__in=list(files)).values_list("pk", flat=True))
    report = services.embed_images(image_ids, space=space, batch_size=args.batch_size)
    if report.failed:
        print(f"  {len(report.failed)} photos failed: {report.failed[:3]}")
    if args.save_vectors:
        import numpy as np

        from recommendations.selectors import load_space_vectors

        np.save(args.save_vectors, load_space_vectors(space).vectors)
    return space, len(image_ids) / report.seconds


def colour_histograms(files: dict[int, Path]):
    """8x8x8 RGB histogram of each photo (64x64 thumbnail), L2-normalised: the classic baseline."""
    import numpy as np
    from PIL import Image

    vectors = np.empty((len(files), 512), dtype=np.float32)
    for row, path in enumerate(files.values()):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.int64) // 32
        bins = pixels[..., 0] * 64 + pixels[..., 1] * 8 + pixels[..., 2]
        vectors[row] = np.bincount(bins.ravel(), minlength=512)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def evaluate_dataset(name: str, *, labels: Path, id_column: str, relevant_if: str, store, files, histograms):
    """The served and exact rankings (through the command) and the baselines, on the same products."""
    from django.core.management import call_command

    from recommendations.evaluation import exact_rankings, read_labels, score_rankings
    from recommendations.models import ProductEmbedding
    from shop.models import Product

    results = []
    for method in ("served", "exact"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out, open(os.devnull, "w") as quiet:
            started = time.perf_counter()
            call_command(
                "evaluate_similarity",
                labels=str(labels),
                id_column=id_column,
                relevant_if=relevant_if,
                k=args.k,
                store=store.pk,
                dedupe_column="md5",
                method=method,
                json=out.name,
                stdout=quiet,
            )
            payload = json.loads(Path(out.name).read_text())
        results.append(
            {"method": f"{args.encoder} ({method})", "seconds": time.perf_counter() - started, **payload}
        )

    columns = [c.strip() for c in relevant_if.split(",")]
    keys_by_id = read_labels(labels, id_column=id_column, relevant_if=columns, dedupe_column="md5").keys
    embedded = set(ProductEmbedding.objects.filter(product__store=store).values_list("product_id", flat=True))
    external = dict(Product.objects.filter(pk__in=embedded).values_list("pk", "external_id"))
    ids = [pk for pk in files if pk in embedded]
    keys = {pk: keys_by_id[external[pk]] for pk in ids}
    rows = [list(files).index(pk) for pk in ids]
    colour = score_rankings(exact_rankings(ids, histograms[rows], args.k), keys, args.k)
    results.append({"method": "colour histogram 8x8x8", **colour.as_dict()})
    rng = random.Random(args.seed)
    random_rankings = {pk: rng.sample([other for other in ids if other != pk], args.k) for pk in ids}
    results.append({"method": "random", **score_rankings(random_rankings, keys, args.k).as_dict()})
    for result in results:
        result["dataset"], result["relevant_if"] = name, relevant_if
    return results


def print_table(results: list[dict]) -> None:
    k = args.k
    print(
        f"\n| data | relevant if | method | p@{k} micro | p@{k} macro | recall@{k} | hit-rate@{k} | "
        f"nDCG@{k} | MAP@{k} | p@{k} vs colour |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        colour = next(
            r
            for r in results
            if r["dataset"] == result["dataset"]
            and r["relevant_if"] == result["relevant_if"]
            and r["method"].startswith("colour")
        )
        ratio = result["micro"]["precision"] / colour["micro"]["precision"]
        micro, macro = result["micro"], result["macro"]
        print(
            f"| {result['dataset']} | {result['relevant_if']} | {result['method']} | "
            f"{micro['precision']:.3f} | {macro['precision']:.3f} | {micro['recall']:.3f} | "
            f"{micro['hit_rate']:.3f} | {micro['ndcg']:.3f} | {micro['map']:.3f} | {ratio:.2f}x |"
        )


def main() -> None:
    import torch

    from bench._common import print_hardware

    torch.set_num_threads(args.threads)
    myntra, psychobunny = DATA_DIR / "myntra", DATA_DIR / "psychobunny"
    if not (myntra / "labels.csv").exists() or not (psychobunny / "labels.csv").exists():
        sys.exit(f"Photo sets not found under {DATA_DIR} (set LOOKALIKE_DATA_DIR).")
    results: list[dict] = []
    with benchmark_database("quality"):
        print_hardware()
        started = time.perf_counter()
        myntra_rows = sample_rows(myntra / "labels.csv", size=args.myntra, id_column="id")
        myntra_store, myntra_files = import_photos(
            "Myntra sample",
            myntra_rows,
            folder=myntra / "images",
            id_column="id",
            image_column="image",
            title_column="productDisplayName",
            category_columns=["masterCategory", "subCategory", "articleType"],
        )
        bunny_rows = sample_rows(psychobunny / "labels.csv", size=args.psychobunny, id_column="image")
        bunny_store, bunny_files = import_photos(
            "Psychobunny",
            bunny_rows,
            folder=psychobunny / "images",
            id_column="image",
            image_column="image",
            title_column="handle",
            category_columns=["department", "article_type"],
        )
        print(
            f"imported {len(myntra_files):,} myntra + {len(bunny_files):,} psychobunny photos "
            f"in {time.perf_counter() - started:.0f} s"
        )
        space, images_per_s = embed_products({**myntra_files, **bunny_files})
        print(
            f"embedded with {space.encoder} ({space.weights_id}, {space.dimensions}-d): "
            f"{images_per_s:.1f} images/s"
        )
        myntra_histograms, bunny_histograms = colour_histograms(myntra_files), colour_histograms(bunny_files)
        for relevant_if in ("articleType", "articleType,baseColour"):
            results += evaluate_dataset(
                "myntra",
                labels=myntra / "labels.csv",
                id_column="id",
                relevant_if=relevant_if,
                store=myntra_store,
                files=myntra_files,
                histograms=myntra_histograms,
            )
        # handle = one product in one colour (its other photos); style_code = the same garment in any colour.
        for relevant_if in ("handle", "style_code"):
            results += evaluate_dataset(
                "psychobunny",
                labels=psychobunny / "labels.csv",
                id_column="image",
                relevant_if=relevant_if,
                store=bunny_store,
                files=bunny_files,
                histograms=bunny_histograms,
            )
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
