""" "Looks alike": similar-items quality on real photos, the store's way, without leakage.

    python bench/quality.py [--dataset myntra|psychobunny|both] [--epochs 6] [--json out.json]

For each photo set, in a throw-away database, with the project's own commands:

1. Split by design (psychobunny: design_code; myntra: product): about 70 % of the designs form a *labelled*
   store (a ZIP holding a CSV and its photos: category, colour, design, and for psychobunny all photos of
   one handle as one product), the rest a store of *new* products (a folder of photos: one photo each, no
   category, no colour), like new arrivals or ad creatives. Nothing of a new product is in the labelled
   store, not even another colourway of its design.
2. ``import_catalog`` both; ``embed_catalog --recipe cnn`` (the CNN alone) and ``--recipe combined`` (CNN +
   colour + pattern); ``adapt_embeddings`` (learns from the whole catalog: only the labelled store carries
   labels).
3. ``evaluate_similarity --store <new store> --space <each space>`` scores among the new products only:
   same article type (precision@10, micro and macro), same article type + colour (precision@10), and for
   psychobunny the other photos of the same product (hit-rate@5) and same article type (precision@10).

Colour alone is scored on the same photos: the classic square-root RGB 8x8x8 histogram and the product's
CIELAB colour descriptor (``recommendations.colour``). Photos come from LOOKALIKE_DATA_DIR.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=["myntra", "psychobunny", "both"], default="both")
    parser.add_argument(
        "--labelled-share", type=float, default=0.7, help="share of designs in the labelled store"
    )
    parser.add_argument("--epochs", type=int, default=None, help="adaptation epochs (default ADAPT_EPOCHS)")
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="at most this many designs per set (0: all)")
    parser.add_argument("--json", default=None, help="write all results here")
    return parser.parse_args()


args = parse_args()
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(os.environ.get("LOOKALIKE_DATA_DIR", ROOT.parent / "shared" / "data"))

from bench._database import benchmark_database

K = 10


def _in_labelled(key: str) -> bool:
    digest = int(hashlib.sha256(f"bench-quality:{key}".encode()).hexdigest()[:8], 16)
    return digest % 10_000 < args.labelled_share * 10_000


def read_rows(name: str) -> list[dict[str, str]]:
    with open(DATA_DIR / name / "labels.csv", newline="", encoding="utf-8") as handle:
        rows, seen = [], set()
        for row in csv.DictReader(handle):
            if row["md5"] not in seen:  # byte-identical photos would be trivially similar
                seen.add(row["md5"])
                rows.append(row)
    return rows


def dataset(name: str) -> dict:
    """Labelled products (one per handle or id, with all photos) and new products (one per photo)."""
    rows = read_rows(name)
    if name == "myntra":
        design, product, kind, colour, photo = "id", "id", "articleType", "baseColour", "image"
    else:
        design, product, kind, colour, photo = "design_code", "handle", "article_type", "colour_name", "image"
    designs = sorted({row[design] for row in rows})
    if args.limit:
        designs = designs[: args.limit]
    chosen = set(designs)
    labelled: dict[str, list[dict[str, str]]] = defaultdict(list)
    new: list[dict[str, str]] = []
    for row in rows:
        if row[design] not in chosen:
            continue
        if _in_labelled(row[design]):
            labelled[row[product]].append(row)
        else:
            new.append(row)
    return {"name": name, "labelled": labelled, "new": new, "kind": kind, "colour": colour, "photo": photo}


def write_sources(data: dict, folder: Path) -> tuple[Path, Path, Path]:
    """labelled.zip (CSV + photos), new/ (photos) and new-labels.csv (for scoring only)."""
    images = DATA_DIR / data["name"] / "images"
    archive = folder / "labelled.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(
            ["id", "title", "category", "colour", "design", "price", "image_link", "additional_image_link"]
        )
        for key, photos in sorted(data["labelled"].items()):
            first = photos[0]
            names = [row[data["photo"]] for row in photos]
            writer.writerow(
                [
                    key,
                    first.get("productDisplayName") or key,
                    first[data["kind"]],
                    first[data["colour"]],
                    first.get("design_code") or key,
                    "10.00",
                    names[0],
                    "|".join(names[1:]),
                ]
            )
            for name in names:
                zipped.write(images / name, name)
        zipped.writestr("catalog.csv", table.getvalue())
    new_folder = folder / "new"
    new_folder.mkdir()
    labels = folder / "new-labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "kind", "colour", "product"])
        for row in data["new"]:
            shutil.copyfile(images / row[data["photo"]], new_folder / row[data["photo"]])  # links are refused
            writer.writerow(
                [row[data["photo"]], row[data["kind"]], row[data["colour"]], row.get("handle", "")]
            )
    return archive, new_folder, labels


def run_command(name: str, *arguments: str, **options) -> str:
    from django.core.management import call_command

    out = io.StringIO()
    started = time.perf_counter()
    errors = io.StringIO()
    try:
        call_command(name, *arguments, stdout=out, stderr=errors, **options)
    except Exception:
        print(errors.getvalue()[-3000:])
        raise
    print(f"  {name} {' '.join(arguments)} {options or ''}: {time.perf_counter() - started:.0f} s")
    return out.getvalue()


def score(space_id: int | None, store_id: int, labels: Path, relevant_if: str, k: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        run_command(
            "evaluate_similarity",
            labels=str(labels),
            id_column="file",
            relevant_if=relevant_if,
            k=k,
            store=store_id,
            space=space_id,
            method="exact",
            json=out.name,
        )
        return json.loads(Path(out.name).read_text())


def colour_baselines(
    name: str, store_id: int, labels: Path, combined_space_id: int
) -> dict[str, dict[str, dict]]:
    """Colour alone on the same new products: sqrt RGB histogram of the photo, and the CIELAB descriptor."""
    import numpy as np
    from PIL import Image

    from recommendations import colour
    from recommendations.evaluation import exact_rankings, read_labels, score_rankings
    from recommendations.models import ProductEmbedding
    from shop.models import ProductImage

    images = {
        product_id: (external, name)
        for product_id, external, name in ProductImage.objects.filter(product__store_id=store_id)
        .order_by("position")
        .values_list("product_id", "product__external_id", "image")
    }
    descriptors = dict(
        ProductEmbedding.objects.filter(space_id=combined_space_id, product_id__in=list(images)).values_list(
            "product_id", "descriptor"
        )
    )
    ids = [pk for pk in sorted(images) if descriptors.get(pk) is not None]
    from django.core.files.storage import default_storage

    histograms = []
    for pk in ids:
        with default_storage.open(images[pk][1]) as handle, Image.open(handle) as image:
            pixels = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.int64) // 32
        counts = np.bincount(
            (pixels[..., 0] * 64 + pixels[..., 1] * 8 + pixels[..., 2]).ravel(), minlength=512
        )
        histograms.append(np.sqrt(counts / counts.sum()))
    methods = {
        "colour: sqrt RGB histogram": np.asarray(histograms, dtype=np.float32),
        "colour: CIELAB descriptor": np.stack(
            [np.asarray(descriptors[pk], dtype=np.float32)[: colour.COLOUR_DIMENSIONS] for pk in ids]
        ),
    }
    results: dict[str, dict[str, dict]] = {}
    for method, vectors in methods.items():
        results[method] = {}
        for relevant_if, k in metric_columns(name):
            keys_by_file = read_labels(labels, id_column="file", relevant_if=relevant_if.split(",")).keys
            keys = {pk: keys_by_file[images[pk][0]] for pk in ids if images[pk][0] in keys_by_file}
            usable = [pk for pk in ids if pk in keys]
            rows = [ids.index(pk) for pk in usable]
            results[method][relevant_if] = score_rankings(
                exact_rankings(usable, vectors[rows], k), keys, k
            ).as_dict()
    return results


def metric_columns(name: str) -> list[tuple[str, int]]:
    # Myntra has one photo per product: "the other photos of the same product" exists for psychobunny only.
    return [("kind", K), ("kind,colour", K)] + ([("product", 5)] if name == "psychobunny" else [])


def goal_row(name: str, results: dict[str, dict]) -> list[str]:
    kind, both, product = results["kind"], results["kind,colour"], results.get("product")
    cells = [
        f"{kind['micro']['precision']:.3f} / {kind['macro']['precision']:.3f}",
        f"{both['micro']['precision']:.3f}",
    ]
    cells.append(f"{product['micro']['hit_rate']:.3f}" if product and product["queries"] else "–")
    return [name, *cells]


def evaluate(data: dict) -> dict:
    from recommendations.models import Adaptation, EmbeddingSpace
    from shop.models import Store

    with tempfile.TemporaryDirectory() as folder:
        archive, new_folder, labels = write_sources(data, Path(folder))
        print(
            f"{data['name']}: {sum(len(p) for p in data['labelled'].values()):,} photos of "
            f"{len(data['labelled']):,} labelled products; {len(data['new']):,} new products"
        )
        run_command(
            "import_catalog", str(archive), store="Labelled", currency="EUR", sync=True, no_progress=True
        )
        run_command(
            "import_catalog",
            str(new_folder),
            store="New arrivals",
            currency="EUR",
            sync=True,
            no_progress=True,
        )
        new_store = Store.objects.get(name="New arrivals")
        run_command("embed_catalog", encoder=args.encoder, recipe="cnn", no_progress=True)
        run_command("embed_catalog", encoder=args.encoder, recipe="combined", no_progress=True)
        cnn = EmbeddingSpace.objects.get(recipe_id="")
        combined = EmbeddingSpace.objects.get(recipe__kind="combined")
        adapt_options = {"epochs": args.epochs} if args.epochs else {}
        print(run_command("adapt_embeddings", **adapt_options))
        run = Adaptation.objects.latest("created_at")
        spaces = {"ImageNet CNN alone": cnn.pk, "combined (CNN + colour + pattern)": combined.pk}
        if run.space_id:
            spaces["adapted to the catalog"] = run.space_id
        results: dict[str, dict[str, dict]] = colour_baselines(
            data["name"], new_store.pk, labels, combined.pk
        )
        for method, space_id in spaces.items():
            results[method] = {
                relevant_if: score(space_id, new_store.pk, labels, relevant_if, k)
                for relevant_if, k in metric_columns(data["name"])
            }
    return {
        "dataset": data["name"],
        "adaptation": {"status": run.status, "message": run.message, **run.report},
        "results": results,
    }


def print_table(outcome: dict) -> None:
    print(f"\n{outcome['dataset']} (new products only)")
    print(f"| method | same kind p@{K} micro / macro | same kind + colour p@{K} | same product hit-rate@5 |")
    print("|---|---:|---:|---:|")
    for method, results in outcome["results"].items():
        print("| " + " | ".join(goal_row(method, results)) + " |")
    print(f"adaptation: {outcome['adaptation']['status']}: {outcome['adaptation']['message']}")


def main() -> None:
    import torch

    from bench._common import print_hardware

    torch.set_num_threads(args.threads)
    names = ["myntra", "psychobunny"] if args.dataset == "both" else [args.dataset]
    outcomes = []
    for name in names:
        if not (DATA_DIR / name / "labels.csv").exists():
            sys.exit(f"Photo set {name} not found under {DATA_DIR} (set LOOKALIKE_DATA_DIR).")
        with benchmark_database(f"quality_{name}"):
            if not outcomes:
                print_hardware()
            outcomes.append(evaluate(dataset(name)))
            print_table(outcomes[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(outcomes, indent=2))


if __name__ == "__main__":
    main()
