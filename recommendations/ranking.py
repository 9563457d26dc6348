"""Re-ranking of a short candidate list (numpy only, no Django, no torch).

``mmr()`` keeps a short list from being eight photos of the same shirt. The exhaustive neighbour search
over a whole catalog is in ``recommendations/topk.py`` (torch), so that web requests asking for diversity
never load torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _normalised_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def mmr(
    query_scores: np.ndarray,
    candidate_vectors: np.ndarray,
    k: int,
    diversity: float,
    *,
    selected: Sequence[int] = (),
) -> list[int]:
    """Maximal Marginal Relevance: pick ``k`` candidate positions, trading relevance for variety.

    Each step picks ``argmax (1 - diversity) * query_scores[c] - diversity * max_{p picked} cos(c, p)``.
    The penalty is 0 while nothing is picked, so the first pick is always the most relevant candidate;
    ``diversity=0`` returns the plain descending order of ``query_scores`` (ties: lower position first).
    ``selected`` are positions already shown: they are never returned but do count as picked, so the
    new picks keep away from them too. Returns fewer than ``k`` positions when candidates run out.
    """
    scores = np.asarray(query_scores, dtype=np.float64).reshape(-1)
    vectors = _normalised_rows(np.asarray(candidate_vectors, dtype=np.float64))
    if vectors.ndim != 2 or vectors.shape[0] != scores.shape[0]:
        raise ValueError(f"{scores.shape[0]} scores but candidate_vectors has shape {vectors.shape}")
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be in [0, 1], got {diversity}")
    available = np.ones(scores.shape[0], dtype=bool)
    max_similarity = np.full(scores.shape[0], -np.inf)
    for position in selected:
        available[position] = False
        max_similarity = np.maximum(max_similarity, vectors @ vectors[position])
    picks: list[int] = []
    while len(picks) < k and available.any():
        penalty = np.where(np.isfinite(max_similarity), max_similarity, 0.0)
        gain = (1.0 - diversity) * scores - diversity * penalty
        gain[~available] = -np.inf
        best = int(np.argmax(gain))
        picks.append(best)
        available[best] = False
        max_similarity = np.maximum(max_similarity, vectors @ vectors[best])
    return picks
