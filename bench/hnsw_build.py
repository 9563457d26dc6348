"""HNSW index build for one embedding space: build time and recall per build setting.

    python bench/hnsw_build.py [--n 20000] [--dims 2048] [--configs "0:64MB:16:64,1:1GB:16:64,2:1GB:16:64"]

Each config is workers:memory:m:ef_construction (workers = max_parallel_maintenance_workers; the leader
builds too). The first config is the baseline the others are compared with, in the same run, on the same
synthetic clustered vectors (see bench/_database.py). Recall@10 of the live query (hnsw.ef_search from
HNSW_EF_SEARCH, iterative scan) is measured against brute force for each built index.
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
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--configs", default="0:64MB:16:64,0:1GB:16:64,1:1GB:16:64,2:1GB:16:64,1:1GB:16:40")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


args = parse_args()
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._database import benchmark_database, load_synthetic_catalog, synthetic_vectors


def main() -> None:
    import numpy as np
    from django.conf import settings
    from django.test.utils import override_settings

    from bench._common import print_hardware

    with benchmark_database("hnsw"):
        from recommendations import selectors
        from recommendations.indexes import drop_space_index, ensure_space_index

        print_hardware()
        vectors = synthetic_vectors(args.n, args.dims, args.seed)
        space, product_ids, _ = load_synthetic_catalog(vectors)
        ids = np.asarray(product_ids)
        stored = vectors.astype(np.float16).astype(np.float32)
        stored /= np.linalg.norm(stored, axis=1, keepdims=True)
        positions = np.random.default_rng(args.seed + 1).choice(args.n, size=args.queries, replace=False)
        truth = []
        for position in positions:
            scores = stored @ stored[position]
            scores[position] = -np.inf
            truth.append(set(ids[np.argsort(-scores)[:10]].tolist()))
        print(f"{args.n:,} products x {args.dims} dims loaded")

        rows = []
        for config in args.configs.split(","):
            workers, memory, m, ef_construction = config.split(":")
            values = {
                "HNSW_BUILD_WORKERS": int(workers),
                "HNSW_BUILD_MEMORY": memory,
                "HNSW_M": int(m),
                "HNSW_EF_CONSTRUCTION": int(ef_construction),
                "EXACT_SCAN_THRESHOLD": 0,
            }
            with override_settings(RECOMMENDATIONS={**settings.RECOMMENDATIONS, **values}):
                drop_space_index(space)
                started = time.perf_counter()
                ensure_space_index(space)
                build_s = time.perf_counter() - started
                hits = 0
                for position, expected in zip(positions, truth, strict=True):
                    result = selectors.search_near_vector(
                        vector=stored[position],
                        limit=10,
                        filters=selectors.ProductFilter().excluding([int(ids[position])]),
                        space=space,
                    )
                    hits += len({item.product.pk for item in result.items} & expected)
            recall = hits / (10 * len(positions))
            rows.append((config, build_s, recall))
            print(f"  {config}: {build_s:.1f} s, recall@10 {recall:.3f}", flush=True)

    baseline_s = rows[0][1]
    print(f"\n{args.n:,} x {args.dims}-d halfvec, HNSW build")
    print("| workers:memory:m:ef_construction | build s | speed-up vs first | recall@10 |")
    print("|---|---:|---:|---:|")
    for config, build_s, recall in rows:
        print(f"| {config} | {build_s:.1f} | {baseline_s / build_s:.2f}x | {recall:.3f} |")


if __name__ == "__main__":
    main()
