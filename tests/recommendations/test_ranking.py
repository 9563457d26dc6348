import numpy as np
import pytest
import torch

from recommendations.ranking import mmr
from recommendations.topk import exact_top_k

torch.set_num_threads(2)


def test_mmr_without_diversity_is_the_score_order():
    rng = np.random.default_rng(0)
    scores = rng.random(50)
    scores[7] = scores[3]  # a tie keeps the lower position first
    vectors = rng.standard_normal((50, 8))
    assert mmr(scores, vectors, 50, 0.0) == list(np.argsort(-scores, kind="stable"))
    assert mmr(scores, vectors, 5, 0.0) == list(np.argsort(-scores, kind="stable")[:5])


def test_mmr_with_diversity_skips_a_near_duplicate():
    shirt = np.array([1.0, 0.0, 0.0])
    same_shirt = np.array([0.999, 0.045, 0.0])  # cos 0.999 to the shirt
    jacket = np.array([0.0, 0.0, 1.0])
    scores = np.array([0.95, 0.94, 0.80])
    vectors = np.stack([shirt, same_shirt, jacket])
    assert mmr(scores, vectors, 3, 0.0) == [0, 1, 2]
    # After the shirt, with diversity 0.5: near-duplicate 0.5 * 0.94 - 0.5 * 0.999 = -0.03;
    # jacket 0.5 * 0.80 - 0.5 * 0 = 0.40 -> jacket second.
    assert mmr(scores, vectors, 3, 0.5) == [0, 2, 1]
    # Already shown positions are never returned and count as picked.
    assert mmr(scores, vectors, 3, 0.5, selected=[0]) == [2, 1]
    with pytest.raises(ValueError):
        mmr(scores, vectors, 3, 1.5)


def brute_force(vectors: np.ndarray, k: int, group_ids: np.ndarray | None = None) -> np.ndarray:
    """float64 cosine of every pair with self (and same-group) pairs masked out."""
    unit = vectors.astype(np.float64) / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    if group_ids is not None:
        scores[group_ids[:, None] == group_ids[None, :]] = -np.inf
    return scores


def assert_exact(indices: np.ndarray, scores: np.ndarray, full: np.ndarray, k: int) -> None:
    """Same neighbours as brute force, allowing only swaps between candidates tied within 1e-5."""
    expected_scores = -np.sort(-full, axis=1)[:, :k]
    if expected_scores.shape[1] < k:  # fewer rows than k: the rest is padding
        padding = np.full((len(full), k - expected_scores.shape[1]), -np.inf)
        expected_scores = np.hstack([expected_scores, padding])
    finite = np.isfinite(expected_scores)
    assert (np.isfinite(scores) == finite).all()
    assert (indices[~finite] == -1).all()
    np.testing.assert_allclose(scores[finite], expected_scores[finite], atol=1e-5)
    rows = np.nonzero(finite)[0]
    # Every returned neighbour really has the score reported for it, and no row repeats a neighbour.
    np.testing.assert_allclose(full[rows, indices[finite]], scores[finite], atol=1e-5)
    for row in range(len(indices)):
        found = indices[row][indices[row] >= 0]
        assert len(set(found.tolist())) == len(found)


@pytest.mark.parametrize("block_rows", [53, 128, 499, 500, 4096])
def test_exact_top_k_equals_brute_force(block_rows):
    rng = np.random.default_rng(block_rows)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    indices, scores = exact_top_k(vectors, 10, block_rows=block_rows)
    assert indices.shape == scores.shape == (500, 10)
    assert indices.dtype == np.int64 and scores.dtype == np.float32
    assert (indices != np.arange(500)[:, None]).all()
    assert_exact(indices, scores, brute_force(vectors, 10), 10)


@pytest.mark.parametrize("block_rows", [53, 256])
def test_exact_top_k_never_returns_the_same_group(block_rows):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    # Byte-identical images under different ids: rows 0-99 are duplicated as 100-199, same md5.
    vectors[100:200] = vectors[0:100]
    md5 = np.array([f"md5-{i % 100}" if i < 200 else f"md5-{i}" for i in range(500)])
    indices, scores = exact_top_k(torch.from_numpy(vectors), 8, block_rows=block_rows, group_ids=md5)
    rows = np.repeat(np.arange(500), 8)
    assert (md5[indices.reshape(-1)] != md5[rows]).all()
    assert_exact(indices, scores, brute_force(vectors, 8, md5), 8)


def test_exact_top_k_normalises_and_pads_when_too_few_neighbours():
    rng = np.random.default_rng(2)
    vectors = 3.0 * rng.standard_normal((12, 4)).astype(np.float32)  # not unit length
    groups = np.arange(12) // 2  # each row has one twin to exclude: 10 eligible neighbours
    calls: list[tuple[int, int]] = []
    indices, scores = exact_top_k(
        vectors, 15, block_rows=5, group_ids=groups, progress=lambda done, total: calls.append((done, total))
    )
    assert indices.shape == (12, 15)
    assert (indices[:, 10:] == -1).all() and np.isneginf(scores[:, 10:]).all()
    assert_exact(indices, scores, brute_force(vectors, 15, groups), 15)
    # 3 row blocks -> 6 block pairs (each unordered pair once), reported in order.
    assert calls == [(i, 6) for i in range(1, 7)]


def test_exact_top_k_low_precision_matmul_is_rescored_in_float32():
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 32)).astype(np.float32)
    indices, scores = exact_top_k(vectors, 5, block_rows=64, matmul_dtype=torch.bfloat16)
    assert_exact(indices, scores, brute_force(vectors, 5), 5)


def test_exact_top_k_keeps_self_when_asked():
    vectors = np.eye(3, dtype=np.float32)
    indices, scores = exact_top_k(vectors, 1, exclude_self=False)
    assert indices[:, 0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores[:, 0], 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_exact_top_k_on_cuda_matches_cpu():
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((2000, 64)).astype(np.float32)
    indices, scores = exact_top_k(vectors, 10, block_rows=512, device="cuda")
    assert_exact(indices, scores, brute_force(vectors, 10), 10)
