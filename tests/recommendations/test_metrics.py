import itertools
import math

import numpy as np
import pytest

from recommendations.metrics import (
    auc,
    average_precision_at_k,
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    summarise,
)

# One worked case used by several tests: hits at 1-based positions 1 and 3; "f" is never returned.
RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"a", "c", "f"}


def test_precision_recall_hit_rate_on_worked_case():
    # 2 hits (a, c) in the first 5 -> precision 2/5; 2 of 3 relevant found -> recall 2/3.
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.4)
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    # First 2: a hit, b miss -> 1/2; recall 1/3.
    assert precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.5)
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)
    assert hit_rate_at_k(RANKED, RELEVANT, 1) == 1.0
    assert hit_rate_at_k(["b", "d", "a"], {"a"}, 2) == 0.0


def test_ndcg_ideal_comes_from_ground_truth_not_the_returned_list():
    # DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
    # IDCG: min(5, 3) = 3 ideal hits = 1 + 1/log2(3) + 1/log2(4) = 1 + 0.63093 + 0.5 = 2.13093
    # nDCG = 1.5 / 2.13093 = 0.70392
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.703918, abs=1e-6)
    # Returning only "a" when 3 items are relevant: DCG 1, IDCG (k=3) 2.13093 -> 0.46928, not 1.0.
    assert ndcg_at_k(["a"], RELEVANT, 3) == pytest.approx(0.469279, abs=1e-6)
    # One relevant item, found first: IDCG uses min(k, 1) = 1 ideal hit -> 1.0.
    assert ndcg_at_k(["a", "x", "y"], {"a"}, 3) == pytest.approx(1.0)
    # Same item found second: 1/log2(3) = 0.63093.
    assert ndcg_at_k(["x", "a", "y"], {"a"}, 3) == pytest.approx(1 / math.log2(3))


def test_average_precision_is_normalised_by_min_k_and_relevant_count():
    # Hits at positions 1 and 3: precision@1 = 1, precision@3 = 2/3; sum 5/3; / min(5, 3) = 3 -> 5/9.
    assert average_precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(5 / 9)
    # 5 relevant but k = 2, both slots hit: (1/1 + 2/2) / min(2, 5) = 1.0.
    assert average_precision_at_k(["a", "c", "x"], {"a", "c", "f", "g", "h"}, 2) == pytest.approx(1.0)
    # One hit at position 2 of 3 with 2 relevant: (1/2) / min(3, 2) = 0.25.
    assert average_precision_at_k(["x", "a", "y"], {"a", "b"}, 3) == pytest.approx(0.25)


def test_reciprocal_rank():
    assert reciprocal_rank(["x", "y", "a"], {"a"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y", "a"], {"a"}, k=2) == 0.0
    assert reciprocal_rank(RANKED, RELEVANT) == 1.0


def test_repeated_ids_count_once_and_short_lists_count_missing_slots_as_misses():
    # "a" three times: only the first counts -> 1 hit of 3 slots; recall 1 of 2 relevant.
    assert precision_at_k(["a", "a", "a"], {"a", "b"}, 3) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "a", "a"], {"a", "b"}, 3) == pytest.approx(0.5)
    # One item returned when 5 were asked for: precision 1/5, while nDCG is 1 (the only relevant item first).
    assert precision_at_k(["a"], {"a"}, 5) == pytest.approx(0.2)
    assert ndcg_at_k(["a"], {"a"}, 5) == pytest.approx(1.0)
    assert precision_at_k([], {"a"}, 3) == 0.0


def test_empty_relevant_set_returns_none_and_k_must_be_positive():
    for metric in (
        precision_at_k,
        recall_at_k,
        hit_rate_at_k,
        ndcg_at_k,
        average_precision_at_k,
        reciprocal_rank,
    ):
        assert metric(RANKED, set(), 5) is None
    with pytest.raises(ValueError):
        precision_at_k(RANKED, RELEVANT, 0)


def test_auc_on_hand_computed_case_with_ties():
    # Positives 0.9, 0.8, 0.4 against negatives 0.7, 0.4, 0.1:
    # 0.9 beats 3, 0.8 beats 3, 0.4 loses to 0.7, ties 0.4 (0.5), beats 0.1 -> 3 + 3 + 1.5 = 7.5 of 9 pairs.
    assert auc([0.9, 0.8, 0.4], [0.7, 0.4, 0.1]) == pytest.approx(7.5 / 9)
    assert auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert auc([0.0], [1.0, 2.0]) == 0.0
    assert auc([1.0, 1.0], [1.0]) == 0.5
    assert auc([], [1.0]) is None
    assert auc([1.0], []) is None


def test_auc_matches_all_pairs_count():
    rng = np.random.default_rng(7)
    positives = rng.integers(0, 10, 60).astype(float)  # small integers: many ties
    negatives = rng.integers(0, 8, 45).astype(float)
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    assert auc(positives, negatives) == pytest.approx(wins / (60 * 45))


def test_summarise_micro_and_macro():
    per_query = [
        {"precision": 1.0, "recall": 0.5},
        {"precision": 1.0, "recall": None},
        {"precision": 0.4, "recall": None},
        {"precision": 0.2, "recall": None},
    ]
    groups = ["shirts", "shirts", "shirts", "shoes"]
    summary = summarise(per_query, groups)
    # micro: (1 + 1 + 0.4 + 0.2) / 4 = 0.65; macro: shirts 2.4 / 3 = 0.8, shoes 0.2 -> (0.8 + 0.2) / 2 = 0.5.
    assert summary.micro["precision"] == pytest.approx(0.65)
    assert summary.macro["precision"] == pytest.approx(0.5)
    # recall: one value, in one group; None values are skipped rather than counted as 0.
    assert summary.micro["recall"] == pytest.approx(0.5)
    assert summary.macro["recall"] == pytest.approx(0.5)
    assert summary.query_counts == {"precision": 4, "recall": 1}
    assert summary.group_counts == {"precision": 2, "recall": 1}
    with pytest.raises(ValueError):
        summarise(per_query, groups[:2])
