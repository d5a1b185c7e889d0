"""Rank fusion, pure functions (Xu & Ushiyama, KES 2025, eqs. 1-3):

    Score(i) = α / R_base(i) + (1 - α) * (1 / R_pos(i) - 1 / R_neg(i))

R_base is the retriever's rank, R_pos the positive model's rank (1 = most liked), R_neg the negative
model's rank (1 = most likely disliked). A side without history contributes 0. Ties in a model's
scores get their average rank, so a tie never inherits the retriever's order (that would fake signal).
Also z-scores within a list (``standardised``, for score-level blends) and reciprocal-rank fusion for blending the SASRec and free-text candidate lists.
Not for: producing the scores (llm.py) or choosing candidates (pipeline.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


@dataclass(frozen=True)
class FusionConfig:
    alpha: float = 0.6


def standardised(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scores as z-scores within one candidate list (all zeros when they do not vary)."""
    x = np.asarray(scores, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """Higher score -> better (smaller) 1-based rank; ties share their average rank."""
    return rankdata(-np.asarray(scores, dtype=np.float64), method="average")


def fuse(
    base_ranks: np.ndarray, pos_ranks: np.ndarray | None, neg_ranks: np.ndarray | None, alpha: float
) -> np.ndarray:
    """The paper's eq. (3) for every candidate; ranks are 1-based."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    score = alpha / np.asarray(base_ranks, dtype=np.float64)
    if pos_ranks is not None:
        score = score + (1 - alpha) / np.asarray(pos_ranks, dtype=np.float64)
    if neg_ranks is not None:
        score = score - (1 - alpha) / np.asarray(neg_ranks, dtype=np.float64)
    return score


def fused_order(scores: np.ndarray, base_ranks: np.ndarray) -> np.ndarray:
    """Indices by fused score, best first; equal scores keep the retriever's order."""
    return np.lexsort((np.asarray(base_ranks), -np.asarray(scores)))


def reciprocal_rank_fusion(lists: Sequence[Sequence[int]], k: int = 60) -> list[int]:
    """Merge ranked id lists by sum of 1 / (k + rank) (Cormack et al., 2009), best first."""
    total: dict[int, float] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, start=1):
            total[item] = total.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(total, key=lambda i: -total[i])
