"""Per-round list metrics of the feedback-loop simulation, and confidence intervals; pure functions.

For one shown list and the person's held-out ratings (raw id -> rating):

- ``like_share``: share of the shown movies the person would like (held-out rating >= 4);
- ``dislike_share``: share they would dislike (held-out rating <= 2);
- ``graded_ndcg``: NDCG@k with graded gains ``gain = rating - 3`` for held-out movies (5 -> +2, 4 -> +1,
  3 -> 0, 2 -> -1, 1 -> -2; half stars in between) and 0 for a movie the person never rated.
  DCG = sum_j gain_j / log2(j + 2) over the list (j 0-based); the ideal DCG sorts the person's whole
  held-out set by gain and keeps the positive gains, top k. A disliked movie therefore costs score, the
  value can be negative, and it is NaN for a person without a held-out rating above 3. The ideal does
  not shrink as movies are used up, so later rounds score lower for every condition alike.
- ``genre_share``: share of the shown movies that carry a genre (the "no more horror" case).

``mean_ci`` gives the mean over people with a 95% t-interval (scipy), NaNs dropped.
Not for: leave-one-out metrics of one target (recsys/metrics.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from recsys.sim.person import DISLIKE_MAX, LIKE_MIN

NEUTRAL = 3.0


def like_share(shown: Sequence[int], heldout: Mapping[int, float], like_min: float = LIKE_MIN) -> float:
    if not shown:
        return float("nan")
    return sum(heldout.get(i, -np.inf) >= like_min for i in shown) / len(shown)


def dislike_share(shown: Sequence[int], heldout: Mapping[int, float], dislike_max: float = DISLIKE_MAX) -> float:
    if not shown:
        return float("nan")
    return sum(heldout.get(i, np.inf) <= dislike_max for i in shown) / len(shown)


def count_liked(shown: Sequence[int], heldout: Mapping[int, float], like_min: float = LIKE_MIN) -> int:
    return sum(heldout.get(i, -np.inf) >= like_min for i in shown)


def count_disliked(shown: Sequence[int], heldout: Mapping[int, float], dislike_max: float = DISLIKE_MAX) -> int:
    return sum(heldout.get(i, np.inf) <= dislike_max for i in shown)


def dcg(gains: Sequence[float]) -> float:
    g = np.asarray(gains, dtype=np.float64)
    return float((g / np.log2(np.arange(len(g)) + 2.0)).sum())


def graded_ndcg(shown: Sequence[int], heldout: Mapping[int, float], k: int = 10) -> float:
    """See the module docstring: gains rating - 3, unknown 0, ideal from the best held-out items."""
    ideal = sorted((r - NEUTRAL for r in heldout.values() if r > NEUTRAL), reverse=True)[:k]
    if not ideal:
        return float("nan")
    gains = [heldout[i] - NEUTRAL if i in heldout else 0.0 for i in list(shown)[:k]]
    return dcg(gains) / dcg(ideal)


def genre_share(shown: Sequence[int], genres: Mapping[int, Sequence[str]], genre: str | None) -> float:
    if not shown or genre is None:
        return float("nan")
    return sum(genre in genres.get(i, ()) for i in shown) / len(shown)


def mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n) with a Student-t interval over the non-NaN values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(v.mean())
    if n < 2 or v.std() == 0:
        return mean, mean, mean, n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * stats.sem(v))
    return mean, mean - half, mean + half, n
