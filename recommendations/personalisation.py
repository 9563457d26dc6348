"""Reads: personalised product lists (the for-you page, preference-game rounds, purchase history).

Two layers:

* pure selection (numpy, no queries): ``shopper_profile()`` turns a shopper's history vectors into a
  ``profiles.Profile``; ``select_products()`` turns a candidate pool into the exploit + explore picks. The
  offline simulator (``recommendations.simulation``) calls exactly these functions on vectors held in memory,
  so what it measures is what the pages do;
* database selectors that gather the history and the candidate pool for a shopper and call the pure layer.

Writes (recording interactions, remembering what a session was shown) live in
``recommendations.interactions``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from django.db.models import Q
from django.utils import timezone

from lookalike.catalog import product_model, role_values
from recommendations import profiles
from recommendations.conf import DEFAULTS, app_setting
from recommendations.interactions import Shopper
from recommendations.models import EmbeddingSpace, Interaction, ProductEmbedding, ShownProduct
from recommendations.selectors import (
    ProductFilter,
    ScoredProduct,
    active_space,
    product_vectors,
    products_near_vector,
    similar_products,
)

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
    best_score_negative_weight: float
    session_blend: float

    @classmethod
    def from_settings(
        cls, strategy: str | None = None, *, default_setting: str = "PROFILE_STRATEGY"
    ) -> ProfileOptions:
        strategy = strategy or app_setting(default_setting)
        if strategy not in profiles.STRATEGIES:
            raise ValueError(f"unknown profile strategy {strategy!r}: one of {list(profiles.STRATEGIES)}")
        return cls(
            strategy=strategy,
            kind_weights={**DEFAULTS["INTERACTION_WEIGHTS"], **app_setting("INTERACTION_WEIGHTS")},
            half_life_s=app_setting("INTERACTION_HALF_LIFE_S"),
            negative_weight=float(app_setting("NEGATIVE_WEIGHT")),
            best_score_negative_weight=float(app_setting("BEST_SCORE_NEGATIVE_WEIGHT")),
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
                profiles.interaction_weight(
                    kind, age, half_life_s=options.half_life_s, weights=options.kind_weights
                )
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
        negative_weights=weights(history.negative_kinds, history.negative_ages_s)
        if len(history.negatives)
        else None,
        session=history.positives[in_session] if in_session.any() else None,
        w_neg=options.negative_weight,
        neg_weight=options.best_score_negative_weight,
        blend=options.session_blend,
    )


def game_history(
    picks: np.ndarray, rejects: np.ndarray, *, reject_kind: str | None = "hide"
) -> HistoryVectors:
    """The preference game's history: each pick is a "like" of this session, oldest first; the products shown
    beside a pick but not chosen count as weak negatives of ``reject_kind`` (None: ignored).

    Ages are 0: a game lasts minutes, far below any sensible half-life.
    """
    dimensions = (
        picks.shape[1] if picks.ndim == 2 and picks.size else (rejects.shape[1] if rejects.size else 1)
    )
    picks = picks.reshape(-1, dimensions) if picks.size else np.zeros((0, dimensions), np.float32)
    rejects = (
        rejects.reshape(-1, dimensions)
        if rejects.size and reject_kind
        else np.zeros((0, dimensions), np.float32)
    )
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
    exploit_ids: list[Any]  # the ids of pool_ids: product primary keys on pages, row numbers offline
    explore_ids: list[Any]
    cold_start: bool

    @property
    def ids(self) -> list[Any]:
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
    pool_categories: Sequence[Hashable] | np.ndarray,
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


# --- The shopper's history --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopperHistory:
    """A shopper's recent interactions, oldest first on each side (ids only: vectors come with a space)."""

    positive_ids: list[int] = field(default_factory=list)
    positive_kinds: list[str] = field(default_factory=list)
    positive_ages_s: list[float] = field(default_factory=list)
    in_session: list[bool] = field(default_factory=list)
    negative_ids: list[int] = field(default_factory=list)
    negative_kinds: list[str] = field(default_factory=list)
    negative_ages_s: list[float] = field(default_factory=list)
    purchased_ids: list[int] = field(default_factory=list)  # most recent first

    @property
    def product_ids(self) -> set[int]:
        return {*self.positive_ids, *self.negative_ids}

    @property
    def judged_ids(self) -> set[int]:
        """Products the shopper said something about: liked (a game pick is a like) or disliked."""
        kinds = zip(self.positive_ids, self.positive_kinds, strict=True)
        return {pk for pk, kind in kinds if kind == "like"} | set(self.negative_ids)


def shopper_history(*, shopper: Shopper, limit: int | None = None) -> ShopperHistory:
    """The shopper's most recent interactions (``PROFILE_MAX_INTERACTIONS``) that have not expired.

    Anonymous interactions older than ``PROFILE_MAX_AGE_S`` are ignored even before ``expire_profiles``
    deletes them. A product's latest explicit verdict wins: liked after a dislike drops the dislike,
    disliked after a like (or a view) drops its positive rows.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=float(app_setting("PROFILE_MAX_AGE_S")))
    rows = list(
        Interaction.objects.for_shopper(session_key=shopper.session_key, user_id=shopper.user_id)
        .filter(Q(user__isnull=False) | Q(created_at__gte=cutoff))
        .order_by("-created_at", "-pk")
        .values_list("product_id", "kind", "created_at", "session_key")[
            : limit or app_setting("PROFILE_MAX_INTERACTIONS")
        ]
    )
    rows.reverse()
    verdict: dict[int, str] = {}
    for product_id, kind, _, _ in rows:
        if kind in ("like", "dislike"):
            verdict[product_id] = kind
    history = ShopperHistory()
    for product_id, kind, created_at, session_key in rows:
        age_s = max((now - created_at).total_seconds(), 0.0)
        if kind == "dislike":
            if verdict.get(product_id) == "dislike":
                history.negative_ids.append(product_id)
                history.negative_kinds.append(kind)
                history.negative_ages_s.append(age_s)
        elif verdict.get(product_id) != "dislike":
            history.positive_ids.append(product_id)
            history.positive_kinds.append(kind)
            history.positive_ages_s.append(age_s)
            history.in_session.append(session_key == shopper.session_key)
        if kind == "purchase" and product_id not in history.purchased_ids:
            history.purchased_ids.insert(0, product_id)
    return history


def history_vectors(history: ShopperHistory, *, space: EmbeddingSpace) -> HistoryVectors:
    """The history's vectors in ``space``; interactions with products that have no vector are left out."""
    vectors = product_vectors(history.product_ids, space=space)
    dimensions = space.dimensions

    def side(ids: list[int], *columns: list) -> tuple[np.ndarray, list[list]]:
        keep = [i for i, pk in enumerate(ids) if pk in vectors]
        array = np.stack([vectors[ids[i]] for i in keep]) if keep else np.zeros((0, dimensions), np.float32)
        return array, [[column[i] for i in keep] for column in columns]

    positives, (kinds, ages, in_session) = side(
        history.positive_ids, history.positive_kinds, history.positive_ages_s, history.in_session
    )
    negatives, (negative_kinds, negative_ages) = side(
        history.negative_ids, history.negative_kinds, history.negative_ages_s
    )
    return HistoryVectors(
        positives=positives,
        positive_kinds=kinds,
        positive_ages_s=ages,
        in_session=in_session,
        negatives=negatives,
        negative_kinds=negative_kinds,
        negative_ages_s=negative_ages,
    )


def shown_product_ids(*, session_key: str, page: str) -> set[int]:
    return set(
        ShownProduct.objects.filter(session_key=session_key, page=page).values_list("product_id", flat=True)
    )


# --- Candidate pools from the database ----------------------------------------------------------------------


@dataclass(frozen=True)
class CandidatePool:
    ids: list[int]
    vectors: np.ndarray
    categories: list[Any]


def _random_candidates(*, space: EmbeddingSpace, filters: ProductFilter, size: int) -> list[int]:
    if size <= 0:
        return []
    return list(
        ProductEmbedding.objects.filter(space_id=space.pk)
        .filter(filters.product_q(prefix="product__"))
        .order_by("?")
        .values_list("product_id", flat=True)[:size]
    )


def candidate_pool(
    *,
    profile: profiles.Profile | None,
    space: EmbeddingSpace,
    filters: ProductFilter,
    k_exploit: int,
    k_explore: int,
) -> CandidatePool:
    """The products a page chooses from (the recipe ``simulation.memory_pool`` reproduces in memory).

    With a profile: the nearest products to each of its query vectors (``EXPLOIT_POOL_FACTOR`` per exploit
    slot, at most ``MAX_QUERY_VECTORS`` most recent queries) plus ``EXPLORE_POOL_FACTOR`` random products per
    explore slot. Without one: ``COLD_START_POOL_FACTOR`` random products per slot, with their categories.
    """
    ids: list[int] = []
    if profile is None:
        ids = _random_candidates(
            space=space, filters=filters, size=COLD_START_POOL_FACTOR * (k_exploit + k_explore)
        )
    else:
        if k_exploit > 0:
            for query in profile.query_vectors[-MAX_QUERY_VECTORS:]:
                near = products_near_vector(
                    vector=query, limit=EXPLOIT_POOL_FACTOR * k_exploit, filters=filters, space=space
                )
                ids.extend(item.product.pk for item in near)
        ids.extend(_random_candidates(space=space, filters=filters, size=EXPLORE_POOL_FACTOR * k_explore))
    ids = list(dict.fromkeys(ids))
    vectors = product_vectors(ids, space=space)
    ids = [pk for pk in ids if pk in vectors]
    categories: dict[int, Any] = role_values(ids, "category")
    return CandidatePool(
        ids=ids,
        vectors=np.stack([vectors[pk] for pk in ids]) if ids else np.zeros((0, space.dimensions), np.float32),
        categories=[categories.get(pk) for pk in ids],
    )


# --- Pages ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonalPage:
    """What a personalised page shows: the chosen products in display order, and why each is there."""

    strategy: str
    products: list[Any]
    exploit_ids: list[int]
    explore_ids: list[int]
    cold_start: bool
    reason: str = ""  # why the page is empty

    def role(self, product_id: int) -> str:
        if self.cold_start:
            return "cold-start"
        return "exploit" if product_id in self.exploit_ids else "explore"


NOTHING_LEFT = "You have seen every product we could show you here."


def _load_in_order(ids: Sequence[int]) -> list[Any]:
    products = product_model()._default_manager.order_by().in_bulk(list(ids))
    return [products[pk] for pk in ids if pk in products]


def select_page(
    *,
    profile: profiles.Profile | None,
    strategy: str,
    space: EmbeddingSpace,
    exclude_ids: set[int],
    limit: int,
    explore_ratio: float,
    explore_mode: str,
    rng: np.random.Generator,
) -> PersonalPage:
    k_exploit, k_explore = split_slots(limit, explore_ratio)
    filters = ProductFilter().excluding(exclude_ids)
    pool = candidate_pool(
        profile=profile, space=space, filters=filters, k_exploit=k_exploit, k_explore=k_explore
    )
    selection = select_products(
        profile=profile,
        pool_ids=pool.ids,
        pool_vectors=pool.vectors,
        pool_categories=pool.categories,
        k_exploit=k_exploit,
        k_explore=k_explore,
        exclude_ids=exclude_ids,
        rng=rng,
        explore_mode=explore_mode,
    )
    ids = [int(pk) for pk in selection.ids]
    return PersonalPage(
        strategy=strategy,
        products=_load_in_order(ids),
        exploit_ids=[int(pk) for pk in selection.exploit_ids],
        explore_ids=[int(pk) for pk in selection.explore_ids],
        cold_start=selection.cold_start,
        reason="" if ids else NOTHING_LEFT,
    )


def for_you_page(
    *,
    shopper: Shopper,
    strategy: str | None = None,
    limit: int | None = None,
    explore_ratio: float | None = None,
    rng: np.random.Generator | None = None,
) -> PersonalPage:
    """The /for-you/ selection: exploit + explore, never a product this session was shown here, bought,
    liked or disliked (after the preference game a shopper wants new products like the picks, not the picks).

    The caller records the result with ``interactions.record_shown(page=FOR_YOU_PAGE)``.
    """
    options = ProfileOptions.from_settings(strategy)
    space = active_space()
    if space is None:
        return PersonalPage(options.strategy, [], [], [], cold_start=True, reason=NO_ACTIVE_SPACE)
    history = shopper_history(shopper=shopper)
    profile = shopper_profile(history_vectors(history, space=space), options)
    return select_page(
        profile=profile,
        strategy=options.strategy,
        space=space,
        exclude_ids=shown_product_ids(session_key=shopper.session_key, page=FOR_YOU_PAGE)
        | set(history.purchased_ids)
        | history.judged_ids,
        limit=limit or app_setting("FOR_YOU_LIMIT"),
        explore_ratio=app_setting("EXPLORE_RATIO") if explore_ratio is None else explore_ratio,
        explore_mode=app_setting("EXPLORE_MODE"),
        rng=rng or np.random.default_rng(),
    )


NO_ACTIVE_SPACE = "No embedding space is active yet: run `manage.py embed_catalog` first."


# --- The preference game ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GameState:
    """The session's game so far: the products of each round in display order, and each round's pick."""

    rounds: dict[int, list[int]]
    picks: dict[int, int]

    @property
    def current_round(self) -> int | None:
        return max(self.rounds) if self.rounds else None

    @property
    def awaiting_pick(self) -> bool:
        return self.current_round is not None and self.current_round not in self.picks

    @property
    def shown_ids(self) -> set[int]:
        return {pk for ids in self.rounds.values() for pk in ids}

    def ordered_picks_and_rejects(self) -> tuple[list[int], list[int]]:
        """Picks oldest first, and the products shown beside them but not picked."""
        picks: list[int] = []
        rejects: list[int] = []
        for number in sorted(self.picks):
            picks.append(self.picks[number])
            rejects.extend(pk for pk in self.rounds[number] if pk != self.picks[number])
        return picks, rejects


def game_state(*, shopper: Shopper) -> GameState:
    rounds: dict[int, list[int]] = {}
    shown_at = {}
    for number, product_id, at in (
        ShownProduct.objects.filter(session_key=shopper.session_key, page=GAME_PAGE)
        .order_by("round", "pk")
        .values_list("round", "product_id", "shown_at")
    ):
        rounds.setdefault(number, []).append(product_id)
        shown_at[product_id] = (number, at)
    picks: dict[int, int] = {}
    for product_id, at in (
        Interaction.objects.filter(
            session_key=shopper.session_key, kind="like", source=GAME_SOURCE, product_id__in=list(shown_at)
        )
        .order_by("created_at", "pk")
        .values_list("product_id", "created_at")
    ):
        number, round_shown_at = shown_at[product_id]
        # A pick from an earlier game (before a restart) of a product shown again does not count.
        if at >= round_shown_at and number not in picks:
            picks[number] = product_id
    return GameState(rounds=rounds, picks=picks)


def next_game_round(
    *, shopper: Shopper, state: GameState, strategy: str | None = None, rng: np.random.Generator | None = None
) -> PersonalPage:
    """The next round: products like the picks so far (the exploit half) plus exploration, none shown before.

    The caller records it with ``interactions.record_shown(page=GAME_PAGE, round=...)``.
    """
    options = ProfileOptions.from_settings(strategy, default_setting="GAME_PROFILE_STRATEGY")
    space = active_space()
    if space is None:
        return PersonalPage(options.strategy, [], [], [], cold_start=True, reason=NO_ACTIVE_SPACE)
    picks, rejects = state.ordered_picks_and_rejects()
    vectors = product_vectors([*picks, *rejects], space=space)

    def stack(ids: list[int]) -> np.ndarray:
        rows = [vectors[pk] for pk in ids if pk in vectors]
        return np.stack(rows) if rows else np.zeros((0, space.dimensions), np.float32)

    profile = shopper_profile(game_history(stack(picks), stack(rejects)), options)
    return select_page(
        profile=profile,
        strategy=options.strategy,
        space=space,
        exclude_ids=state.shown_ids,
        limit=app_setting("GAME_ROUND_SIZE"),
        explore_ratio=app_setting("EXPLORE_RATIO"),
        explore_mode=app_setting("EXPLORE_MODE"),
        rng=rng or np.random.default_rng(),
    )


# --- Purchase history and the "recommended for you" widget --------------------------------------------

PURCHASES = "purchases"
PROFILE = "profile"
NOTHING = "none"


@dataclass(frozen=True)
class Recommendations:
    basis: str  # "purchases", "profile" or "none"
    strategy: str
    items: list[ScoredProduct]


def purchase_recommendations(*, purchased_ids: Sequence[int], limit: int) -> list[ScoredProduct]:
    """Neighbours of the purchased products, merged round-robin (most recent purchase first) and
    de-duplicated, never a purchased product. Round-robin keeps one purchase from crowding out the rest."""
    purchased = list(purchased_ids)[: app_setting("PURCHASE_HISTORY_MAX")]
    products = _load_in_order(purchased)
    filters = ProductFilter().excluding(purchased_ids)
    lists = [similar_products(product=product, limit=limit, filters=filters) for product in products]
    merged: dict[int, ScoredProduct] = {}
    for rank in range(limit):
        for items in lists:
            if rank < len(items) and items[rank].product.pk not in merged and len(merged) < limit:
                merged[items[rank].product.pk] = items[rank]
    return list(merged.values())


def recommended_for_you(
    *, shopper: Shopper | None, limit: int, strategy: str | None = None
) -> Recommendations:
    """For the ``{% recommended_for_you %}`` tag and ``GET /api/recommendations/for-you/``.

    Shoppers with purchases get the neighbours of what they bought; otherwise the products nearest their
    profile (nothing they already interacted with); shoppers with no history get nothing (``basis`` "none").
    Nothing is recorded as shown: the widget may sit on every page.
    """
    options = ProfileOptions.from_settings(strategy)
    space = active_space()
    if shopper is None or space is None:
        return Recommendations(NOTHING, options.strategy, [])
    history = shopper_history(shopper=shopper)
    if history.purchased_ids:
        return Recommendations(
            PURCHASES,
            options.strategy,
            purchase_recommendations(purchased_ids=history.purchased_ids, limit=limit),
        )
    profile = shopper_profile(history_vectors(history, space=space), options)
    if profile is None:
        return Recommendations(NOTHING, options.strategy, [])
    pool = candidate_pool(
        profile=profile,
        space=space,
        filters=ProductFilter().excluding(history.product_ids),
        k_exploit=limit,
        k_explore=0,
    )
    scores = profile.score(pool.vectors) if pool.ids else np.zeros(0)
    order = np.argsort(-scores, kind="stable")[:limit]
    products = product_model()._default_manager.order_by().in_bulk([pool.ids[i] for i in order])
    items = [
        ScoredProduct(product=products[pool.ids[i]], score=float(scores[i]))
        for i in order
        if pool.ids[i] in products
    ]
    return Recommendations(PROFILE, options.strategy, items)
