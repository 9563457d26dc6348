"""Offline ranking metrics: pure functions, no Django, no torch.

Conventions shared by every ``*_at_k`` function:

- Relevance is binary: an id is relevant when it is in ``relevant_ids``.
- Only the first ``k`` entries of ``ranked_ids`` count. A list shorter than ``k`` is treated as padded
  with non-relevant entries (a recommender that returns 3 items when asked for 10 is not rewarded).
- An id repeated in ``ranked_ids`` counts once, at its first position; repeats are non-relevant.
- An empty ``relevant_ids`` returns ``None``: the query has no answer to find, so it is left out of
  averages (``summarise`` skips ``None``) instead of counting as a 0 or a 1.
- ``k`` must be at least 1.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def _hits(ranked_ids: Iterable[Hashable], relevant_ids: Collection[Hashable], k: int) -> list[bool]:
    """Relevance of the first ``k`` positions, with repeats of an id counted as misses."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    relevant = set(relevant_ids)
    seen: set[Hashable] = set()
    hits: list[bool] = []
    for item in ranked_ids:
        if len(hits) == k:
            break
        hits.append(item in relevant and item not in seen)
        seen.add(item)
    return hits


def precision_at_k(
    ranked_ids: Sequence[Hashable], relevant_ids: Collection[Hashable], k: int
) -> float | None:
    """Share of the first ``k`` positions that hold a relevant id (always divided by ``k``)."""
    if not relevant_ids:
        return None
    return sum(_hits(ranked_ids, relevant_ids, k)) / k


def recall_at_k(ranked_ids: Sequence[Hashable], relevant_ids: Collection[Hashable], k: int) -> float | None:
    """Share of all relevant ids found in the first ``k`` positions (divided by ``|relevant|``)."""
    if not relevant_ids:
        return None
    return sum(_hits(ranked_ids, relevant_ids, k)) / len(set(relevant_ids))


def hit_rate_at_k(ranked_ids: Sequence[Hashable], relevant_ids: Collection[Hashable], k: int) -> float | None:
    """1.0 when at least one relevant id is in the first ``k`` positions, else 0.0."""
    if not relevant_ids:
        return None
    return 1.0 if any(_hits(ranked_ids, relevant_ids, k)) else 0.0


def ndcg_at_k(ranked_ids: Sequence[Hashable], relevant_ids: Collection[Hashable], k: int) -> float | None:
    """Normalised discounted cumulative gain with binary gains.

    DCG = sum over hits at 0-based position i of 1 / log2(i + 2). The ideal DCG comes from the ground
    truth, not from the returned list: min(k, |relevant|) hits at the top. So a list that returns one
    relevant item first, when three exist, scores below 1.
    """
    if not relevant_ids:
        return None
    dcg = sum(1.0 / math.log2(i + 2) for i, hit in enumerate(_hits(ranked_ids, relevant_ids, k)) if hit)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(set(relevant_ids)))))
    return dcg / ideal


def average_precision_at_k(
    ranked_ids: Sequence[Hashable], relevant_ids: Collection[Hashable], k: int
) -> float | None:
    """AP@k: mean of precision@(i+1) at each hit position i < k, divided by min(k, |relevant|).

    The mean over queries is MAP@k. Dividing by min(k, |relevant|) rather than the number of hits
    means missing relevant items lowers the score, while a query with 50 relevant ids can still reach
    1.0 within k = 10.
    """
    if not relevant_ids:
        return None
    total = 0.0
    hit_count = 0
    for i, hit in enumerate(_hits(ranked_ids, relevant_ids, k)):
        if hit:
            hit_count += 1
            total += hit_count / (i + 1)
    return total / min(k, len(set(relevant_ids)))


def reciprocal_rank(
    ranked_ids: Sequence[Hashable], relevant_ids: Collection[Hashable], k: int | None = None
) -> float | None:
    """1 / (1-based position of the first relevant id), 0.0 if none in the first ``k`` (all if None).

    The mean over queries is the mean reciprocal rank (MRR).
    """
    if not relevant_ids:
        return None
    limit = len(ranked_ids) if k is None else k
    if limit < 1:
        return 0.0
    for i, hit in enumerate(_hits(ranked_ids, relevant_ids, limit)):
        if hit:
            return 1.0 / (i + 1)
    return 0.0


def auc(scores_pos: Sequence[float] | np.ndarray, scores_neg: Sequence[float] | np.ndarray) -> float | None:
    """Probability that a random positive scores above a random negative; ties count one half.

    Computed from ranks (the Mann-Whitney U statistic) in O(n log n) rather than comparing all pairs.
    Returns ``None`` when either side is empty.
    """
    positives = np.asarray(scores_pos, dtype=np.float64).reshape(-1)
    negatives = np.asarray(scores_neg, dtype=np.float64).reshape(-1)
    if positives.size == 0 or negatives.size == 0:
        return None
    combined = np.concatenate([positives, negatives])
    order = np.argsort(combined, kind="mergesort")
    ordered = combined[order]
    # Average 1-based rank for each run of equal scores, so a tie contributes half a win.
    run_starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run_ends = np.r_[run_starts[1:], ordered.size]
    average_rank = (run_starts + run_ends + 1) / 2.0
    ranks = np.empty(combined.size)
    ranks[order] = np.repeat(average_rank, run_ends - run_starts)
    positive_rank_sum = ranks[: positives.size].sum()
    wins = positive_rank_sum - positives.size * (positives.size + 1) / 2.0
    return float(wins / (positives.size * negatives.size))


@dataclass(frozen=True)
class MetricSummary:
    """Averages of per-query metrics.

    ``micro``: mean over queries. ``macro``: mean over groups of each group's mean, so a rare category
    weighs as much as a common one. ``query_counts`` / ``group_counts``: how many queries and groups
    had a value (not ``None``) for each metric. A metric with no values at all is absent.
    """

    micro: dict[str, float]
    macro: dict[str, float]
    query_counts: dict[str, int]
    group_counts: dict[str, int]


def summarise(per_query: Sequence[Mapping[str, float | None]], groups: Sequence[Hashable]) -> MetricSummary:
    """Micro and macro averages of per-query metric dicts; ``groups[i]`` labels ``per_query[i]``.

    ``None`` values (queries with nothing relevant) are skipped for that metric only; a group whose
    values are all ``None`` does not count towards that metric's macro average.
    """
    if len(per_query) != len(groups):
        raise ValueError(f"{len(per_query)} query results but {len(groups)} group labels")
    values: dict[str, list[float]] = {}
    by_group: dict[str, dict[Hashable, list[float]]] = {}
    for metrics, group in zip(per_query, groups, strict=True):
        for name, value in metrics.items():
            if value is None:
                continue
            values.setdefault(name, []).append(float(value))
            by_group.setdefault(name, {}).setdefault(group, []).append(float(value))
    micro = {name: float(np.mean(found)) for name, found in values.items()}
    macro = {
        name: float(np.mean([np.mean(found) for found in groups_found.values()]))
        for name, groups_found in by_group.items()
    }
    return MetricSummary(
        micro=micro,
        macro=macro,
        query_counts={name: len(found) for name, found in values.items()},
        group_counts={name: len(groups_found) for name, groups_found in by_group.items()},
    )
