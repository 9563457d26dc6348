"""Offline evaluation of "similar items" against labels: which products should count as similar.

The labels come from a CSV (e.g. Myntra's ``articleType``, or a product ``handle`` shared by several photos);
a returned product is relevant when it has the same values in the ``relevant_if`` columns as the query.
Used by ``manage.py evaluate_similarity`` and ``bench/quality.py``; the metrics are in
``recommendations.metrics``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from recommendations import metrics

K = TypeVar("K", bound=Hashable)

METRICS = ("precision", "recall", "ndcg", "hit_rate", "map")
_METRIC_FUNCTIONS = {
    "precision": metrics.precision_at_k,
    "recall": metrics.recall_at_k,
    "ndcg": metrics.ndcg_at_k,
    "hit_rate": metrics.hit_rate_at_k,
    "map": metrics.average_precision_at_k,
}


@dataclass(frozen=True)
class Labels:
    """Relevance keys per item id, after dropping duplicate rows."""

    keys: dict[str, tuple[str, ...]]  # item id -> values of the relevant_if columns
    duplicates_dropped: int = 0


@dataclass(frozen=True)
class Evaluation:
    k: int
    queries: int  # queries that had at least one relevant item
    skipped: int  # queries without any relevant item (alone in their group): no score
    groups: int
    micro: dict[str, float]
    macro: dict[str, float]
    per_group: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "queries": self.queries,
            "skipped": self.skipped,
            "groups": self.groups,
            "micro": self.micro,
            "macro": self.macro,
            "per_group": self.per_group,
        }


def read_labels(
    path: str | Path, *, id_column: str, relevant_if: Sequence[str], dedupe_column: str | None = None
) -> Labels:
    """Read ``id_column`` and the ``relevant_if`` columns.

    With ``dedupe_column`` (e.g. an image md5) only the first row of each value is kept: byte-identical
    photos would be trivially "similar".
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        wanted = [id_column, *relevant_if, *([dedupe_column] if dedupe_column else [])]
        missing = [name for name in wanted if name not in columns]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} (columns: {', '.join(columns)})")
        keys: dict[str, tuple[str, ...]] = {}
        seen: set[str] = set()
        dropped = 0
        for row in reader:
            if dedupe_column and row[dedupe_column]:
                if row[dedupe_column] in seen:
                    dropped += 1
                    continue
                seen.add(row[dedupe_column])
            keys[row[id_column].strip()] = tuple(row[name].strip() for name in relevant_if)
    return Labels(keys=keys, duplicates_dropped=dropped)


def score_rankings(rankings: Mapping[K, Sequence[K]], keys: Mapping[K, Hashable], k: int) -> Evaluation:
    """Metrics@k of each query's ranked ids, micro (over queries) and macro (over relevance groups).

    The relevant set of a query is every other labelled item with the same key, among the items being
    evaluated (``keys``); ranked ids that are not labelled count as misses.
    """
    members: dict[Hashable, set[K]] = defaultdict(set)
    for item, key in keys.items():
        members[key].add(item)
    per_query: list[dict[str, float | None]] = []
    groups: list[str] = []
    skipped = 0
    for query, ranked in rankings.items():
        key = keys[query]
        relevant = members[key] - {query}
        if not relevant:
            skipped += 1
            continue
        per_query.append({name: fn(list(ranked), relevant, k) for name, fn in _METRIC_FUNCTIONS.items()})
        groups.append(" / ".join(key) if isinstance(key, tuple) else str(key))
    summary = metrics.summarise(per_query, groups)
    per_group: dict[str, dict[str, float]] = {}
    by_group: dict[str, list[dict[str, float | None]]] = defaultdict(list)
    for values, group in zip(per_query, groups, strict=True):
        by_group[group].append(values)
    for group, rows in sorted(by_group.items()):
        per_group[group] = {"queries": float(len(rows))}
        for name in METRICS:
            found = [float(value) for row in rows if (value := row[name]) is not None]
            per_group[group][name] = float(np.mean(found)) if found else float("nan")
    return Evaluation(
        k=k,
        queries=len(per_query),
        skipped=skipped,
        groups=len(by_group),
        micro={name: summary.micro.get(name, float("nan")) for name in METRICS},
        macro={name: summary.macro.get(name, float("nan")) for name in METRICS},
        per_group=per_group,
    )


def exact_rankings(ids: Sequence[K], vectors: np.ndarray, k: int) -> dict[K, list[K]]:
    """Each item's ``k`` nearest other items (cosine), by exhaustive search: for baselines and checks."""
    from recommendations.topk import exact_top_k

    if len(ids) < 2:
        return {item: [] for item in ids}
    indices, _ = exact_top_k(np.asarray(vectors, dtype=np.float32), min(k, len(ids) - 1))
    return {item: [ids[j] for j in row if j >= 0] for item, row in zip(ids, indices.tolist(), strict=True)}


def format_table(evaluation: Evaluation, *, title: str) -> str:
    k = evaluation.k
    lines = [title, f"{'metric':<14} {'micro':>7} {'macro':>7}"]
    for name in METRICS:
        lines.append(
            f"{name + '@' + str(k):<14} {evaluation.micro[name]:>7.3f} {evaluation.macro[name]:>7.3f}"
        )
    lines.append(
        f"{evaluation.queries:,} queries scored over {evaluation.groups:,} groups; "
        f"{evaluation.skipped:,} skipped (no other item in their group)."
    )
    return "\n".join(lines)
