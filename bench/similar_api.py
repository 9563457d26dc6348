"""Similar items at catalog scale: HNSW build time, and latency + recall of live, filtered and precomputed
answers, through the real API (Django test client: middleware, DRF, JSON) and through the selector alone.

    python bench/similar_api.py [--sizes 10000] [--dims 2048] [--queries 200] [--full-neighbours]
    python bench/similar_api.py --sizes 10000,100000        # the 100k run takes several minutes

Vectors are synthetic but clustered like real embeddings (n/50 "looks", each product a noisy copy of its
look), stored as halfvec(dims) in a throw-away database. Baselines, measured in the same run: an exact scan
(the same query with the index disabled) for the live query, a single-process build in 64 MB of memory for
the index build (only up to --build-baseline-max products), and the live query for the precomputed one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000", help="comma-separated catalog sizes")
    parser.add_argument(
        "--vectors",
        default=None,
        help="a .npy file of real embeddings (e.g. from bench/quality.py --save-vectors) to use instead of "
        "synthetic ones; --sizes and --dims then come from the file",
    )
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=200, help="query products per measurement")
    parser.add_argument("--exact-queries", type=int, default=30, help="queries for the exact-scan baseline")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--ef-search", type=int, default=None, help="override HNSW_EF_SEARCH")
    parser.add_argument("--build-baseline-max", type=int, default=10_000, help="largest n for the slow build")
    parser.add_argument(
        "--full-neighbours",
        action="store_true",
        help="run compute_neighbours over the whole catalog (default: only up to 10,000 products; larger "
        "catalogs store exact neighbours for the query products only, which the read path cannot tell apart)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-db", action="store_true")
    return parser.parse_args()


args = parse_args()
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._database import (
    benchmark_database,
    load_synthetic_catalog,
    percentile_ms,
    settle_space,
    synthetic_vectors,
)

RESULTS: list[dict] = []


def settings_with(**values):
    from django.conf import settings
    from django.test.utils import override_settings

    return override_settings(RECOMMENDATIONS={**settings.RECOMMENDATIONS, **values})


def compared(label: str, baseline_ms: float, measured_ms: float, baseline_name: str) -> str:
    """ "p99 3.1x lower than exact scan" (or "higher" when the measurement lost to its baseline)."""
    if measured_ms <= baseline_ms:
        return f"{label} {baseline_ms / measured_ms:.1f}x lower than {baseline_name}"
    return f"{label} {measured_ms / baseline_ms:.1f}x higher than {baseline_name}"


def build_index(space, n: int) -> None:
    from recommendations.indexes import drop_space_index, ensure_space_index

    if n <= args.build_baseline_max:
        with settings_with(HNSW_BUILD_WORKERS=0, HNSW_BUILD_MEMORY="64MB"):
            started = time.perf_counter()
            ensure_space_index(space)
            baseline_s = time.perf_counter() - started
        drop_space_index(space)
        record(n, "HNSW build, 1 process, 64 MB (baseline)", build_s=baseline_s)
    else:
        baseline_s = None
    started = time.perf_counter()
    ensure_space_index(space)
    tuned_s = time.perf_counter() - started
    ratio = f"{baseline_s / tuned_s:.1f}x faster" if baseline_s else ""
    from recommendations.conf import app_setting

    record(
        n,
        f"HNSW build, {app_setting('HNSW_BUILD_WORKERS')} workers + leader, "
        f"{app_setting('HNSW_BUILD_MEMORY')}",
        build_s=tuned_s,
        versus=ratio,
    )


def record(n: int, name: str, *, samples=None, recall=None, full=None, build_s=None, versus="") -> dict:
    row = {"n": n, "name": name, "versus": versus}
    if samples:
        row["p50_ms"], row["p99_ms"] = percentile_ms(samples, 50), percentile_ms(samples, 99)
    if recall is not None:
        row["recall"] = recall
    if full is not None:
        row["full"] = full
    if build_s is not None:
        row["build_s"] = build_s
    RESULTS.append(row)
    parts = [f"n={n:,}", name]
    if samples:
        parts.append(f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms")
    if build_s is not None:
        parts.append(f"{build_s:.1f} s")
    if recall is not None:
        parts.append(f"recall@{args.limit} {recall:.3f}")
    if full is not None:
        parts.append(f"full k in {full:.0%} of answers")
    if versus:
        parts.append(versus)
    print("  " + " | ".join(parts), flush=True)
    return row


def run_size(n: int) -> None:
    import numpy as np
    from django.test import Client

    from recommendations import selectors
    from recommendations.models import ProductNeighbours
    from recommendations.neighbours import compute_neighbours
    from shop.models import Product

    if args.vectors:
        vectors = np.load(args.vectors).astype(np.float32)[:n]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        n, args.dims = vectors.shape
    else:
        vectors = synthetic_vectors(n, args.dims, args.seed)
    kind = f"real vectors from {args.vectors}" if args.vectors else "synthetic vectors"
    print(f"\n== {n:,} products x {args.dims} dims, {kind} ==", flush=True)
    started = time.perf_counter()
    space, product_ids, categories = load_synthetic_catalog(vectors)
    print(f"  loaded in {time.perf_counter() - started:.1f} s", flush=True)
    build_index(space, n)
    settle_space(space)

    # Ground truth in the stored precision (halfvec), normalised as the database's cosine distance does.
    stored = vectors.astype(np.float16).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    rng = np.random.default_rng(args.seed + 1)
    positions = rng.choice(n, size=min(args.queries, n), replace=False)
    ids = np.asarray(product_ids)
    products = Product.objects.in_bulk([int(ids[p]) for p in positions])
    rare_rows, tenth_rows = np.arange(0, n, 100), np.arange(5, n, 10)

    def exact_tops(picks, rows=None) -> dict[int, list[int]]:
        """Brute-force top ids of each pick among ``rows`` (all products by default), computed before the
        timed loop: one product at a time would copy the whole matrix between two timed requests and time
        the cache misses that leaves behind as if they were the query's."""
        picks = np.asarray(picks, dtype=np.int64)
        candidates = stored if rows is None else stored[rows]
        rows = np.arange(n) if rows is None else np.asarray(rows)
        scores = stored[picks] @ candidates.T
        scores[rows[None, :] == picks[:, None]] = -np.inf  # not itself
        best = np.argpartition(-scores, args.limit, axis=1)[:, : args.limit]
        tops = {}
        for j, position in enumerate(picks):
            order = best[j][np.lexsort((rows[best[j]], -scores[j, best[j]]))]
            tops[int(position)] = [int(ids[rows[i]]) for i in order]
        return tops

    client = Client()

    def api_get(position: int, **params) -> tuple[dict, float]:
        url = f"/api/products/{int(ids[position])}/similar/"
        started = time.perf_counter()
        response = client.get(url, {"limit": args.limit, **params})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.content[:500]
        return response.json(), elapsed

    def measure_api(name: str, picks, *, rows=None, versus_p99=None, expect_source=None, **params) -> dict:
        truth = exact_tops(picks, rows)
        for position in picks[:10]:  # warm caches and connections
            api_get(int(position), **params)
        samples, hits, full = [], 0, 0
        for position in picks:
            body, elapsed = api_get(int(position), **params)
            samples.append(elapsed)
            found = [item["id"] for item in body["results"]]
            hits += len(set(found) & set(truth[int(position)]))
            full += len(found) == args.limit
            if expect_source:
                assert body["source"] == expect_source, (name, body["source"])
        versus = compared("p99", versus_p99, percentile_ms(samples, 99), "exact scan") if versus_p99 else ""
        return record(
            n,
            name,
            samples=samples,
            recall=hits / (args.limit * len(picks)),
            full=full / len(picks),
            versus=versus,
        )

    def measure_selector(name: str, picks, *, exact: bool = False, versus_p99=None) -> dict:
        """find_similar_products, or (exact) the same query forced through a full scan."""

        def ask(position: int) -> list[int]:
            product = products[int(ids[position])]
            if not exact:
                return [
                    item.product.pk for item in selectors.similar_products(product=product, limit=args.limit)
                ]
            result = selectors.search_near_vector(
                vector=stored[position],
                limit=args.limit,
                filters=selectors.ProductFilter().excluding([product.pk]),
                exclude_sha256s=[f"{product.pk:064x}"],
                exact=True,
            )
            return [item.product.pk for item in result.items]

        truth = exact_tops(picks)
        for position in picks[:5]:
            ask(int(position))
        samples, hits = [], 0
        for position in picks:
            started = time.perf_counter()
            found = ask(int(position))
            samples.append(time.perf_counter() - started)
            hits += len(set(found) & set(truth[int(position)]))
        versus = compared("p99", versus_p99, percentile_ms(samples, 99), "exact scan") if versus_p99 else ""
        return record(n, name, samples=samples, recall=hits / (args.limit * len(picks)), versus=versus)

    overrides = {"HNSW_EF_SEARCH": args.ef_search} if args.ef_search else {}
    with settings_with(**overrides):
        exact = measure_selector(
            "selector exact scan (baseline)", positions[: args.exact_queries], exact=True
        )
        live = measure_api(
            "API live (HNSW, iterative scan)",
            positions,
            expect_source=selectors.INDEX,
            versus_p99=exact["p99_ms"],
        )
        selector_live = measure_selector("selector live (HNSW)", positions, versus_p99=exact["p99_ms"])
        for name, rows, category in (
            ("API filtered 1 % (category)", rare_rows, categories["rare"]),
            ("API filtered 10 % (category)", tenth_rows, categories["tenth"]),
        ):
            measure_api(name, positions, rows=rows, category=category, versus_p99=exact["p99_ms"])

        started = time.perf_counter()
        if args.full_neighbours or n <= 10_000:
            report = compute_neighbours(space=space, k=20)
            what = f"compute_neighbours, all {n:,} products, top-20"
        else:
            # Exact top-20 of the query products only, stored like the job stores them.
            picks = positions
            scores = stored[picks] @ stored.T
            scores[np.arange(len(picks)), picks] = -np.inf
            top = np.argsort(-scores, axis=1)[:, :20]
            top_scores = np.take_along_axis(scores, top, axis=1)
            ProductNeighbours.objects.filter(space=space).delete()
            _store_subset(space, ids, picks, top, top_scores)
            report = None
            what = f"exact top-20 of the {len(picks)} query products (numpy), stored"
        record(n, what, build_s=time.perf_counter() - started)
        if report:
            print(
                f"    read {report.load_s:.1f} s, top-k {report.compute_s:.1f} s, "
                f"write {report.write_s:.1f} s"
            )
        measure_api("API precomputed", positions, expect_source=selectors.PRECOMPUTED)
        RESULTS[-1]["versus"] = compared("p99", live["p99_ms"], RESULTS[-1]["p99_ms"], "live")
        measure_selector("selector precomputed", positions)
        RESULTS[-1]["versus"] = compared("p99", selector_live["p99_ms"], RESULTS[-1]["p99_ms"], "live")


def _store_subset(space, ids, picks, top, top_scores) -> None:
    from django.utils import timezone

    from recommendations.models import ProductNeighbours

    now = timezone.now()
    ProductNeighbours.objects.bulk_create(
        ProductNeighbours(
            space=space,
            product_id=int(ids[p]),
            neighbour_ids=[int(ids[j]) for j in row],
            scores=[float(s) for s in row_scores],
            computed_at=now,
        )
        for p, row, row_scores in zip(picks, top, top_scores, strict=True)
    )


def print_markdown() -> None:
    print("\n| products | measurement | p50 ms | p99 ms | recall@10 | full k | build s | vs baseline |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for row in RESULTS:

        def cell(key: str, fmt: str, row: dict = row) -> str:
            return format(row[key], fmt) if key in row else ""

        print(
            f"| {row['n']:,} | {row['name']} | {cell('p50_ms', '.1f')} | {cell('p99_ms', '.1f')} | "
            f"{cell('recall', '.3f')} | {cell('full', '.0%')} | {cell('build_s', '.1f')} | {row['versus']} |"
        )


def main() -> None:
    import torch

    from bench._common import print_hardware

    torch.set_num_threads(args.threads)
    with benchmark_database("similar", keep=args.keep_db):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            pgvector_version = cursor.fetchone()[0]
            cursor.execute("SHOW server_version")
            postgres_version = cursor.fetchone()[0]
        print_hardware()
        print(f"postgres: {postgres_version}, pgvector {pgvector_version}")
        from recommendations.conf import app_setting

        print(
            f"settings: HNSW m={app_setting('HNSW_M')} ef_construction={app_setting('HNSW_EF_CONSTRUCTION')} "
            f"ef_search={args.ef_search or app_setting('HNSW_EF_SEARCH')} "
            f"EXACT_SCAN_THRESHOLD={app_setting('EXACT_SCAN_THRESHOLD')}"
        )
        sizes = [10**9] if args.vectors else [int(size) for size in args.sizes.split(",")]
        # The answer cache off: every request is a search (warm-up requests and the live measurement ask
        # for the same products, and a cached live answer would otherwise stand in for the precomputed one).
        with settings_with(SIMILAR_CACHE_S=0):
            for n in sizes:
                run_size(n)
    print_markdown()


if __name__ == "__main__":
    main()
