"""Personalised selection: the pure layer shared with the simulator, and the database selectors on top."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.test.utils import override_settings
from django.utils import timezone

from recommendations import personalisation, simulation
from recommendations.interactions import Shopper, record_interaction, record_shown
from recommendations.models import Interaction
from recommendations.personalisation import HistoryVectors, ProfileOptions, game_history, select_products
from tests.recommendations.vectors import clustered_vectors, create_catalog, create_space

DIMENSIONS = 8


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def options(strategy: str, **changes) -> ProfileOptions:
    base = ProfileOptions(
        strategy=strategy,
        kind_weights={
            "view": 1.0,
            "click": 2.0,
            "like": 4.0,
            "add_to_cart": 5.0,
            "purchase": 6.0,
            "dislike": 4.0,
        },
        half_life_s=7 * 86400.0,
        negative_weight=0.5,
        best_score_negative_weight=1.0,
        session_blend=0.3,
    )
    return ProfileOptions(**{**base.__dict__, **changes})


def history(positives, kinds, ages_s, negatives=(), negative_kinds=(), in_session=None) -> HistoryVectors:
    positives = np.asarray(positives, dtype=np.float32)
    return HistoryVectors(
        positives=positives,
        positive_kinds=list(kinds),
        positive_ages_s=list(ages_s),
        in_session=[True] * len(positives) if in_session is None else in_session,
        negatives=np.asarray(negatives, dtype=np.float32).reshape(-1, positives.shape[1]),
        negative_kinds=list(negative_kinds),
        negative_ages_s=[0.0] * len(negative_kinds),
    )


# --- pure layer ---------------------------------------------------------------------------------------------


def test_weighted_profile_uses_kind_weights_and_half_life_from_the_options():
    # A purchase made now (weight 6) and a view made 7 days ago (weight 1 halved = 0.5), no negatives:
    # weighted mean = (6·e0 + 0.5·e1) / 6.5 -> direction [6, 0.5] / |[6, 0.5]| = [0.99655, 0.08305]
    h = history(np.eye(2), ["purchase", "view"], [0.0, 7 * 86400.0])
    profile = personalisation.shopper_profile(h, options("weighted"))
    np.testing.assert_allclose(profile.vector, [0.99655, 0.08305], atol=1e-5)
    # The plain mean ignores kinds and age: [0.7071, 0.7071].
    np.testing.assert_allclose(
        personalisation.shopper_profile(h, options("mean")).vector, [0.70711] * 2, atol=1e-5
    )
    assert personalisation.shopper_profile(history(np.zeros((0, 2)), [], []), options("mean")) is None


def test_session_profile_follows_the_session_and_blends_the_long_term_profile():
    # Session: e0 then e1 (cos 0 -> a1 = 0.5): s = normalise(0.5·e0 + 0.5·e1) = [0.7071, 0.7071, 0].
    # Long term (weighted, all positives incl. the old e2 view): (4·e0 + 4·e1 + 1·e2) / 9.
    h = history(np.eye(3), ["like", "like", "view"], [0.0, 0.0, 0.0], in_session=[True, True, False])
    profile = personalisation.shopper_profile(h, options("session", session_blend=0.0))
    np.testing.assert_allclose(profile.vector, [0.70711, 0.70711, 0.0], atol=1e-5)
    blended = personalisation.shopper_profile(h, options("session", session_blend=0.3))
    long_term = np.array([4.0, 4.0, 1.0]) / np.linalg.norm([4.0, 4.0, 1.0])
    expected = 0.7 * np.array([0.70711, 0.70711, 0.0]) + 0.3 * long_term
    np.testing.assert_allclose(blended.vector, expected / np.linalg.norm(expected), atol=1e-5)


def test_a_dislike_pushes_its_neighbours_down_the_page():
    liked, disliked = unit(1, 0, 0), unit(0.6, 0.8, 0)
    near_disliked, elsewhere = unit(0.9, 0.43589, 0), unit(0.85, 0, 0.52678)
    h = history([liked], ["like"], [0.0], negatives=[disliked], negative_kinds=["dislike"])
    pool = np.stack([near_disliked, elsewhere])
    for strategy in ("weighted", "best_score"):
        page = select_products(
            profile=personalisation.shopper_profile(h, options(strategy)),
            pool_ids=["near-disliked", "elsewhere"],
            pool_vectors=pool,
            pool_categories=[None, None],
            k_exploit=1,
            k_explore=0,
            exclude_ids=(),
            rng=np.random.default_rng(0),
        )
        assert page.exploit_ids == ["elsewhere"], strategy
    mean = personalisation.shopper_profile(h, options("mean"))
    assert mean.score(pool)[0] > mean.score(pool)[1]  # without the negative the near one would win


def test_best_score_keeps_two_interests_where_the_mean_lands_between_them():
    # Clusters A = e0 and B = e1 (the shopper likes both) and C halfway between them (never liked).
    rng = np.random.default_rng(3)
    centres = np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(1, 1, 0, 0), unit(0, 0, 1, 0)])
    labels = np.repeat(np.array(["A", "B", "C", "D"]), 50)
    vectors = centres[np.repeat(np.arange(4), 50)] + 0.05 * rng.normal(size=(200, 4))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    liked = [0, 1, 2, 50, 51, 52]
    h = history(vectors[liked], ["like"] * 6, [0.0] * 6)
    interests = np.isin(labels, ["A", "B"]) & ~np.isin(np.arange(200), liked)
    between = labels == "C"
    best = personalisation.shopper_profile(h, options("best_score")).score(vectors)
    mean = personalisation.shopper_profile(h, options("mean")).score(vectors)
    # best_score ranks every unseen product of both interests above everything in between ...
    assert best[interests].min() > best[between].max()
    # ... while the mean profile ranks the in-between products first.
    assert mean[between].min() > mean[interests].max()
    page = select_products(
        profile=personalisation.shopper_profile(h, options("best_score")),
        pool_ids=list(range(200)),
        pool_vectors=vectors,
        pool_categories=[None] * 200,
        k_exploit=10,
        k_explore=0,
        exclude_ids=liked,
        rng=np.random.default_rng(0),
    )
    assert set(labels[page.exploit_ids]) <= {"A", "B"}


def test_cold_start_spreads_across_categories_and_exploration_is_seeded():
    categories = ["shirts"] * 50 + ["shoes"] * 30 + ["bags"] * 10 + ["hats"] * 5 + ["belts"] * 5
    vectors = clustered_vectors(100, DIMENSIONS, seed=1)
    kwargs = dict(
        pool_ids=list(range(100)),
        pool_vectors=vectors,
        pool_categories=categories,
        k_exploit=5,
        k_explore=5,
        exclude_ids={0, 1, 2},
    )
    cold = select_products(profile=None, rng=np.random.default_rng(7), **kwargs)
    assert cold.cold_start and len(cold.ids) == 10
    assert {categories[i] for i in cold.ids} == {"shirts", "shoes", "bags", "hats", "belts"}
    assert {0, 1, 2}.isdisjoint(cold.ids)
    assert cold.ids == select_products(profile=None, rng=np.random.default_rng(7), **kwargs).ids


def test_game_history_turns_picks_into_likes_and_the_rest_into_weak_negatives():
    picks, rejects = np.eye(4)[:2], np.eye(4)[2:]
    h = game_history(picks, rejects)
    assert h.positive_kinds == ["like", "like"] and h.in_session == [True, True]
    assert h.negative_kinds == ["hide", "hide"] and len(h.negatives) == 2
    assert len(game_history(picks, rejects, reject_kind=None).negatives) == 0
    assert game_history(np.zeros((0, 4)), np.zeros((0, 4))).is_empty


def test_the_simulated_game_finds_targets_far_faster_than_random_browsing():
    """The target-finding simulation on a clustered synthetic catalog (the Myntra run is in the bench)."""
    rng = np.random.default_rng(5)
    n, clusters = 600, 12
    vectors = clustered_vectors(n, 16, clusters=clusters, spread=0.5, seed=5)
    labels = np.asarray([f"c{i}" for i in np.argmax(vectors @ vectors[rng.choice(n, clusters)].T, axis=1)])
    data = simulation.LabelledVectors(
        ids=np.arange(n),
        vectors=vectors,
        article_types=labels,
        colours=np.asarray(["red"] * n),
        sub_categories=labels,
        master_categories=np.asarray(["all"] * n),
        encoder="synthetic",
        weights_id="none",
    )
    results = simulation.run_target_finding(
        data, strategies=["best_score", "mean"], judges=["vectors"], targets=25, seed=1, options=options
    )
    random_rounds = simulation.random_browsing_rounds(n, 10)
    assert random_rounds == pytest.approx((n / 10 + 1) / 2)
    by_strategy = {r.strategy: r for r in results}
    assert by_strategy["best_score"].mean < 0.3 * random_rounds
    assert by_strategy["mean"].mean < random_rounds
    assert all(r.rounds.min() >= 1 for r in results)


def test_leave_last_out_scores_a_profile_above_popularity():
    n = 400
    vectors = clustered_vectors(n, 16, clusters=8, spread=0.3, seed=9)
    labels = np.argmax(vectors @ clustered_vectors(8, 16, clusters=8, spread=0.0, seed=9).T, axis=1)
    data = simulation.LabelledVectors(
        ids=np.arange(n),
        vectors=vectors,
        article_types=np.asarray([f"type{i}" for i in labels]),
        colours=np.asarray(["blue"] * n),
        sub_categories=np.asarray(["all"] * n),
        master_categories=np.asarray(["all"] * n),
        encoder="synthetic",
        weights_id="none",
    )
    table = simulation.run_leave_last_out(
        data, strategies=["mean", "best_score"], sessions=60, k=10, seed=2, options=options
    )
    assert set(table) == {"mean", "best_score", "popularity"}
    for name in ("mean", "best_score"):
        assert table[name]["ndcg@10"] > table["popularity"]["ndcg@10"]
        assert (
            0.0 <= table[name]["precision@10"] <= 1.0
            and table[name]["hit_rate@10"] >= table[name]["precision@10"]
        )


# --- database selectors -----------------------------------------------------------------------------


@pytest.fixture
def catalog(store):
    """120 products in four tight clusters, one category per cluster (cluster i = products[i::4])."""
    from shop.models import Category

    rng = np.random.default_rng(11)
    centres = np.eye(DIMENSIONS)[:4]
    vectors = centres[np.arange(120) % 4] + 0.08 * rng.normal(size=(120, DIMENSIONS))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    categories = [Category.from_path(["Test", f"Cluster {c}"]) for c in range(4)]
    space = create_space(DIMENSIONS)
    products = create_catalog(store, vectors, space=space, categories=categories)
    return products


def cluster_of(product) -> int:
    return int(product.external_id[1:]) % 4


@pytest.mark.django_db
def test_cold_start_page_covers_every_category(catalog):
    page = personalisation.for_you_page(shopper=Shopper("new"), rng=np.random.default_rng(0))
    assert page.cold_start and len(page.products) == 10
    assert {cluster_of(p) for p in page.products} == {0, 1, 2, 3}


@pytest.mark.django_db
def test_for_you_exploits_the_liked_cluster_and_excludes_purchases(catalog):
    shopper = Shopper("s")
    for product in catalog[0:12:4]:  # three products of cluster 0
        record_interaction(shopper=shopper, product=product, kind="like")
    bought = catalog[4]
    record_interaction(shopper=shopper, product=bought, kind="purchase")
    for strategy in ("mean", "weighted", "session", "best_score"):
        page = personalisation.for_you_page(shopper=shopper, strategy=strategy, rng=np.random.default_rng(1))
        exploit = [p for p in page.products if p.pk in page.exploit_ids]
        assert len(exploit) == 5 and {cluster_of(p) for p in exploit} == {0}, strategy
        assert bought.pk not in {p.pk for p in page.products}
        assert len(page.explore_ids) == 5


@pytest.mark.django_db
def test_for_you_never_repeats_a_product_across_twenty_pages(catalog):
    from shop.models import Store

    other_store = Store.objects.create(name="Second store")
    more = create_catalog(
        other_store,
        clustered_vectors(100, DIMENSIONS, seed=4),
        space=personalisation.active_space(),
        categories=(),
    )
    assert len(catalog) + len(more) == 220
    shopper = Shopper("twenty")
    record_interaction(shopper=shopper, product=catalog[0], kind="like")
    seen: list[int] = []
    for round_number in range(1, 21):
        page = personalisation.for_you_page(shopper=shopper, rng=np.random.default_rng(round_number))
        ids = [p.pk for p in page.products]
        record_shown(
            session_key=shopper.session_key,
            page=personalisation.FOR_YOU_PAGE,
            product_ids=ids,
            round=round_number,
        )
        seen.extend(ids)
        if round_number % 3 == 0:  # the profile keeps changing as the shopper reacts
            record_interaction(shopper=shopper, product=ids[0], kind="like")
            record_interaction(shopper=shopper, product=ids[-1], kind="dislike")
    assert len(seen) == 200 and len(set(seen)) == 200


@pytest.mark.django_db
def test_history_ignores_expired_anonymous_interactions_and_honours_the_latest_verdict(catalog):
    shopper = Shopper("h")
    old = record_interaction(shopper=shopper, product=catalog[0], kind="like")
    Interaction.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    record_interaction(shopper=shopper, product=catalog[1], kind="like")
    record_interaction(shopper=shopper, product=catalog[1], kind="dislike")  # changed their mind
    record_interaction(shopper=shopper, product=catalog[2], kind="dislike")
    record_interaction(shopper=shopper, product=catalog[2], kind="like")
    with override_settings(RECOMMENDATIONS={"PROFILE_MAX_AGE_S": 86400}):
        h = personalisation.shopper_history(shopper=shopper)
    assert h.positive_ids == [catalog[2].pk] and h.negative_ids == [catalog[1].pk]
    assert personalisation.shopper_history(shopper=shopper).positive_ids == [catalog[0].pk, catalog[2].pk]


@pytest.mark.django_db
def test_purchase_history_recommends_merged_neighbours_of_purchases(catalog):
    shopper = Shopper("buyer")
    first, second = catalog[0], catalog[1]  # clusters 0 and 1
    record_interaction(shopper=shopper, product=first, kind="purchase")
    record_interaction(shopper=shopper, product=second, kind="purchase")
    result = personalisation.recommended_for_you(shopper=shopper, limit=8)
    ids = [item.product.pk for item in result.items]
    assert result.basis == personalisation.PURCHASES and len(ids) == 8 and len(set(ids)) == 8
    assert first.pk not in ids and second.pk not in ids
    # Round-robin: both purchases are represented, most recent purchase first.
    clusters = [cluster_of(item.product) for item in result.items]
    assert clusters[0] == 1 and clusters.count(0) == 4 and clusters.count(1) == 4


@pytest.mark.django_db
def test_recommended_for_you_falls_back_to_the_profile_then_to_nothing(catalog):
    assert (
        personalisation.recommended_for_you(shopper=Shopper("nobody"), limit=4).basis
        == personalisation.NOTHING
    )
    assert personalisation.recommended_for_you(shopper=None, limit=4).items == []
    shopper = Shopper("browser")
    record_interaction(shopper=shopper, product=catalog[3], kind="view")
    result = personalisation.recommended_for_you(shopper=shopper, limit=4)
    assert result.basis == personalisation.PROFILE and len(result.items) == 4
    assert {cluster_of(item.product) for item in result.items} == {3}
    assert catalog[3].pk not in [item.product.pk for item in result.items]
    assert [item.score for item in result.items] == sorted(
        (item.score for item in result.items), reverse=True
    )
