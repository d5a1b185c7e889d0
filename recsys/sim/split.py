"""The rating-aware split: per user, chronologically, the last 20% of ratings (at least 5) are held out
as that person's future opinions; everything before is history.

Built on the same loaders and 5-core data as leave-one-out (``recsys.data.prepare``), and indexed the
same way (item indices 1..n_items, raw ids through ``split.item_ids``). The SASRec the simulation uses is
trained on ``history_split`` only, so no held-out rating leaks into the retriever.
Not for: the leave-one-out split (data.py) or the simulated person (person.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recsys.data import Split

HOLDOUT_FRACTION = 0.2
MIN_HELDOUT = 5
MIN_HISTORY = 3  # SASRec's training split needs a train part and a validation item per user


def heldout_size(n: int, fraction: float = HOLDOUT_FRACTION, minimum: int = MIN_HELDOUT) -> int:
    """How many of a user's ``n`` ratings are held out: ceil(fraction * n), at least ``minimum``, at most n."""
    return min(n, max(minimum, math.ceil(fraction * n)))


@dataclass(frozen=True)
class RatingSplit:
    """A leave-one-out ``Split`` plus, per user, where history ends (``cut``); held out = ``[cut:]``."""

    split: Split
    cut: np.ndarray  # per user row: number of history ratings

    def history(self, u: int) -> np.ndarray:
        """Chronological item indices of the history part."""
        return self.split.sequences[u][: self.cut[u]]

    def history_ratings(self, u: int) -> np.ndarray:
        return self.split.ratings[u][: self.cut[u]]

    def heldout(self, u: int) -> dict[int, float]:
        """Raw item id -> rating of the held-out part (the person's future opinions)."""
        items = self.split.item_ids[self.split.sequences[u][self.cut[u] :]]
        return {int(i): float(r) for i, r in zip(items, self.split.ratings[u][self.cut[u] :], strict=True)}

    def eligible(self) -> np.ndarray:
        """User rows with at least ``MIN_HISTORY`` history ratings (every MovieLens 5-core user has)."""
        return np.flatnonzero(self.cut >= MIN_HISTORY)


def rating_split(split: Split, fraction: float = HOLDOUT_FRACTION, minimum: int = MIN_HELDOUT) -> RatingSplit:
    """Cut every user's chronological sequence (``split`` is already sorted by time, ties by item id)."""
    cut = np.array([len(s) - heldout_size(len(s), fraction, minimum) for s in split.sequences], dtype=np.int64)
    return RatingSplit(split=split, cut=cut)


def history_split(rs: RatingSplit) -> Split:
    """The history parts as a ``Split`` for SASRec training, same item index as the full data.

    ``train_model`` applies its own leave-one-out inside the history (trains on all but the last two
    history items, early-stops on the second-to-last), so held-out ratings never reach SASRec.
    """
    users = rs.eligible()
    return Split(
        name=f"{rs.split.name}-history",
        item_ids=rs.split.item_ids,
        user_ids=rs.split.user_ids[users],
        sequences=[rs.history(int(u)) for u in users],
        ratings=[rs.history_ratings(int(u)) for u in users],
    )
