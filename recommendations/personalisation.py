"""Reads: personalised product lists (the for-you page, preference-game rounds, purchase history).

Two layers:

* pure selection (numpy, no queries): ``shopper_profile()`` turns a shopper's history vectors into a
  ``profiles.Profile``; ``select_products()`` turns a candidate pool into the exploit + explore picks. The
  offline simulator (``recommendations.simulation``) calls exactly these functions on vectors held in memory,
  so what it measures is what the pages do;
* database selectors that gather the history and the candidate pool for a shopper and call the pure layer.

Writes (recording interactions, remembering what a session was shown) live in ``recommendations.interactions``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db.models import Q
from django.utils import timezone

from recommendations import profiles
from recommendations.catalog import product_field, product_model
from recommendations.conf import DEFAULTS, app_setting
from recommendations.interactions import Shopper
from recommendations.models import EmbeddingSpace, Interaction, ProductEmbedding, ShownProduct
from recommendations.selectors import ProductFilter, ScoredProduct, active_space, product_vectors, products_near_vector

FOR_YOU_PAGE = "for-you"
GAME_PAGE = "game"
GAME_SOURCE = "game"
# Candidates fetched per profile query vector for every exploit slot: re-scoring a few more than needed lets
# best_score's negatives (and products sharing photos) drop some without leaving the page short.
EXPLOIT_POOL_FACTOR = 4
# Random candidates drawn per exploration slot; explore_exploit picks the most varied among them.
EXPLORE_POOL_FACTOR = 10
# Random candidates per slot for a cold start, so that small categories are in the pool too.
COLD_START_POOL_FACTOR = 40
# best_score asks the vector index once per positive: only the most recent ones are asked.
MAX_QUERY_VECTORS = 8


# --- Pure selection, shared with the offline simulator -----------------------------------------------------


@dataclass(frozen=True)
class ProfileOptions:
    """How a profile is built: the strategy and its parameters (defaults from ``RECOMMENDATIONS``)."""

    strategy: str
    kind_weights: dict[str, float]
    half_life_s: float | None
    negative_weight: float
    session_blend: float

    @classmethod
    def from_settings(cls, strategy: str | None = None) -> ProfileOptions:
        strategy = strategy or app_setting("PROFILE_STRATEGY")
        if strategy not in profiles.STRATEGIES:
            raise ValueError(f"unknown profile strategy {strategy!r}: one of {list(profiles.STRATEGIES)}")
        return cls(
            strategy=strategy,
            kind_weights={**DEFAULTS["INTERACTION_WEIGHTS"], **app_setting("INTERACTION_WEIGHTS")},
            half_life_s=app_setting("INTERACTION_HALF_LIFE_S"),
            negative_weight=float(app_setting("NEGATIVE_WEIGHT")),
            session_blend=float(app_setting("SESSION_BLEND")),
        )


@dataclass(frozen=True)
class HistoryVectors:
    """A shopper's history as vectors, oldest first on each side.

    ``in_session`` marks the positives made in the current session (the ``session`` strategy follows them in
    order and blends in the long-term profile of all positives).
    """

    positives: np.ndarray  # (p, d)
    positive_kinds: Sequence[str]
    positive_ages_s: Sequence[float]
    in_session: Sequence[bool]
    negatives: np.ndarray  # (q, d)
    negative_kinds: Sequence[str]
    negative_ages_s: Sequence[float]

    @property
    def is_empty(self) -> bool:
        return len(self.positives) == 0 and len(self.negatives) == 0


def shopper_profile(history: HistoryVectors, options: ProfileOptions) -> profiles.Profile | None:
    """The shopper's profile, or None when the history says nothing yet (cold start)."""

    def weights(kinds: Sequence[str], ages_s: Sequence[float]) -> np.ndarray:
        return np.asarray(
            [
                profiles.interaction_weight(kind, age, half_life_s=options.half_life_s, weights=options.kind_weights)
                for kind, age in zip(kinds, ages_s, strict=True)
            ],
            dtype=np.float64,
        )

    if len(history.positives) == 0:
        return None
    in_session = np.asarray(history.in_session, dtype=bool)
    return profiles.build_profile(
        options.strategy,
        positives=history.positives,
        positive_weights=weights(history.positive_kinds, history.positive_ages_s),
        negatives=history.negatives if len(history.negatives) else None,
        negative_weights=weights(history.negative_kinds, history.negative_ages_s) if len(history.negatives) else None,
        session=history.positives[in_session] if in_session.any() else None,
        w_neg=options.negative_weight,
        neg_weight=options.negative_weight,
        blend=options.session_blend,
    )


def game_history(picks: np.ndarray, rejects: np.ndarray, *, reject_kind: str | None = "hide") -> HistoryVectors:
    """The preference game's history: each pick is a "like" of this session, oldest first; the products shown
    beside a pick but not chosen count as weak negatives of ``reject_kind`` (None: ignored).

    Ages are 0: a game lasts minutes, far below any sensible half-life.
    """
    dimensions = picks.shape[1] if picks.ndim == 2 and picks.size else (rejects.shape[1] if rejects.size else 1)
    picks = picks.reshape(-1, dimensions) if picks.size else np.zeros((0, dimensions), np.float32)
    rejects = rejects.reshape(-1, dimensions) if rejects.size and reject_kind else np.zeros((0, dimensions), np.float32)
    return HistoryVectors(
        positives=picks,
        positive_kinds=["like"] * len(picks),
        positive_ages_s=[0.0] * len(picks),
        in_session=[True] * len(picks),
        negatives=rejects,
        negative_kinds=[reject_kind or "hide"] * len(rejects),
        negative_ages_s=[0.0] * len(rejects),
    )


@dataclass(frozen=True)
class Selection:
    exploit_ids: list[Hashable]
    explore_ids: list[Hashable]
    cold_start: bool

    @property
    def ids(self) -> list[Hashable]:
        return [*self.exploit_ids, *self.explore_ids]


def split_slots(limit: int, explore_ratio: float) -> tuple[int, int]:
    """(exploit, explore) slot counts for a page of ``limit`` products."""
    if not 0.0 <= explore_ratio <= 1.0:
        raise ValueError(f"explore ratio must be between 0 and 1, got {explore_ratio}")
    k_explore = int(round(limit * explore_ratio))
    return limit - k_explore, k_explore


def select_products(
    *,
    profile: profiles.Profile | None,
    pool_ids: Sequence[Hashable],
    pool_vectors: np.ndarray,
    pool_categories: Sequence[Hashable],
    k_exploit: int,
    k_explore: int,
    exclude_ids: Iterable[Hashable],
    rng: np.random.Generator,
    explore_mode: str = "diverse",
) -> Selection:
    """The products to show from a candidate pool.

    With a profile: the ``k_exploit`` best-scored candidates plus ``k_explore`` exploration picks (diverse:
    MMR away from everything else on the page; random: uniform). Without one (cold start): a sample of
    ``k_exploit + k_explore`` spread round-robin across categories. Ids in ``exclude_ids`` are never picked.
    """
    excluded = set(exclude_ids)
    keep = [i for i, pk in enumerate(pool_ids) if pk not in excluded]
    ids = [pool_ids[i] for i in keep]
    if profile is None:
        positions = profiles.cold_start_sample([pool_categories[i] for i in keep], k_exploit + k_explore, rng)
        return Selection(exploit_ids=[], explore_ids=[ids[p] for p in positions], cold_start=True)
    vectors = np.asarray(pool_vectors, dtype=np.float32)[keep] if keep else np.zeros((0, 1), np.float32)
    picks = profiles.explore_exploit(
        profile.score(vectors) if keep else np.zeros(0, np.float32),
        ids,
        k_exploit=k_exploit,
        k_explore=k_explore,
        rng=rng,
        diversity_vectors=vectors if explore_mode == "diverse" else None,
    )
    return Selection(exploit_ids=picks.exploit_ids, explore_ids=picks.explore_ids, cold_start=False)
