"""Offline evaluation of personalisation on vectors held in memory (no Django, no database).

Two experiments, both driven by the same pure selection functions the pages use (``recommendations.profiles``
through :func:`select_round`):

* target finding: a simulated shopper has a hidden target product and, each round, picks the shown product
  closest to it (by a *judge*); we count rounds until the target is shown;
* leave-last-out: sessions of a shopper browsing one articleType/colour are built from labels, the last item
  is held out and the ranking of the remaining catalog is scored with ``recommendations.metrics``.

The Myntra photo set is embedded once per encoder and cached in ``default_cache_dir()``
(``$LOOKALIKE_CACHE_DIR``, else ``~/.cache/lookalike``).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recommendations import metrics
from recommendations.personalisation import (
    COLD_START_POOL_FACTOR,
    EXPLOIT_POOL_FACTOR,
    EXPLORE_POOL_FACTOR,
    MAX_QUERY_VECTORS,
    HistoryVectors,
    ProfileOptions,
    game_history,
    select_products,
    shopper_profile,
)
from recommendations.profiles import Profile


def default_cache_dir() -> Path:
    """``$LOOKALIKE_CACHE_DIR``, else the user's cache folder: never inside the installed package."""
    if os.environ.get("LOOKALIKE_CACHE_DIR"):
        return Path(os.environ["LOOKALIKE_CACHE_DIR"]) / "personalisation"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lookalike" / "personalisation"


# --- The labelled photo set -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledVectors:
    """One row per distinct photo: ids, unit vectors and the labels the independent judge reads."""

    ids: np.ndarray  # (n,) int64, the Myntra ids
    vectors: np.ndarray  # (n, d) float32, rows L2-normalised
    article_types: np.ndarray  # (n,) str
    colours: np.ndarray  # (n,) str
    sub_categories: np.ndarray  # (n,) str, e.g. "Topwear"
    master_categories: np.ndarray  # (n,) str, e.g. "Apparel"
    encoder: str
    weights_id: str

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> LabelledVectors:
        return LabelledVectors(
            ids=self.ids[rows],
            vectors=self.vectors[rows],
            article_types=self.article_types[rows],
            colours=self.colours[rows],
            sub_categories=self.sub_categories[rows],
            master_categories=self.master_categories[rows],
            encoder=self.encoder,
            weights_id=self.weights_id,
        )


@dataclass(frozen=True)
class LabelColumns:
    """Which columns of a labels CSV hold what the judge and the sessions read (defaults: Myntra's)."""

    image: str = "image"  # the photo's file name, relative to the images folder
    article_type: str = "articleType"
    colour: str = "baseColour"
    sub_category: str = "subCategory"
    master_category: str = "masterCategory"
    id: str | None = "id"  # a numeric id (None: the row number)
    md5: str | None = "md5"  # byte-identical photos are dropped (None: keep every row)


MYNTRA_COLUMNS = LabelColumns()


def read_labels(labels_path: Path, columns: LabelColumns = MYNTRA_COLUMNS) -> list[dict[str, str]]:
    """The label rows, byte-identical photos (same md5) dropped, sorted by id (or kept in file order)."""
    with open(labels_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    wanted = [
        columns.image,
        columns.article_type,
        columns.colour,
        columns.sub_category,
        columns.master_category,
    ]
    missing = [name for name in [*wanted, columns.id, columns.md5] if name and rows and name not in rows[0]]
    if missing:
        raise ValueError(f"{labels_path} has no column {', '.join(missing)} (columns: {', '.join(rows[0])})")
    if columns.id:
        rows.sort(key=lambda r: int(r[columns.id]))
    seen: set[str] = set()
    distinct = []
    for row in rows:
        digest = row[columns.md5] if columns.md5 else None
        if digest is None or digest not in seen:
            if digest is not None:
                seen.add(digest)
            distinct.append(row)
    return distinct


def read_myntra_labels(data_dir: Path) -> list[dict[str, str]]:
    """The label rows of ``<data_dir>/myntra``, byte-identical photos (same md5) dropped, sorted by id."""
    return read_labels(data_dir / "myntra" / "labels.csv")


def load_myntra_vectors(data_dir: Path, **options: Any) -> LabelledVectors:
    """``load_labelled_vectors`` on ``<data_dir>/myntra/labels.csv`` and its ``images/`` folder."""
    return load_labelled_vectors(data_dir / "myntra" / "labels.csv", **options)


def load_labelled_vectors(
    labels_path: Path,
    *,
    images_dir: Path | None = None,
    columns: LabelColumns = MYNTRA_COLUMNS,
    encoder_key: str = "efficientnet_lite0",
    weights: str = "DEFAULT",
    cache_dir: Path | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    num_threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
    stored: Callable[[list[str]], dict[str, np.ndarray]] | None = None,
) -> LabelledVectors:
    """Embed a labelled photo set (a labels CSV, photos in ``images_dir``, default ``images/`` beside it) with
    a real encoder, or load the vectors cached by an earlier run.

    The cache file is named after the set's folder, the encoder, its weights and a digest of the label rows,
    so a changed photo set or encoder never reuses stale vectors. Embedding all ~4,900 distinct Myntra photos
    takes a few minutes on two CPU cores; later runs load the cache in well under a second. ``stored`` maps
    photos' sha256 digests to vectors already computed with the same encoder and weights (the shop's
    embedding space, when the photos were imported): those photos are not embedded again.
    """
    cache_dir = cache_dir or default_cache_dir()
    images_dir = images_dir or labels_path.parent / "images"
    every_row = read_labels(labels_path, columns)
    rows = every_row[:limit] if limit is not None else every_row

    def cache_file(selected: list[dict[str, str]]) -> Path:
        keys = (r[columns.md5] if columns.md5 else r[columns.image] for r in selected)
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
        return cache_dir / f"{labels_path.parent.name}-{encoder_key}-{weights.replace('/', '_')}-{digest}.npz"

    cache_path, whole_set = cache_file(rows), cache_file(every_row)
    if not cache_path.exists() and whole_set.exists():  # a subset of an embedded whole set: slice it
        cached = np.load(whole_set, allow_pickle=False)
        vectors, weights_id = cached["vectors"][: len(rows)], str(cached["weights_id"])
    elif cache_path.exists():
        cached = np.load(cache_path, allow_pickle=False)
        vectors, weights_id = cached["vectors"], str(cached["weights_id"])
    else:
        paths = [images_dir / r[columns.image] for r in rows]
        known: dict[str, np.ndarray] = {}
        digests: list[str] = []
        if stored is not None:
            digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]
            known = stored(digests)
        missing = [i for i in range(len(paths)) if not digests or digests[i] not in known]
        embedded, weights_id = _embed_photos(
            [paths[i] for i in missing],
            encoder_key=encoder_key,
            weights=weights,
            batch_size=batch_size,
            num_threads=num_threads,
            progress=progress,
        )
        if known:
            dimensions = next(iter(known.values())).shape[0]
            vectors = np.zeros((len(paths), dimensions), dtype=np.float32)
            for i, digest in enumerate(digests):
                if digest in known:
                    vectors[i] = known[digest]
            if missing:
                vectors[missing] = embedded
        else:
            vectors = embedded
        cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = cache_path.with_suffix(".tmp.npz")
        np.savez(temporary, vectors=vectors, weights_id=np.asarray(weights_id))
        temporary.replace(cache_path)  # a run killed mid-write leaves no half-written cache behind
    return LabelledVectors(
        ids=np.asarray([int(r[columns.id]) if columns.id else i for i, r in enumerate(rows)], dtype=np.int64),
        vectors=vectors.astype(np.float32, copy=False),
        article_types=np.asarray([r[columns.article_type] for r in rows]),
        colours=np.asarray([r[columns.colour] for r in rows]),
        sub_categories=np.asarray([r[columns.sub_category] for r in rows]),
        master_categories=np.asarray([r[columns.master_category] for r in rows]),
        encoder=encoder_key,
        weights_id=weights_id,
    )


def _embed_photos(
    paths: Sequence[Path],
    *,
    encoder_key: str,
    weights: str,
    batch_size: int,
    num_threads: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, str]:
    import torch
    from PIL import Image

    from recommendations.encoders import build_encoder, weights_id_for

    if not paths:  # every photo had a stored vector
        return np.zeros((0, 0), np.float32), weights_id_for(encoder_key, weights)
    encoder = build_encoder(encoder_key, weights=weights, device="cpu", num_threads=num_threads)

    def load(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return encoder.preprocess(image.convert("RGB"))

    chunks = []
    # One decoding thread keeps the next batch ready while torch uses the cores for the current one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
        pending = pool.submit(lambda b: [load(p) for p in b], batches[0]) if batches else None
        for index in range(len(batches)):
            assert pending is not None
            tensors = pending.result()
            if index + 1 < len(batches):
                pending = pool.submit(lambda b: [load(p) for p in b], batches[index + 1])
            chunks.append(encoder.embed_tensors(torch.stack(tensors)))
            if progress:
                progress(min((index + 1) * batch_size, len(paths)), len(paths))
    return np.concatenate(chunks).astype(np.float32), encoder.weights_id


# --- Target finding ---------------------------------------------------------------------------------------

# A judge answers "which of these shown rows is closest to the target row?" with a row index.
Judge = Callable[[np.ndarray, int], int]


def vector_judge(vectors: np.ndarray) -> Judge:
    """The optimistic judge: the shopper sees products exactly as the recommender's own vectors do."""

    def pick(shown: np.ndarray, target: int) -> int:
        return int(shown[int(np.argmax(vectors[shown] @ vectors[target]))])

    return pick


def label_judge(data: LabelledVectors, rng: np.random.Generator) -> Judge:
    """An independent judge that never looks at vectors: same articleType and colour first, then articleType,
    then sub-category, colour, master category; ties are broken at random."""

    def pick(shown: np.ndarray, target: int) -> int:
        match = (
            8 * (data.article_types[shown] == data.article_types[target])
            + 4 * (data.sub_categories[shown] == data.sub_categories[target])
            + 2 * (data.colours[shown] == data.colours[target])
            + 1 * (data.master_categories[shown] == data.master_categories[target])
        )
        best = np.flatnonzero(match == match.max())
        return int(shown[int(rng.choice(best))])

    return pick


@dataclass(frozen=True)
class RoundConfig:
    """One page of a personalised round: slot counts, how exploration picks, how the profile is built."""

    options: ProfileOptions
    k_exploit: int = 5
    k_explore: int = 5
    explore_mode: str = "diverse"

    @property
    def k(self) -> int:
        return self.k_exploit + self.k_explore


def memory_pool(
    *,
    profile: Profile | None,
    vectors: np.ndarray,
    shown: np.ndarray,
    config: RoundConfig,
    rng: np.random.Generator,
    query_rows: Sequence[int] = (),
    gram: np.ndarray | None = None,
) -> np.ndarray:
    """The candidate pool the pages fetch from the database, computed in memory (row indices).

    Exactly the page's recipe (``personalisation.candidate_pool``): the nearest unseen rows to each of the
    profile's query vectors plus a random sample of unseen rows for exploration, or a larger random sample
    for a cold start. When the query vectors are catalog rows (best_score: the positives) and ``gram`` holds
    the catalog's cosine matrix, its rows stand in for the matrix product (same numbers, far less work).
    """
    unseen = np.flatnonzero(~shown)
    if profile is None:
        size = min(unseen.size, COLD_START_POOL_FACTOR * config.k)
        return rng.choice(unseen, size=size, replace=False)
    per_query = min(EXPLOIT_POOL_FACTOR * config.k_exploit, unseen.size)
    if profile.vector is None and gram is not None and len(query_rows):
        scores = gram[np.asarray(query_rows)[-MAX_QUERY_VECTORS:]]
    else:
        scores = (vectors @ profile.query_vectors[-MAX_QUERY_VECTORS:].T).T  # (queries, n)
    scores[:, shown] = -np.inf
    parts = [np.argpartition(-row, per_query - 1)[:per_query] for row in scores] if per_query else []
    parts.append(
        rng.choice(unseen, size=min(unseen.size, EXPLORE_POOL_FACTOR * config.k_explore), replace=False)
    )
    pool = np.concatenate(parts)
    _, first = np.unique(pool, return_index=True)
    return pool[np.sort(first)]


def find_target(
    *,
    data: LabelledVectors,
    categories: np.ndarray,
    target: int,
    judge: Judge,
    config: RoundConfig,
    rng: np.random.Generator,
    max_rounds: int,
    gram: np.ndarray | None = None,
) -> int:
    """Rounds of the preference game until ``target`` is shown (``max_rounds`` + 1 when it never is)."""
    vectors = data.vectors
    shown = np.zeros(len(vectors), dtype=bool)
    picks: list[int] = []
    rejects: list[int] = []
    for round_number in range(1, max_rounds + 1):
        history = game_history(vectors[picks], vectors[rejects])
        profile = shopper_profile(history, config.options)
        pool = memory_pool(
            profile=profile, vectors=vectors, shown=shown, config=config, rng=rng, query_rows=picks, gram=gram
        )
        if pool.size == 0:
            break
        selection = select_products(
            profile=profile,
            pool_ids=[int(i) for i in pool],
            pool_vectors=vectors[pool],
            pool_categories=[categories[i] for i in pool],
            k_exploit=config.k_exploit,
            k_explore=config.k_explore,
            exclude_ids=(),
            rng=rng,
            explore_mode=config.explore_mode,
        )
        page = np.asarray(selection.ids, dtype=np.int64)
        if (page == target).any():
            return round_number
        shown[page] = True
        pick = judge(page, target)
        picks.append(pick)
        rejects.extend(int(i) for i in page if i != pick)
    return max_rounds + 1


def random_browsing_rounds(n: int, k: int) -> float:
    """Expected rounds to see a given product when each round shows ``k`` unseen products at random.

    The target's position in a random order is uniform on 1..n and it is seen in round ceil(position / k):
    about (n / k + 1) / 2, i.e. the N / (2k) of the issue.
    """
    return float(np.mean(np.ceil(np.arange(1, n + 1) / k)))


@dataclass(frozen=True)
class TargetResult:
    strategy: str
    judge: str
    k_exploit: int
    k_explore: int
    rounds: np.ndarray  # per target

    @property
    def mean(self) -> float:
        return float(self.rounds.mean())

    @property
    def median(self) -> float:
        return float(np.median(self.rounds))


def run_target_finding(
    data: LabelledVectors,
    *,
    strategies: Sequence[str],
    judges: Sequence[str] = ("vectors", "labels"),
    slots: Sequence[tuple[int, int]] = ((5, 5),),
    targets: int = 200,
    seed: int = 0,
    options: Callable[[str], ProfileOptions] | None = None,
    explore_mode: str = "diverse",
    categories: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[TargetResult]:
    """Every (strategy, judge, slots) combination over the same sample of targets (seeded, repeatable).

    ``progress(done, total)`` is called after each simulated search (total: combinations × targets)."""
    options = options or ProfileOptions.from_settings
    categories = data.article_types if categories is None else categories
    target_rows = np.random.default_rng(seed).choice(len(data), size=min(targets, len(data)), replace=False)
    gram = data.vectors @ data.vectors.T if "best_score" in strategies else None
    results = []
    total, done = len(slots) * len(judges) * len(strategies) * len(target_rows), 0
    for k_exploit, k_explore in slots:
        max_rounds = int(np.ceil(len(data) / (k_exploit + k_explore)))
        for judge_name in judges:
            for strategy in strategies:
                config = RoundConfig(
                    options=options(strategy),
                    k_exploit=k_exploit,
                    k_explore=k_explore,
                    explore_mode=explore_mode,
                )
                rounds = []
                for number, target in enumerate(target_rows):
                    # One generator per target: each strategy meets the same cold start and the same ties.
                    rng = np.random.default_rng([seed, number])
                    judge = vector_judge(data.vectors) if judge_name == "vectors" else label_judge(data, rng)
                    rounds.append(
                        find_target(
                            data=data,
                            categories=categories,
                            target=int(target),
                            judge=judge,
                            config=config,
                            rng=rng,
                            max_rounds=max_rounds,
                            gram=gram,
                        )
                    )
                    done += 1
                    if progress:
                        progress(done, total)
                results.append(
                    TargetResult(
                        strategy, judge_name, k_exploit, k_explore, np.asarray(rounds, dtype=np.float64)
                    )
                )
    return results


# --- Leave-last-out ---------------------------------------------------------------------------------------

# What a simulated shopper does with the products of the group they browse, and how often.
SESSION_KINDS = ["view", "click", "like", "add_to_cart"]
SESSION_KIND_PROBABILITIES = [0.5, 0.3, 0.1, 0.1]


@dataclass(frozen=True)
class SimulatedSession:
    """A shopper browsing one articleType + colour: its rows in order, the held-out last one, the rest."""

    group: str
    history_rows: list[int]  # oldest first, excluding the held-out row
    history_kinds: list[str]
    held_out: int
    relevant: set[int] = field(default_factory=set)  # the group's rows the shopper has not seen


def simulate_sessions(
    data: LabelledVectors, *, sessions: int, rng: np.random.Generator, length: int = 5
) -> list[SimulatedSession]:
    """Sessions built from labels: ``length`` products of one articleType + colour (groups drawn in proportion
    to their size), one stray view of an unrelated product, and a dislike of the same articleType in another
    colour when there is one. The last product of the group is held out."""
    groups: dict[str, list[int]] = defaultdict(list)
    for row, (article_type, colour) in enumerate(zip(data.article_types, data.colours, strict=True)):
        groups[f"{article_type} / {colour}"].append(row)
    eligible = [name for name, rows in groups.items() if len(rows) >= length + 2]
    sizes = np.asarray([len(groups[name]) for name in eligible], dtype=np.float64)
    result = []
    for _ in range(sessions):
        group = eligible[int(rng.choice(len(eligible), p=sizes / sizes.sum()))]
        rows = [int(r) for r in rng.choice(groups[group], size=length, replace=False)]
        events = [(row, str(rng.choice(SESSION_KINDS, p=SESSION_KIND_PROBABILITIES))) for row in rows[:-1]]
        stray = int(rng.integers(len(data)))
        if stray not in groups[group]:
            events.insert(int(rng.integers(len(events) + 1)), (stray, "view"))
        article_type = data.article_types[rows[0]]
        other_colours = np.flatnonzero(
            (data.article_types == article_type) & (data.colours != data.colours[rows[0]])
        )
        if other_colours.size:
            events.insert(int(rng.integers(len(events) + 1)), (int(rng.choice(other_colours)), "dislike"))
        seen = {row for row, _ in events}
        result.append(
            SimulatedSession(
                group=group,
                history_rows=[row for row, _ in events],
                history_kinds=[kind for _, kind in events],
                held_out=rows[-1],
                relevant=set(groups[group]) - seen,
            )
        )
    return result


def session_history(data: LabelledVectors, session: SimulatedSession) -> HistoryVectors:
    positive = [(row, kind) for row, kind in zip(session.history_rows, session.history_kinds, strict=True)]
    negatives = [row for row, kind in positive if kind == "dislike"]
    positives = [(row, kind) for row, kind in positive if kind != "dislike"]
    count = len(positives)
    return HistoryVectors(
        positives=data.vectors[[row for row, _ in positives]],
        positive_kinds=[kind for _, kind in positives],
        # A session of one interaction a minute, the last one just now.
        positive_ages_s=[60.0 * (count - i) for i in range(count)],
        in_session=[True] * count,
        negatives=data.vectors[negatives] if negatives else np.zeros((0, data.vectors.shape[1]), np.float32),
        negative_kinds=["dislike"] * len(negatives),
        negative_ages_s=[0.0] * len(negatives),
    )


def _scores(ranked: Sequence[int], session: SimulatedSession, k: int) -> dict[str, float | None]:
    return {
        f"hit_rate@{k}": metrics.hit_rate_at_k(ranked, session.relevant, k),
        f"precision@{k}": metrics.precision_at_k(ranked, session.relevant, k),
        f"recall@{k}": metrics.recall_at_k(ranked, session.relevant, k),
        f"ndcg@{k}": metrics.ndcg_at_k(ranked, session.relevant, k),
        f"map@{k}": metrics.average_precision_at_k(ranked, session.relevant, k),
        f"held_out_hit@{k}": metrics.hit_rate_at_k(ranked, {session.held_out}, k),
    }


def run_leave_last_out(
    data: LabelledVectors,
    *,
    strategies: Sequence[str],
    sessions: int = 300,
    k: int = 10,
    seed: int = 0,
    options: Callable[[str], ProfileOptions] | None = None,
) -> dict[str, dict[str, float]]:
    """Micro-averaged metrics@k per strategy and for a popularity baseline, already-seen items excluded.

    Relevant = the products of the session's articleType + colour the shopper has not seen (the held-out last
    one among them); ``held_out_hit@k`` asks for that exact product. Popularity counts interactions in a
    separate set of simulated sessions (5× as many) and recommends the most interacted-with products.
    """
    options = options or ProfileOptions.from_settings
    rng = np.random.default_rng(seed)
    test_sessions = simulate_sessions(data, sessions=sessions, rng=rng)
    popularity = Counter(
        row for s in simulate_sessions(data, sessions=5 * sessions, rng=rng) for row in s.history_rows
    )
    popular_order = [row for row, _ in popularity.most_common()] + [
        row for row in range(len(data)) if row not in popularity
    ]
    every_row = list(range(len(data)))
    per_strategy: dict[str, list[dict[str, float | None]]] = defaultdict(list)
    for session in test_sessions:
        seen = set(session.history_rows)
        ranked_popular = [row for row in popular_order[: k + len(seen)] if row not in seen][:k]
        per_strategy["popularity"].append(_scores(ranked_popular, session, k))
        history = session_history(data, session)
        for strategy in strategies:
            profile = shopper_profile(history, options(strategy))
            selection = select_products(
                profile=profile,
                pool_ids=every_row,
                pool_vectors=data.vectors,
                pool_categories=data.article_types,
                k_exploit=k,
                k_explore=0,
                exclude_ids=seen,
                rng=rng,
            )
            per_strategy[strategy].append(_scores([int(i) for i in selection.ids], session, k))
    groups = [s.group for s in test_sessions]
    return {name: metrics.summarise(rows, groups).micro for name, rows in per_strategy.items()}


# --- Reports ------------------------------------------------------------------------------------------------


def target_table(results: Sequence[TargetResult], *, n: int) -> str:
    """Markdown: mean / median rounds per strategy, judge and slots, with the ratio to random browsing."""
    lines = [
        "| strategy | judge | exploit + explore | mean rounds | median rounds | mean ÷ random "
        "| random (N/2k) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for result in results:
        random_rounds = random_browsing_rounds(n, result.k_exploit + result.k_explore)
        lines.append(
            f"| {result.strategy} | {result.judge} | {result.k_exploit} + {result.k_explore} "
            f"| {result.mean:.1f} | {result.median:.1f} | {result.mean / random_rounds:.3f} "
            f"| {random_rounds:.1f} |"
        )
    return "\n".join(lines)


def leave_last_out_table(table: dict[str, dict[str, float]], *, k: int) -> str:
    names = ["hit_rate", "precision", "recall", "ndcg", "map", "held_out_hit"]
    lines = [
        "| strategy | " + " | ".join(f"{name}@{k}" for name in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for strategy, values in table.items():
        lines.append(f"| {strategy} | " + " | ".join(f"{values[f'{name}@{k}']:.3f}" for name in names) + " |")
    return "\n".join(lines)
