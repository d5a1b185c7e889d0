"""Ranking metrics for one held-out item per user, as pure functions of the target's rank.

``rank`` is 0-based: the number of candidates scored above the target (ties count against it, so a
constant scorer cannot look good). Tested against hand-computed values and scikit-learn's ndcg_score.
Not for: graded relevance with several held-out items (see the rating-aware evaluation).
"""

from __future__ import annotations

import numpy as np

KS = (5, 10, 15)


def target_rank(scores: np.ndarray, target: int | np.ndarray) -> np.ndarray:
    """Ranks of ``target`` column(s) in ``scores`` (n, m) -> (n,). Masked items should be -inf."""
    scores = np.atleast_2d(scores)
    target = np.broadcast_to(np.asarray(target), (scores.shape[0],))
    t = scores[np.arange(scores.shape[0]), target][:, None]
    above = (scores > t).sum(axis=1)
    ties = (scores == t).sum(axis=1) - 1  # the target itself is not a tie
    return above + ties


def ndcg_per_user(ranks: np.ndarray, k: int) -> np.ndarray:
    """Each user's NDCG@k (paired comparisons between rankers need them before averaging)."""
    ranks = np.asarray(ranks)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    return float(ndcg_per_user(ranks, k).mean())


def hr_at_k(ranks: np.ndarray, k: int) -> float:
    return float((np.asarray(ranks) < k).mean())


def mrr_at_k(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    return float(np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0).mean())


def summarize(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """NDCG@k and HR@k for each k, and MRR@10: the columns of every benchmark table."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"NDCG@{k}"] = ndcg_at_k(ranks, k)
    for k in ks:
        out[f"HR@{k}"] = hr_at_k(ranks, k)
    out["MRR@10"] = mrr_at_k(ranks, 10)
    return out
