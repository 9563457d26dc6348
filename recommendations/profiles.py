"""Shopper profiles: from a shopper's interactions to scores for candidate products (numpy only).

Every vector is a float32 row; product vectors are expected L2-normalised as the encoders return them,
and every score here is a cosine, so vectors of unit length are assumed but not required.

Four strategies, all behind ``build_profile(...).score(candidates)``:

- ``"mean"``: cosine to the plain mean of the liked products (a baseline).
- ``"weighted"``: cosine to ``w_pos * weighted mean(positives) - w_neg * weighted mean(negatives)``;
  weights come from ``interaction_weight`` (kind of interaction, exponential decay with age).
- ``"session"``: cosine to a profile that follows the current session's clicks in order, blended
  with the long-term weighted profile.
- ``"best_score"``: max cosine to any positive minus max cosine to any negative. A shopper who likes
  both sneakers and handbags gets both, where an averaged profile would point between them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recommendations.ranking import mmr

DAY_S = 86_400.0
# How much each kind of interaction says about taste; a purchase says most.
POSITIVE_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "like": 4.0,
    "add_to_cart": 5.0,
    "purchase": 6.0,
}
# Magnitudes of negative signals (they are subtracted): an explicit dislike says more than a hide.
NEGATIVE_WEIGHTS: dict[str, float] = {"dislike": 4.0, "hide": 2.0}
STRATEGIES = ("mean", "weighted", "session", "best_score")


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-12:
        return None
    return (vector / norm).astype(np.float32)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _rows(vectors: np.ndarray | Sequence[np.ndarray] | None) -> np.ndarray | None:
    """An (m, d) float32 array, or None when there are no rows."""
    if vectors is None:
        return None
    array = np.asarray(vectors, dtype=np.float32)
    if array.size == 0:
        return None
    return array.reshape(len(array), -1)


def is_negative(kind: str) -> bool:
    return kind in NEGATIVE_WEIGHTS


def interaction_weight(
    kind: str,
    age_s: float,
    *,
    half_life_s: float | None,
    weights: Mapping[str, float] | None = None,
) -> float:
    """Weight of one interaction: its kind's weight halved every ``half_life_s`` seconds of age.

    Negative kinds (``dislike``, ``hide``) return a positive magnitude too: pass them as
    ``negative_weights`` and ``is_negative()`` tells which side an interaction goes to.
    ``half_life_s=None`` disables decay. ``weights`` overrides the default table for any kind.
    """
    table = {**POSITIVE_WEIGHTS, **NEGATIVE_WEIGHTS, **(weights or {})}
    if kind not in table:
        raise ValueError(f"unknown interaction kind {kind!r}; expected one of {sorted(table)}")
    if half_life_s is None:
        return table[kind]
    if half_life_s <= 0:
        raise ValueError(f"half_life_s must be positive, got {half_life_s}")
    # A timestamp slightly in the future (clock skew) must not weigh more than a fresh one.
    return table[kind] * 0.5 ** (max(age_s, 0.0) / half_life_s)


def mean_profile(positives: np.ndarray) -> np.ndarray | None:
    """L2-normalised mean of the positive vectors; None when there are none (or they cancel out)."""
    rows = _rows(positives)
    if rows is None:
        return None
    return _unit(rows.mean(axis=0))


def _weighted_mean(vectors: np.ndarray, weights: np.ndarray | Sequence[float] | None) -> np.ndarray | None:
    if weights is None:
        return vectors.mean(axis=0)
    weight_array = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weight_array.shape[0] != vectors.shape[0]:
        raise ValueError(f"{weight_array.shape[0]} weights for {vectors.shape[0]} vectors")
    if (weight_array < 0).any():
        raise ValueError("weights must be non-negative")
    total = weight_array.sum()
    if total <= 0:
        return None
    return (weight_array @ vectors) / total


def weighted_profile(
    positives: np.ndarray,
    positive_weights: np.ndarray | Sequence[float] | None,
    negatives: np.ndarray | None = None,
    negative_weights: np.ndarray | Sequence[float] | None = None,
    *,
    w_pos: float = 1.0,
    w_neg: float = 0.5,
) -> np.ndarray | None:
    """normalise(w_pos * weighted mean(positives) - w_neg * weighted mean(negatives)).

    Weights default to 1 each. Returns None without positives (negatives alone say what a shopper
    avoids, not what to show) or when the result has no direction (e.g. positives equal negatives
    with ``w_pos == w_neg``).
    """
    positive_rows = _rows(positives)
    if positive_rows is None:
        return None
    profile = _weighted_mean(positive_rows, positive_weights)
    if profile is None:
        return None
    profile = w_pos * profile
    negative_rows = _rows(negatives)
    if negative_rows is not None and w_neg:
        negative_mean = _weighted_mean(negative_rows, negative_weights)
        if negative_mean is not None:
            profile = profile - w_neg * negative_mean
    return _unit(profile)


def session_profile(
    vectors_in_order: np.ndarray,
    *,
    long_term: np.ndarray | None = None,
    blend: float = 0.3,
) -> np.ndarray | None:
    """A profile that follows the current session, oldest interaction first.

    s_1 = v_1; s_t = a1 * s_{t-1} + a2 * v_t with a1 = (cos(v_t, s_{t-1}) + 1) / 2 and a2 = 1 - a1, and
    s_t is re-normalised after each step so that a1 and a2 weigh directions, not lengths. An item
    close to the session so far barely moves it; an item unlike it (cos < 0) pulls it most of the way:
    the shopper has changed their mind. The result is normalise((1 - blend) * s + blend * long_term),
    or just s without a long-term profile, or the long-term profile alone for an empty session.
    """
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1], got {blend}")
    long_term_unit = None if long_term is None else _unit(np.asarray(long_term, dtype=np.float64))
    rows = _rows(vectors_in_order)
    if rows is None:
        return None if long_term_unit is None else long_term_unit.astype(np.float32)
    state: np.ndarray | None = None
    for vector in rows.astype(np.float64):
        current = _unit(vector)
        if current is None:
            continue
        if state is None:
            state = current.astype(np.float64)
            continue
        keep = (float(current @ state) + 1.0) / 2.0
        state = _unit(keep * state + (1.0 - keep) * current)
        if state is None:  # exactly opposite vectors with keep = 0.5 cancel: restart from the newest
            state = current.astype(np.float64)
    if state is None:
        return None if long_term_unit is None else long_term_unit.astype(np.float32)
    if long_term_unit is None:
        return state.astype(np.float32)
    return _unit((1.0 - blend) * state + blend * long_term_unit)


def best_score(
    candidates: np.ndarray,
    positives: np.ndarray | None,
    negatives: np.ndarray | None = None,
    *,
    neg_weight: float = 1.0,
) -> np.ndarray:
    """Per candidate: max cosine to any positive - neg_weight * max cosine to any negative.

    An empty side contributes 0. No averaging: each interest keeps its own nearest candidates.
    """
    candidate_rows = _rows(candidates)
    if candidate_rows is None:
        return np.zeros(0, dtype=np.float32)
    candidate_rows = _unit_rows(candidate_rows)
    scores = np.zeros(candidate_rows.shape[0], dtype=np.float32)
    positive_rows = _rows(positives)
    if positive_rows is not None:
        scores += (candidate_rows @ _unit_rows(positive_rows).T).max(axis=1)
    negative_rows = _rows(negatives)
    if negative_rows is not None and neg_weight:
        scores -= neg_weight * (candidate_rows @ _unit_rows(negative_rows).T).max(axis=1)
    return scores


@dataclass(frozen=True)
class Profile:
    """A shopper's taste under one strategy, ready to score candidate product vectors.

    ``vector`` is set for mean / weighted / session (score = cosine to it); ``positives`` and
    ``negatives`` for best_score. ``query_vectors`` are the vectors to fetch candidates with from a
    vector index: the profile vector, or each positive for best_score (one query per interest).
    """

    strategy: str
    vector: np.ndarray | None = None
    positives: np.ndarray | None = None
    negatives: np.ndarray | None = None
    neg_weight: float = 1.0

    @property
    def query_vectors(self) -> np.ndarray:
        if self.vector is not None:
            return self.vector.reshape(1, -1)
        assert self.positives is not None
        return self.positives

    def score(self, candidates: np.ndarray) -> np.ndarray:
        """One float32 score per candidate row; higher is a better match."""
        if self.vector is None:
            return best_score(candidates, self.positives, self.negatives, neg_weight=self.neg_weight)
        candidate_rows = _rows(candidates)
        if candidate_rows is None:
            return np.zeros(0, dtype=np.float32)
        return (_unit_rows(candidate_rows) @ self.vector).astype(np.float32)


def build_profile(
    strategy: str,
    *,
    positives: np.ndarray | None,
    positive_weights: np.ndarray | Sequence[float] | None = None,
    negatives: np.ndarray | None = None,
    negative_weights: np.ndarray | Sequence[float] | None = None,
    session: np.ndarray | None = None,
    w_pos: float = 1.0,
    w_neg: float = 0.5,
    blend: float = 0.3,
    neg_weight: float = 1.0,
) -> Profile | None:
    """The shopper's ``Profile`` under ``strategy`` (one of ``STRATEGIES``), or None to cold-start.

    ``positives`` / ``negatives``: the long-term history's vectors, with optional weights (see
    ``interaction_weight``). ``session``: this session's positive vectors, oldest first (session
    strategy only; it blends them with the weighted long-term profile). ``mean`` ignores weights and
    negatives. None means the history says nothing usable yet: show ``cold_start_sample`` instead.
    """
    if strategy == "mean":
        vector = mean_profile(positives) if positives is not None else None
        return None if vector is None else Profile(strategy, vector=vector)
    if strategy == "weighted":
        vector = (
            weighted_profile(
                positives, positive_weights, negatives, negative_weights, w_pos=w_pos, w_neg=w_neg
            )
            if positives is not None
            else None
        )
        return None if vector is None else Profile(strategy, vector=vector)
    if strategy == "session":
        long_term = (
            weighted_profile(
                positives, positive_weights, negatives, negative_weights, w_pos=w_pos, w_neg=w_neg
            )
            if positives is not None
            else None
        )
        vector = (
            session_profile(session, long_term=long_term, blend=blend) if session is not None else long_term
        )
        return None if vector is None else Profile(strategy, vector=vector)
    if strategy == "best_score":
        positive_rows = _rows(positives)
        if positive_rows is None:
            return None
        return Profile(
            strategy,
            positives=_unit_rows(positive_rows),
            negatives=_rows(negatives),
            neg_weight=neg_weight,
        )
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")


@dataclass(frozen=True)
class Picks:
    """Ids chosen by ``explore_exploit``: best matches first, then the exploration slots."""

    exploit_ids: list[Hashable]
    explore_ids: list[Hashable]

    @property
    def ids(self) -> list[Hashable]:
        return [*self.exploit_ids, *self.explore_ids]


def explore_exploit(
    scores: np.ndarray,
    candidate_ids: Sequence[Hashable],
    *,
    k_exploit: int,
    k_explore: int,
    exclude_ids: Sequence[Hashable] | set[Hashable] = (),
    rng: np.random.Generator,
    diversity_vectors: np.ndarray | None = None,
    diversity: float = 0.9,
    explore_pool_factor: int = 10,
) -> Picks:
    """The ``k_exploit`` best-scored candidates plus ``k_explore`` picks that widen what we learn.

    Ids in ``exclude_ids`` (already shown) and repeats within ``candidate_ids`` are never returned,
    so passing everything shown so far as ``exclude_ids`` means no id is ever shown twice.
    Exploration draws from the candidates left after exploitation: without ``diversity_vectors``
    uniformly at random; with them, from a random pool of ``explore_pool_factor * k_explore`` it picks
    by MMR (``diversity`` near 1: each pick as unlike the exploit picks and earlier explore picks as
    possible). Deterministic for a given ``rng`` seed.
    """
    score_array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if score_array.shape[0] != len(candidate_ids):
        raise ValueError(f"{score_array.shape[0]} scores for {len(candidate_ids)} candidate ids")
    excluded = set(exclude_ids)
    seen: set[Hashable] = set()
    eligible: list[int] = []
    for position, candidate_id in enumerate(candidate_ids):
        if candidate_id in excluded or candidate_id in seen:
            continue
        seen.add(candidate_id)
        eligible.append(position)
    positions = np.asarray(eligible, dtype=np.int64)
    ranked = positions[np.argsort(-score_array[positions], kind="stable")]
    exploit = ranked[: max(k_exploit, 0)]
    rest = ranked[max(k_exploit, 0) :]
    explore = np.zeros(0, dtype=np.int64)
    if k_explore > 0 and rest.size:
        if diversity_vectors is None:
            explore = rng.choice(rest, size=min(k_explore, rest.size), replace=False)
        else:
            pool = rng.choice(rest, size=min(explore_pool_factor * k_explore, rest.size), replace=False)
            pool = np.sort(pool)  # the pool's order must not depend on anything but the rng draw
            subset = np.concatenate([exploit, pool])
            vectors = np.asarray(diversity_vectors, dtype=np.float32)[subset]
            chosen = mmr(score_array[subset], vectors, k_explore, diversity, selected=range(exploit.size))
            explore = subset[chosen]
    return Picks(
        exploit_ids=[candidate_ids[int(i)] for i in exploit],
        explore_ids=[candidate_ids[int(i)] for i in explore],
    )


def cold_start_sample(category_ids: Sequence[Hashable], k: int, rng: np.random.Generator) -> list[int]:
    """Positions of ``k`` items spread across categories, for a shopper with no history.

    Categories are visited round-robin in a random order, taking a random not-yet-taken item from
    each, so the first ``c`` picks cover ``c`` different categories (when there are that many).
    """
    by_category: dict[Hashable, list[int]] = {}
    for position, category in enumerate(category_ids):
        by_category.setdefault(category, []).append(position)
    categories = list(by_category)
    queues = [
        [int(p) for p in rng.permutation(by_category[categories[i]])]
        for i in rng.permutation(len(categories))
    ]
    picks: list[int] = []
    round_index = 0
    while len(picks) < k and any(round_index < len(queue) for queue in queues):
        for queue in queues:
            if len(picks) == k:
                break
            if round_index < len(queue):
                picks.append(queue[round_index])
        round_index += 1
    return picks
