"""Campaign landing pages and the conversion event endpoint at catalog scale.

    python bench/landing.py [--products 100000] [--dims 1280] [--requests 300] [--events 1000]

A throw-away database gets ``--products`` products (90 % in stock, 20 categories, one image row each) with
synthetic clustered vectors in an active embedding space and its HNSW index, plus two live campaigns: one
over the whole catalog and one filtered by category and price, each with a creative whose vector is a noisy
copy of a product's. Every request goes through the full Django stack (middleware, view, template, cache,
impression insert) with the test client, i.e. server time without the network. Each landing request is a new
visitor (no cookie), as traffic from an ad is.

Baselines, measured in the same process: the storefront's product list page (24 products, one category) for
the landing page, and the event endpoint's CORS preflight (request handling with no work) for the event
endpoint. Goals (issue 6): landing p95 < 100 ms cached and < 300 ms uncached; event endpoint p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def parse_args() -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=1280, help="1280 = efficientnet_lite0, 2048 = resnet50")
    parser.add_argument("--requests", type=int, default=300, help="landing requests per measurement")
    parser.add_argument("--uncached-requests", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-db", action="store_true")
    return parser.parse_args()


args = parse_args()
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._database import benchmark_database, percentile_ms, raw_connection, synthetic_vectors

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537"
RESULTS: list[dict] = []


def load_catalog(vectors) -> tuple:
    """Products, one image row each and their vectors, written with COPY."""
    import numpy as np
    from pgvector import HalfVector

    from recommendations.models import EmbeddingSpace
    from shop.models import Category, Store

    store = Store.objects.create(name="Bench store")
    categories = [Category.from_path(["Bench", f"Category {i:02d}"]) for i in range(20)]
    space = EmbeddingSpace.objects.create(
        encoder="synthetic", weights_id="bench", dimensions=vectors.shape[1], state="active"
    )
    rng = np.random.default_rng(args.seed + 7)
    prices = rng.integers(500, 20_000, len(vectors)) / 100
    in_stock = rng.random(len(vectors)) < 0.9
    stamp = "2026-01-01T00:00Z"
    with raw_connection() as raw, raw.cursor() as cursor:
        columns = (
            "store_id, external_id, title, description, url, brand, price, currency, in_stock, category_id, "
            "attributes, created_at, updated_at"
        )
        with cursor.copy(f"COPY shop_product ({columns}) FROM STDIN") as copy:
            for i in range(len(vectors)):
                copy.write_row(
                    (store.pk, f"b{i}", f"Bench product {i}", "", "", "Acme", f"{prices[i]:.2f}", "EUR",
                     bool(in_stock[i]), categories[i % 20].pk, "{}", stamp, stamp)
                )  # fmt: skip
        cursor.execute("SELECT id FROM shop_product WHERE store_id = %s ORDER BY id", [store.pk])
        product_ids = [row[0] for row in cursor.fetchall()]
        image_columns = (
            "product_id, source_url, image, sha256, width, height, position, status, failure_reason, "
            "created_at, updated_at"
        )
        with cursor.copy(f"COPY shop_productimage ({image_columns}) FROM STDIN") as copy:
            for product_id in product_ids:
                digest = f"{product_id:064x}"
                copy.write_row(
                    (product_id, "", f"products/{digest[:2]}/{digest}.jpg", digest, 480, 480, 0, "stored", "",
                     stamp, stamp)
                )  # fmt: skip
        with cursor.copy(
            "COPY recommendations_productembedding (space_id, product_id, vector, image_sha256s, updated_at) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "halfvec", "varchar[]", "timestamptz"])
            when = datetime(2026, 1, 1, tzinfo=UTC)
            for i, product_id in enumerate(product_ids):
                copy.write_row((space.pk, product_id, HalfVector(vectors[i]), [f"{product_id:064x}"], when))
        for table in ("shop_product", "shop_productimage", "recommendations_productembedding"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    return store, categories, space, product_ids


def make_campaigns(vectors, space, categories) -> list:
    from decimal import Decimal

    import numpy as np
    from django.utils import timezone

    from campaigns.models import Campaign, Creative

    rng = np.random.default_rng(args.seed + 11)
    campaigns = []
    for name, filters in (
        ("Whole catalog", {}),
        ("Category and price", {"min_price": Decimal("20"), "max_price": Decimal("120")}),
    ):
        slug = name.lower().replace(" ", "-")
        campaign = Campaign.objects.create(
            name=name, slug=slug, status=Campaign.Status.LIVE, product_count=24, **filters
        )
        if filters:
            campaign.categories.add(categories[3])
        vector = vectors[rng.integers(0, len(vectors))] + 0.5 * rng.standard_normal(vectors.shape[1])
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        # The image file is not needed for timing: the page only prints its URL.
        Creative.objects.create(
            campaign=campaign,
            name="Ad",
            slug="ad",
            image="campaigns/creatives/00/bench.jpg",
            sha256="0" * 64,
            width=1200,
            height=628,
            space=space,
            vector=vector,
            embedding_status=Creative.EmbeddingStatus.READY,
            embedded_at=timezone.now(),
        )
        campaigns.append(campaign)
    return campaigns


def record(name: str, samples: list[float], *, baseline: str | None = None, goal: str = "") -> dict:
    row = {
        "name": name,
        "n": len(samples),
        "p50_ms": percentile_ms(samples, 50),
        "p95_ms": percentile_ms(samples, 95),
        "p99_ms": percentile_ms(samples, 99),
        "goal": goal,
    }
    if baseline:
        reference = next(r for r in RESULTS if r["name"] == baseline)
        row["vs"] = f"p50 {row['p50_ms'] / reference['p50_ms']:.2f}x of {baseline}"
    RESULTS.append(row)
    print(
        f"  {name}: p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms"
        + (f" | {row['vs']}" if baseline else "")
        + (f" | goal {goal}" if goal else ""),
        flush=True,
    )
    return row


def time_requests(send, count: int) -> list[float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        response = send(i)
        samples.append(time.perf_counter() - started)
        assert response.status_code in (200, 201, 204), (response.status_code, response.content[:300])
    return samples


def run() -> None:
    from django.test import Client

    from bench._common import print_hardware
    from campaigns.services import bump_catalog_version
    from campaigns.tracking import Attribution, make_attribution_token, new_session_key
    from recommendations.indexes import ensure_space_index

    print_hardware()
    print(f"\n== {args.products:,} products x {args.dims} dims ==", flush=True)
    vectors = synthetic_vectors(args.products, args.dims, args.seed)
    started = time.perf_counter()
    store, categories, space, product_ids = load_catalog(vectors)
    print(f"  loaded in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    ensure_space_index(space)
    print(f"  HNSW index built in {time.perf_counter() - started:.1f} s", flush=True)
    campaigns = make_campaigns(vectors, space, categories)

    def visitor() -> Client:
        return Client(headers={"user-agent": BROWSER_UA})

    # Warm up connections, templates and the plan cache.
    for campaign in campaigns:
        for _ in range(5):
            visitor().get(f"/c/{campaign.slug}/")
        visitor().get(categories[3].get_absolute_url())

    baseline_name = "product list page (baseline)"
    list_url = categories[3].get_absolute_url()
    record(baseline_name, time_requests(lambda i: visitor().get(list_url), args.requests))

    for campaign in campaigns:
        url = f"/c/{campaign.slug}/?utm_source=bench&gclid=abc"
        visitor().get(url)  # fills the cache
        cached = time_requests(lambda i, url=url: visitor().get(url), args.requests)
        record(f"landing cached: {campaign.name}", cached, baseline=baseline_name, goal="p95 < 100 ms")

        def uncached(i: int, url: str = url):
            bump_catalog_version()  # as a stock change does: the next request computes the page again
            return visitor().get(url)

        record(
            f"landing uncached: {campaign.name}",
            time_requests(uncached, args.uncached_requests),
            baseline=baseline_name,
            goal="p95 < 300 ms",
        )

    campaign = campaigns[0]
    token = make_attribution_token(
        Attribution(
            campaign_id=campaign.pk,
            creative_id=campaign.creatives.get().pk,
            variant="visual",
            session_key=new_session_key(),
        )
    )
    store_server = Client()
    preflight_name = "event endpoint preflight (baseline)"
    record(preflight_name, time_requests(lambda i: store_server.options("/c/events/"), args.events))

    def post_event(i: int):
        product_id = product_ids[i % len(product_ids)]
        body = {"token": token, "kind": "purchase", "product_id": product_id, "order_id": i}
        return store_server.post("/c/events/", data=json.dumps(body), content_type="application/json")

    record(
        "event endpoint: purchase recorded",
        time_requests(post_event, args.events),
        baseline=preflight_name,
        goal="p99 < 20 ms",
    )
    record(
        "event endpoint: duplicate (not stored)",
        time_requests(post_event, args.events),
        baseline=preflight_name,
        goal="p99 < 20 ms",
    )

    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"landing-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"args": vars(args), "results": RESULTS}, indent=2))
    print(f"\nresults: {path}")


if __name__ == "__main__":
    with benchmark_database("landing", keep=args.keep_db):
        run()
