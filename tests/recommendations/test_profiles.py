import numpy as np
import pytest

from recommendations.profiles import (
    DAY_S,
    STRATEGIES,
    best_score,
    build_profile,
    cold_start_sample,
    explore_exploit,
    interaction_weight,
    mean_profile,
    session_profile,
    weighted_profile,
)


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_mean_profile():
    # mean([1, 0], [0, 1]) = [0.5, 0.5] -> normalised [0.7071, 0.7071]
    np.testing.assert_allclose(mean_profile(np.array([[1, 0], [0, 1]])), [0.707107, 0.707107], atol=1e-6)
    assert mean_profile(np.zeros((0, 2))) is None
    assert mean_profile(np.array([[1, 0], [-1, 0]])) is None  # no direction left


def test_weighted_profile_hand_computed():
    # positives e0 (weight 3), e1 (weight 1): weighted mean [0.75, 0.25, 0]
    # negative e2 (weight 2): weighted mean [0, 0, 1]; w_neg = 0.5 -> [0.75, 0.25, -0.5]
    # norm sqrt(0.5625 + 0.0625 + 0.25) = 0.935414 -> [0.801784, 0.267261, -0.534522]
    profile = weighted_profile(np.eye(3)[:2], [3.0, 1.0], np.eye(3)[2:], [2.0], w_pos=1.0, w_neg=0.5)
    np.testing.assert_allclose(profile, [0.801784, 0.267261, -0.534522], atol=1e-6)
    assert weighted_profile(np.zeros((0, 3)), [], np.eye(3)[2:], [2.0]) is None  # negatives alone: None
    with pytest.raises(ValueError):
        weighted_profile(np.eye(3)[:2], [1.0], None, None)


def test_interaction_weight_decays_by_half_life():
    # purchase weighs 6; two half-lives (14 days at 7 days) -> 6 / 4 = 1.5
    assert interaction_weight("purchase", 14 * DAY_S, half_life_s=7 * DAY_S) == pytest.approx(1.5)
    assert interaction_weight("view", 0.0, half_life_s=7 * DAY_S) == pytest.approx(1.0)
    assert interaction_weight("add_to_cart", 1e9, half_life_s=None) == pytest.approx(5.0)
    # A future timestamp (clock skew) weighs as a fresh one, not more.
    assert interaction_weight("like", -DAY_S, half_life_s=DAY_S) == pytest.approx(4.0)
    assert interaction_weight("dislike", 0.0, half_life_s=DAY_S) > 0
    with pytest.raises(ValueError):
        interaction_weight("stare", 0.0, half_life_s=DAY_S)


def test_negatives_push_a_candidate_down_the_ranking():
    positives = np.array([[1.0, 0.0, 0.0]])
    negatives = np.array([[0.6, 0.8, 0.0]])
    near_negative = unit(0.9, 0.43589, 0.0)  # cos to the positive 0.9, to the negative 0.89
    elsewhere = unit(0.85, 0.0, 0.52678)  # cos to the positive 0.85, to the negative 0.51
    candidates = np.stack([near_negative, elsewhere])
    mean_scores = build_profile("mean", positives=positives, negatives=negatives).score(candidates)
    # weighted: [1, 0, 0] - 0.5 * [0.6, 0.8, 0] = [0.7, -0.4, 0] -> cos 0.565 vs 0.738
    weighted_scores = build_profile("weighted", positives=positives, negatives=negatives).score(candidates)
    assert mean_scores[0] > mean_scores[1]
    assert weighted_scores[0] < weighted_scores[1]
    np.testing.assert_allclose(weighted_scores, [0.5657, 0.7380], atol=1e-3)


def _two_interest_catalog() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two tight clusters around e0 (sneakers) and e1 (handbags), plus one item halfway between."""
    rng = np.random.default_rng(3)
    dims = 8
    centres = np.eye(dims, dtype=np.float32)[:2]
    clusters = []
    for centre in centres:
        points = centre + 0.08 * rng.standard_normal((6, dims)).astype(np.float32)
        clusters.append(points / np.linalg.norm(points, axis=1, keepdims=True))
    between = unit(*([1.0, 1.0] + [0.0] * (dims - 2)))
    candidates = np.vstack([clusters[0], clusters[1], between[None, :]])
    labels = np.array([0] * 6 + [1] * 6 + [2])
    positives = np.stack([clusters[0][0], clusters[1][0]])  # one liked item in each cluster
    return candidates[np.r_[1:6, 7:13]], labels[np.r_[1:6, 7:13]], positives


def test_best_score_keeps_two_interests_where_the_mean_lands_between_them():
    candidates, labels, positives = _two_interest_catalog()
    best = build_profile("best_score", positives=positives).score(candidates)
    top_best = labels[np.argsort(-best)[:4]]
    assert set(top_best) == {0, 1}
    assert 2 not in top_best
    mean = build_profile("mean", positives=positives).score(candidates)
    # The averaged profile's favourite is the in-between item, neither cluster's best match.
    assert labels[np.argmax(mean)] == 2
    # Direct function: best_score = max cosine to a positive - max cosine to a negative.
    direct = best_score(candidates, positives, positives[:1], neg_weight=0.5)
    similarities = candidates @ positives.T
    np.testing.assert_allclose(direct, similarities.max(axis=1) - 0.5 * similarities[:, 0], atol=1e-5)


def test_best_score_with_empty_sides_contributes_zero():
    candidates = np.eye(3, dtype=np.float32)
    np.testing.assert_allclose(best_score(candidates, None, None), [0, 0, 0])
    np.testing.assert_allclose(best_score(candidates, None, np.eye(3)[:1]), [-1, 0, 0])


def test_session_profile_worked_example():
    # s1 = v1 = [1, 0]
    # v2 = [0, 1]: cos(v2, s1) = 0 -> a1 = 0.5 -> s2 = [0.5, 0.5] -> normalised [0.70711, 0.70711]
    # v3 = [0, 1]: cos(v3, s2) = 0.70711 -> a1 = 0.85355, a2 = 0.14645
    #   s3 = 0.85355 * [0.70711, 0.70711] + 0.14645 * [0, 1] = [0.60355, 0.75]
    #   -> / 0.96269 = [0.62694, 0.77907]
    # blend 0.3 with long-term [1, 0]: 0.7 * s3 + 0.3 * [1, 0] = [0.73886, 0.54535] -> [0.80458, 0.59385]
    clicks = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(session_profile(clicks), [0.62694, 0.77907], atol=1e-5)
    np.testing.assert_allclose(
        session_profile(clicks, long_term=np.array([1.0, 0.0]), blend=0.3), [0.80458, 0.59385], atol=1e-5
    )
    # An opposite item (cos = -1 -> a1 = 0) replaces the session: the shopper changed their mind.
    np.testing.assert_allclose(session_profile(np.array([[1.0, 0.0], [-1.0, 0.0]])), [-1.0, 0.0], atol=1e-6)
    # No session yet: the long-term profile alone.
    np.testing.assert_allclose(session_profile(np.zeros((0, 2)), long_term=np.array([0.0, 2.0])), [0.0, 1.0])
    assert session_profile(np.zeros((0, 2))) is None


def test_build_profile_for_every_strategy():
    positives = np.eye(4, dtype=np.float32)[:2]
    for strategy in STRATEGIES:
        profile = build_profile(
            strategy, positives=positives, positive_weights=[1.0, 2.0], session=positives[::-1]
        )
        assert profile is not None
        scores = profile.score(np.eye(4, dtype=np.float32))
        assert scores.shape == (4,)
        assert scores[0] > scores[2] and scores[1] > scores[3]  # liked directions beat unrelated ones
        assert profile.query_vectors.shape[1] == 4
        assert build_profile(strategy, positives=np.zeros((0, 4))) is None
    with pytest.raises(ValueError):
        build_profile("popularity", positives=positives)


def test_explore_exploit_never_repeats_over_twenty_rounds_and_is_deterministic():
    rng_data = np.random.default_rng(11)
    candidate_ids = [f"p{i}" for i in range(300)]
    scores = rng_data.random(300)
    vectors = rng_data.standard_normal((300, 16)).astype(np.float32)

    def run(seed: int, diversity_vectors: np.ndarray | None) -> list[list[str]]:
        rng = np.random.default_rng(seed)
        shown: set[str] = set()
        rounds = []
        for _ in range(20):
            picks = explore_exploit(
                scores,
                candidate_ids,
                k_exploit=5,
                k_explore=3,
                exclude_ids=shown,
                rng=rng,
                diversity_vectors=diversity_vectors,
            )
            assert len(picks.ids) == 8
            assert not shown & set(picks.ids)
            # Exploitation takes the best-scored ids not shown yet.
            remaining = sorted(
                (i for i in range(300) if candidate_ids[i] not in shown), key=lambda i: -scores[i]
            )
            assert picks.exploit_ids == [candidate_ids[i] for i in remaining[:5]]
            shown |= set(picks.ids)
            rounds.append(picks.ids)
        return rounds

    for diversity_vectors in (None, vectors):
        first = run(5, diversity_vectors)
        assert len({i for ids in first for i in ids}) == 160
        assert run(5, diversity_vectors) == first
        assert run(6, diversity_vectors) != first


def test_explore_skips_repeated_candidates_and_runs_out_gracefully():
    picks = explore_exploit(
        [0.9, 0.9, 0.5, 0.1],
        ["a", "a", "b", "c"],
        k_exploit=2,
        k_explore=5,
        exclude_ids={"c"},
        rng=np.random.default_rng(0),
    )
    assert picks.ids == ["a", "b"]


def test_explore_with_vectors_reaches_beyond_the_exploited_cluster():
    rng = np.random.default_rng(2)
    dims = 12
    centres = np.eye(dims, dtype=np.float32)[:4]
    vectors = np.vstack([centre + 0.05 * rng.standard_normal((25, dims)) for centre in centres]).astype(
        np.float32
    )
    cluster = np.repeat(np.arange(4), 25)
    scores = np.where(cluster == 0, 0.9, 0.3) + 0.01 * rng.random(100)  # cluster 0 wins exploitation
    picks = explore_exploit(
        scores,
        list(range(100)),
        k_exploit=5,
        k_explore=3,
        rng=np.random.default_rng(1),
        diversity_vectors=vectors,
    )
    assert set(cluster[picks.exploit_ids]) == {0}
    # Each exploration slot lands in a different cluster, none in the one already shown.
    assert len(set(cluster[picks.explore_ids])) == 3
    assert 0 not in set(cluster[picks.explore_ids])


def test_cold_start_sample_round_robins_over_categories():
    categories = ["shirts"] * 10 + ["shoes"] * 3 + ["bags"]
    picks = cold_start_sample(categories, 5, np.random.default_rng(4))
    assert len(picks) == len(set(picks)) == 5
    assert {categories[p] for p in picks[:3]} == {"shirts", "shoes", "bags"}
    # After bags runs out, the rounds continue over the others: 2 shirts, 2 shoes, 1 bag.
    assert sorted(categories[p] for p in picks) == ["bags", "shirts", "shirts", "shoes", "shoes"]
    assert cold_start_sample(categories, 5, np.random.default_rng(4)) == picks
    assert sorted(cold_start_sample(categories, 100, np.random.default_rng(4))) == list(range(14))
    assert cold_start_sample([], 3, np.random.default_rng(0)) == []
