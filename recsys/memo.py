"""``CachedRanker``: a PreferenceRanker that memoises each side's scores by (history, candidate SET).

A ranking pass costs seconds on a laptop CPU (docs/BENCHMARKS.md §2), and the same question often
comes back: an undo restores the state before a click (tests/test_app_handlers.py), a study block that
starts from the same request as an earlier one asks the shared model the same thing
(tests/test_study_flow.py), and the simulation's conditions all ask the same thing in round 1. Each side
is looked up on its own, so when only one prompt is new, only it runs (one row instead of two).

Valid for rankers whose pos score does not depend on the dislikes (and vice versa) and that do not look
at the candidates' order: true of ``recsys.llm.LetterRanker`` (separate rows; the prompt order is a
function of the candidate set) and of the simulation's embedding baseline. A side the ranker returns
None for (no history, or ``webapp.services.SerialRanker`` skipping a stale pass) is not cached.
Thread-safe: the app's sessions share one.

Not for: ranking itself (llm.py), or caching anything whose model changes while it is cached
(training evaluates with fresh rankers).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from recsys.protocols import PreferenceRanker

Scores = tuple[np.ndarray | None, np.ndarray | None]
Key = tuple[str, tuple[int, ...], frozenset[int]]


class CachedRanker:
    """Memoises ``ranker`` per side; ``maxsize`` entries (least recently used dropped first), None = unbounded."""

    def __init__(self, ranker: PreferenceRanker, maxsize: int | None = None):
        self.ranker = ranker
        self.maxsize = maxsize
        self.cache: OrderedDict[Key, dict[int, float]] = OrderedDict()
        self.calls = 0  # passes that reached ``ranker``
        self.hits = 0  # sides served from the cache
        self._lock = threading.Lock()

    def score(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> Scores:
        cset = frozenset(int(c) for c in candidates)
        histories = (likes, dislikes)
        keys: tuple[Key, Key] = (("pos", tuple(int(i) for i in likes), cset),
                                 ("neg", tuple(int(i) for i in dislikes), cset))
        found = [self._get(key) if h else None for h, key in zip(histories, keys, strict=True)]
        need = [bool(h) and f is None for h, f in zip(histories, found, strict=True)]
        if any(need):
            with self._lock:
                self.calls += 1
            fresh = self.ranker.score(likes if need[0] else (), dislikes if need[1] else (), candidates)
            for side, (wanted, s) in enumerate(zip(need, fresh, strict=True)):
                if wanted and s is not None:
                    found[side] = {int(c): float(x) for c, x in zip(candidates, s, strict=True)}
                    self._put(keys[side], found[side])
        out = [None if f is None else np.array([f[int(c)] for c in candidates], np.float32) for f in found]
        return out[0], out[1]

    def _get(self, key: Key) -> dict[int, float] | None:
        with self._lock:
            value = self.cache.get(key)
            if value is not None:
                self.cache.move_to_end(key)
                self.hits += 1
            return value

    def _put(self, key: Key, value: dict[int, float]) -> None:
        with self._lock:
            self.cache[key] = value
            self.cache.move_to_end(key)
            while self.maxsize is not None and len(self.cache) > self.maxsize:
                self.cache.popitem(last=False)
