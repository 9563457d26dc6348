"""Catalog import speed: a Shopify-shaped store of 10,000 products with photos, served on loopback.

    python bench/import.py [--products 10000] [--concurrency 8] [--keep-db]

The store (tests/scraper/fixture_store.py) runs in a child process, as a remote shop would, with every
photo drawn before the clock starts. Three timings in one process, on one machine:

* baseline: the same pages and photos fetched through the guarded client (robots.txt, throttle, size caps,
  image verification), nothing written: what the network path alone costs;
* import: ``run_import`` as ``import_catalog --sync`` runs it: products upserted, photos downloaded,
  verified, stored once per sha256 and recorded; no embedding worker runs (the receivers' tasks, if any,
  are queued, not run);
* re-import: the same catalog again, which changes nothing and downloads nothing.

Politeness relaxed for loopback, and said in the output: no interval between requests, ``--concurrency``
requests in flight per domain (the Redis throttle is still in the path). A fresh database is created
and dropped (``--keep-db`` keeps it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight per domain")
    parser.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    return parser.parse_args()


def serve_store(product_count: int, ready: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    """The child process: draw every photo, then serve until told to stop."""
    from tests.scraper.fixture_store import run_fixture_store

    with run_fixture_store(product_count=product_count) as store:
        for product in store.catalog.products():
            for name in product.image_names:
                store.image(name)
        ready.put(store.base_url)
        stop.wait()


def main() -> None:
    args = parse_args()
    run_id = f"bench-import-{os.getpid()}"
    os.environ["LOOKALIKE_TEST_RUN_ID"] = run_id
    os.environ["LOOKALIKE_TEST_DB"] = f"bench_import_{os.getpid()}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import setup_databases, teardown_databases

    from bench._common import markdown_table, print_hardware

    settings.SCRAPER = {
        **settings.SCRAPER,
        "ALLOW_HOSTS": ["127.0.0.1"],
        "DOMAIN_MIN_INTERVAL_S": 0.0,
        "DOMAIN_MAX_CONCURRENCY": args.concurrency,
        "DOWNLOAD_THREADS": args.concurrency,
    }
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)

    ready: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve_store, args=(args.products, ready, stop), daemon=True)
    started = time.perf_counter()
    server.start()
    base_url = ready.get(timeout=600)
    drawn_s = time.perf_counter() - started
    print(f"fixture store: {args.products:,} products on {base_url}, photos drawn in {drawn_s:.0f} s")
    print_hardware()
    print(
        f"politeness for loopback: DOMAIN_MIN_INTERVAL_S=0, DOMAIN_MAX_CONCURRENCY={args.concurrency}, "
        f"DOWNLOAD_THREADS={args.concurrency}, robots.txt respected, Redis throttle on"
    )

    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        measurements, products, images = run(base_url, args)
    finally:
        stop.set()
        server.join(timeout=10)
        if not args.keep_db:
            teardown_databases(old_config, verbosity=0)
        shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
        drop_queued_messages(settings)
    print()
    print(markdown_table(measurements, baseline="baseline: fetch pages + photos, no writes"))
    importing = next(m for m in measurements if m.name.startswith("import"))
    baseline = measurements[0]
    print(f"\nimport ÷ fetch-only: {importing.seconds / baseline.seconds:.2f}x (goal: at most 1.5x)")
    rates = f"{products / importing.seconds:,.0f} products/s, {images / importing.seconds:,.0f} images/s"
    print(f"\nimport: {rates}; {products:,} products in {importing.seconds / 60:.1f} min (goal: under 5 min)")


def drop_queued_messages(settings: object) -> None:
    """The embedding tasks the receivers queued for the bench's photos: no worker will ever run them."""
    import redis

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")  # type: ignore[attr-defined]
    if not prefix.startswith("test-bench-import-"):
        return  # never touch a broker namespace the bench did not make
    connection = redis.Redis.from_url(settings.CELERY_BROKER_URL)  # type: ignore[attr-defined]
    for key in connection.scan_iter(match=f"{prefix}*"):
        connection.delete(key)


def run(base_url: str, args: argparse.Namespace) -> tuple[list, int, int]:
    from bench._common import Measurement
    from scraper.conf import build_client
    from scraper.models import ImportJob
    from scraper.parsers import ScrapedProduct, parse_shopify_products, shopify_page_urls
    from scraper.services import run_import, start_import
    from shop.models import Product, ProductImage, Store

    # --- baseline: the network path alone
    started, cpu_started = time.perf_counter(), time.process_time()
    image_urls: list[str] = []
    with build_client() as client:
        for page_url in shopify_page_urls(base_url, page_size=250):
            records, has_more = parse_shopify_products(
                client.get(page_url, kind="feed").content, base_url=base_url, page_size=250
            )
            image_urls += [url for r in records if isinstance(r, ScrapedProduct) for url in r.image_urls[:10]]
            if not has_more:
                break
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            sizes = list(pool.map(lambda url: len(client.get(url, kind="image").content), image_urls))
    baseline_s = time.perf_counter() - started
    baseline_cpu_s = time.process_time() - cpu_started
    print(f"baseline: {len(image_urls):,} photos ({sum(sizes) / 1e6:.0f} MB) in {baseline_s:.1f} s")

    # --- the import
    store = Store.objects.create(name=f"Bench {uuid.uuid4().hex[:6]}", currency="USD")
    job = start_import(store=store, kind="shopify", source_url=base_url, queue=False)
    started, cpu_started = time.perf_counter(), time.process_time()
    job = run_import(job, images="inline")
    import_s = time.perf_counter() - started
    import_cpu_s = time.process_time() - cpu_started
    assert job.status == ImportJob.Status.SUCCEEDED, (job.status, job.message)
    products = Product.objects.filter(store=store).count()
    images = ProductImage.objects.filter(product__store=store, status="stored").count()
    assert (products, images) == (args.products, len(image_urls)), (products, images)
    print(
        f"import: {job.created:,} products, {job.images_downloaded:,} photos downloaded, "
        f"{job.images_reused:,} reused, {job.images_failed} failed, in {import_s:.1f} s"
    )

    # --- the same import again: nothing changes, nothing is downloaded
    again = start_import(store=store, kind="shopify", source_url=base_url, queue=False)
    started = time.perf_counter()
    again = run_import(again, images="inline")
    reimport_s = time.perf_counter() - started
    assert (again.unchanged, again.images_queued) == (args.products, 0), (
        again.unchanged,
        again.images_queued,
    )

    measurements = [
        Measurement(
            "baseline: fetch pages + photos, no writes",
            baseline_s,
            f"{len(image_urls) / baseline_s:,.0f} photos/s; this process's CPU {baseline_cpu_s:.1f} s",
        ),
        Measurement(
            "import (run_import, images inline)",
            import_s,
            f"{products / import_s:,.0f} products/s, {images / import_s:,.0f} images/s; "
            f"this process's CPU {import_cpu_s:.1f} s",
        ),
        Measurement("re-import, nothing changed", reimport_s, f"{products / reimport_s:,.0f} products/s"),
    ]
    return measurements, products, images


if __name__ == "__main__":
    main()
