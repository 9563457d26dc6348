"""Exact top-k neighbours for a whole catalog: blocked exact_top_k against one query per product.

    python bench/neighbours.py [--n 100000] [--dims 2048] [--k 20] [--device cuda] [--command]

Vectors are synthetic (Gaussian, L2-normalised), which is the hard case for pruning tricks and a
fair one for exhaustive search: its cost depends only on n, dims and k, not on the data. The
baseline, a numpy ``vectors @ v`` + argpartition per product, is timed on a sample of rows and
extrapolated to n (the output says so). Prints a markdown table for docs/benchmarks.md.
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
    parser.add_argument("--n", type=int, default=100_000, help="number of vectors")
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--block-rows", type=int, default=None, help="default: exact_top_k's default")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    parser.add_argument(
        "--baseline-rows", type=int, default=500, help="rows the per-product baseline is timed on"
    )
    parser.add_argument("--check-rows", type=int, default=2000, help="subset checked against brute force")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--command",
        action="store_true",
        help="also run the whole compute_neighbours job (read from Postgres, top-k, write) on the same "
        "vectors in a throw-away database",
    )
    return parser.parse_args()


args = parse_args()
# BLAS reads its thread count when numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench._common import Measurement, markdown_table, print_hardware, timed
from recommendations.topk import exact_top_k


def synthetic_vectors(n: int, dims: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(n, dims, generator=generator)
    vectors /= torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
    return vectors


def naive_neighbours(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """One exact query per product, as a per-product "similar items" request would run it."""
    found = np.empty((len(rows), k), dtype=np.int64)
    for position, row in enumerate(rows):
        scores = vectors @ vectors[row]
        scores[row] = -np.inf
        candidates = np.argpartition(-scores, k)[:k]
        found[position] = candidates[np.argsort(-scores[candidates])]
    return found


def same_neighbours(
    indices: np.ndarray, reference: np.ndarray, vectors: np.ndarray, rows: np.ndarray, tolerance: float = 1e-5
) -> tuple[int, float]:
    """Rows whose neighbour lists differ beyond swaps of scores tied within ``tolerance``; max score gap."""
    mismatched = 0
    worst_gap = 0.0
    for position, row in enumerate(rows):
        query = vectors[row].astype(np.float64)
        ours = np.sort(vectors[indices[position]].astype(np.float64) @ query)[::-1]
        theirs = np.sort(vectors[reference[position]].astype(np.float64) @ query)[::-1]
        gap = float(np.abs(ours - theirs).max())
        worst_gap = max(worst_gap, gap)
        if gap > tolerance:
            mismatched += 1
    return mismatched, worst_gap


def check_against_brute_force(vectors: torch.Tensor, k: int, device: str) -> str:
    subset = vectors[: args.check_rows].numpy()
    full = subset.astype(np.float64) @ subset.T.astype(np.float64)
    np.fill_diagonal(full, -np.inf)
    reference = np.argsort(-full, axis=1, kind="stable")[:, :k]
    # A block size that splits the subset into several row blocks, so the merging paths run too.
    block_rows = max(1, len(subset) // 3 + 1)
    indices, _ = exact_top_k(subset, k, block_rows=block_rows, device=device)
    identical = int((indices == reference).all(axis=1).sum())
    mismatched, worst_gap = same_neighbours(indices, reference, subset, np.arange(len(subset)))
    return (
        f"check on {len(subset):,} rows (block_rows={block_rows}) against float64 brute force: "
        f"{identical:,} rows identical, {mismatched} rows differ beyond 1e-5 ties, "
        f"max score gap {worst_gap:.1e}"
    )


def whole_command(vectors: np.ndarray):
    """``compute_neighbours`` as the command runs it: vectors read from a space, top-k, rows written."""
    from bench._database import benchmark_database, load_synthetic_catalog

    with benchmark_database("neighbours"):
        from recommendations.neighbours import compute_neighbours

        load_synthetic_catalog(vectors)
        report, total_s = timed(lambda: compute_neighbours(k=args.k, device=args.device))
    print(
        f"compute_neighbours: {total_s:.1f} s (read {report.load_s:.1f} s, top-k {report.compute_s:.1f} s, "
        f"write {report.write_s:.1f} s; {report.rows_written:,} pairs)\n",
        flush=True,
    )
    return Measurement(
        "`compute_neighbours` job: read from Postgres, top-k, write",
        total_s,
        f"read {report.load_s:.1f} s, top-k {report.compute_s:.1f} s, write {report.write_s:.1f} s",
    )


def main() -> None:
    torch.set_num_threads(args.threads)
    print_hardware()
    print(f"n={args.n:,} dims={args.dims} k={args.k} device={args.device}\n", flush=True)

    vectors, generate_s = timed(lambda: synthetic_vectors(args.n, args.dims, args.seed))
    print(f"generated {args.n:,} x {args.dims} float32 vectors in {generate_s:.1f} s", flush=True)
    print(check_against_brute_force(vectors, args.k, args.device), flush=True)

    matrix = vectors.numpy()
    sample_rows = np.random.default_rng(args.seed).choice(
        args.n, size=min(args.baseline_rows, args.n), replace=False
    )
    naive, naive_s = timed(lambda: naive_neighbours(matrix, sample_rows, args.k))
    naive_total_s = naive_s / len(sample_rows) * args.n
    print(
        f"naive per-product query: {naive_s:.1f} s for {len(sample_rows)} rows "
        f"-> {naive_total_s:,.0f} s extrapolated to {args.n:,} rows",
        flush=True,
    )

    started = time.perf_counter()
    last_report = [0.0]

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        if done == total or elapsed - last_report[0] >= 30:
            last_report[0] = elapsed
            eta = elapsed / done * (total - done)
            print(
                f"  exact_top_k: {done}/{total} block pairs, {elapsed:.0f} s elapsed, ~{eta:.0f} s left",
                flush=True,
            )

    cpu_started_s = time.process_time()
    (indices, _), exact_s = timed(
        lambda: exact_top_k(vectors, args.k, block_rows=args.block_rows, device=args.device, progress=report)
    )
    # CPU seconds over threads approximates the wall time on an otherwise idle machine.
    cpu_s = time.process_time() - cpu_started_s
    mismatched, worst_gap = same_neighbours(indices[sample_rows], naive, matrix, sample_rows)
    print(
        f"exact_top_k: {exact_s:.1f} s wall, {cpu_s:.0f} CPU s on {args.threads} threads"
        f" (load average now {os.getloadavg()[0]:.1f});\n"
        f"  on the {len(sample_rows)} sampled rows it agrees with the naive query "
        f"({mismatched} rows differ beyond 1e-5 ties, max score gap {worst_gap:.1e})\n",
        flush=True,
    )

    block_note = f"block_rows={args.block_rows or 'default (2048 CPU, 8192 CUDA)'}"
    measurements = [
        Measurement(
            "naive: numpy `vectors @ v` + argpartition per product",
            naive_total_s,
            f"extrapolated from {len(sample_rows)} rows ({naive_s:.1f} s)",
        ),
        Measurement(
            f"`exact_top_k` (blocked, symmetric, {args.device})",
            exact_s,
            f"{block_note}; measured on all {args.n:,} rows; {cpu_s:,.0f} CPU s",
        ),
    ]
    if args.command:
        measurements.append(whole_command(vectors.numpy()))
    print(f"### Exact top-{args.k} neighbours, {args.n:,} x {args.dims} synthetic vectors\n")
    print(markdown_table(measurements, baseline=measurements[0].name))


if __name__ == "__main__":
    main()
