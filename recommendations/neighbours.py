"""Precomputed neighbours: the exact top-K of every product of a space, stored in ProductNeighbours.

One blocked matrix multiplication over the whole space (``ranking.exact_top_k``), not one query per product:
100,000 products x 2,048 dimensions is minutes on two CPU cores and seconds on a GPU. The selectors use the
stored rows while they are fresh (see ``selectors.find_similar_products``).
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from recommendations import cache
from recommendations.conf import app_setting
from recommendations.models import EmbeddingSpace, ProductNeighbours
from recommendations.selectors import active_space, load_space_vectors

# Candidates fetched beyond k per product when some products share photos (they are dropped afterwards);
# a product that still comes up short is recomputed on its own.
MAX_EXTRA_CANDIDATES = 64
# Advisory lock namespace: two runs for one space would interleave their DELETE and COPY.
_LOCK_NAMESPACE = 0x4E454947 << 20
_COPY_CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class NeighboursReport:
    space_id: int
    products: int
    k: int
    rows_written: int
    load_s: float
    compute_s: float
    write_s: float


def _photo_conflicts(image_sha256s: Sequence[Sequence[str]]) -> list[set[int]]:
    """For each row, the other rows showing at least one of its photos (byte-identical digest)."""
    owners: dict[str, list[int]] = defaultdict(list)
    for row, digests in enumerate(image_sha256s):
        for digest in set(digests):
            owners[digest].append(row)
    conflicts: list[set[int]] = [set() for _ in image_sha256s]
    for rows in owners.values():
        if len(rows) > 1:
            for row in rows:
                conflicts[row].update(rows)
    for row, others in enumerate(conflicts):
        others.discard(row)
    return conflicts


def normalise_rows(vectors: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """Rows scaled to unit length. Stored halfvecs are off by ~1e-4, enough to swap near-tied neighbours
    relative to the database's cosine distance, which normalises."""
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if in_place:
        vectors /= norms
        return vectors
    return vectors / norms


def _keep_distinct_photos(
    candidates: Iterable[int] | np.ndarray, row: int, conflicts: list[set[int]], k: int
) -> list[int]:
    """The first ``k`` candidates that share no photo with ``row`` nor with a better kept candidate."""
    kept: list[int] = []
    blocked = set(conflicts[row])
    for candidate in map(int, candidates):
        if candidate < 0 or candidate == row or candidate in blocked:
            continue
        kept.append(candidate)
        blocked |= conflicts[candidate]
        if len(kept) == k:
            break
    return kept


def top_k_distinct_photos(
    vectors: np.ndarray,
    image_sha256s: Sequence[Sequence[str]],
    k: int,
    *,
    block_rows: int | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` most cosine-similar rows, as the live query ranks them.

    Like ``ranking.exact_top_k`` (padding with -1 / -inf when a row has fewer neighbours), and also: a row
    never lists rows showing one of its photos, and of two candidates showing the same photo only the
    better one is listed.
    """
    from recommendations.topk import exact_top_k  # torch: only the batch job needs it

    n = len(vectors)
    if n and not np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6):
        vectors = normalise_rows(vectors)
    indices = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    if n < 2:
        return indices, scores
    conflicts = _photo_conflicts(image_sha256s)
    has_conflict = np.fromiter((bool(c) for c in conflicts), dtype=bool, count=n)
    most_conflicts = max((len(c) for c in conflicts), default=0)
    extra = min(MAX_EXTRA_CANDIDATES, 2 * most_conflicts)
    fetch = min(k + extra, n - 1)
    found, found_scores = exact_top_k(
        vectors, fetch, block_rows=block_rows, exclude_self=True, device=device, progress=progress
    )
    if not has_conflict.any():
        take = min(k, fetch)
        indices[:, :take], scores[:, :take] = found[:, :take], found_scores[:, :take]
        return indices, scores

    for row in range(n):
        candidates = found[row]
        if not has_conflict[row] and not has_conflict[candidates[candidates >= 0]].any():
            take = min(k, fetch)
            indices[row, :take], scores[row, :take] = candidates[:take], found_scores[row, :take]
            continue
        kept = _keep_distinct_photos(candidates, row, conflicts, k)
        score_of = dict(zip(candidates.tolist(), found_scores[row].tolist(), strict=True))
        if len(kept) < k and fetch < n - 1:
            # More candidates were dropped than fetched: rank every row for this one.
            all_scores = vectors @ vectors[row]
            order = np.argsort(-all_scores, kind="stable")
            kept = _keep_distinct_photos(order, row, conflicts, k)
            score_of = {int(i): float(all_scores[i]) for i in kept}
        indices[row, : len(kept)] = kept
        scores[row, : len(kept)] = [score_of[i] for i in kept]
    return indices, scores


def store_neighbours(
    *,
    space: EmbeddingSpace,
    product_ids: np.ndarray,
    indices: np.ndarray,
    scores: np.ndarray,
    computed_at: datetime,
) -> int:
    """Replace the space's stored neighbours in one transaction (readers see old or new, never a mix).

    One row per product, written with COPY: 100,000 products take seconds. Returns the number of
    (product, neighbour) pairs stored.
    """
    table = connection.ops.quote_name(ProductNeighbours._meta.db_table)
    columns = "space_id, product_id, neighbour_ids, scores, computed_at"
    prefix, stamp = f"{space.pk}\t", f"\t{computed_at.isoformat()}\n"
    id_texts = product_ids.astype(str)
    written = 0
    with transaction.atomic():
        connection.ensure_connection()
        from psycopg import Cursor

        with Cursor(connection.connection) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_NAMESPACE + int(space.pk)])
            cursor.execute(f"DELETE FROM {table} WHERE space_id = %s", [space.pk])
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                buffer = io.StringIO()
                for row in range(len(product_ids)):
                    count = int((indices[row] >= 0).sum())  # padding (-1) only at the end of a row
                    if count == 0:
                        continue
                    neighbours = ",".join(id_texts[indices[row, :count]].tolist())
                    scores_text = ",".join(f"{score:.6f}" for score in scores[row, :count].tolist())
                    buffer.write(f"{prefix}{id_texts[row]}\t{{{neighbours}}}\t{{{scores_text}}}{stamp}")
                    written += count
                    if row % _COPY_CHUNK_ROWS == _COPY_CHUNK_ROWS - 1:
                        copy.write(buffer.getvalue())
                        buffer = io.StringIO()
                copy.write(buffer.getvalue())
    return written


def compute_neighbours(
    *,
    space: EmbeddingSpace | None = None,
    k: int | None = None,
    block_rows: int | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> NeighboursReport:
    """Compute and store the exact top-``k`` (default NEIGHBOURS_K) of every product of the space.

    ``progress(done, total)`` reports the matrix multiplication in blocks. Raises ValueError when there is no
    active space (and none was given).
    """
    space = space or active_space()
    if space is None:
        raise ValueError("No embedding space is active: embed the catalog first (manage.py embed_catalog).")
    k = int(k or app_setting("NEIGHBOURS_K"))
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    # Stamped before the vectors are read: a vector changed while the job runs is newer than its rows,
    # so the selectors treat that product's neighbours as stale.
    computed_at = timezone.now()
    started = time.perf_counter()
    data = load_space_vectors(space)
    loaded = time.perf_counter()
    indices, scores = top_k_distinct_photos(
        normalise_rows(data.vectors, in_place=True),
        data.image_sha256s,
        k,
        block_rows=block_rows,
        device=device,
        progress=progress,
    )
    computed = time.perf_counter()
    written = store_neighbours(
        space=space, product_ids=data.product_ids, indices=indices, scores=scores, computed_at=computed_at
    )
    cache.bump_catalog_version()  # cached answers were made from the previous neighbours
    return NeighboursReport(
        space_id=int(space.pk),
        products=len(data.product_ids),
        k=k,
        rows_written=written,
        load_s=loaded - started,
        compute_s=computed - loaded,
        write_s=time.perf_counter() - computed,
    )
