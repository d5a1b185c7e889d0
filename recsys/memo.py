"""``CachedRanker``: a PreferenceRanker that memoises each side's scores by (history, candidate SET).

A ranking pass costs seconds on a laptop CPU (docs/BENCHMARKS.md §2), and the same question often
comes back: an undo restores the state before a click (tests/test_app_handlers.py), a study block that
starts from the same request as an earlier one asks the shared model the same thing
(tests/test_study_flow.py), and the simulation's conditions all ask the same thing in round 1. Each side
is looked up on its own, so when only one prompt is new, only it runs (one row instead of two).

Valid for rankers that do not look at the candidates' order: true of ``recsys.llm.LetterRanker`` (the
prompt order is a function of the candidate set) and of the simulation's embedding baseline. A ranker
whose pos score does not depend on the dislikes (and vice versa) says so with ``sides_independent``
(LetterRanker with the paper's two prompts, letters-v5); then each side is keyed by its own history
and asked alone. Otherwise (letters-v6 shows both histories in one prompt, and rankers that do not say)
both sides are keyed by both histories and always asked together. A side the ranker returns
None for (no history, or ``webapp.services.SerialRanker`` skipping a stale pass) is not cached.
Thread-safe: the app's sessions share one.

``prefetch`` asks many people's missing sides ahead in shared batches (the simulation's lockstep rounds: on
a GPU, one pass serves many people).

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
Key = tuple[str, tuple[tuple[int, ...], ...], frozenset[int]]  # (side, the histories it depends on, candidate set)
Query = tuple[Sequence[int], Sequence[int], Sequence[int]]  # (likes, dislikes, candidates)


class CachedRanker:
    """Memoises ``ranker`` per side; ``maxsize`` entries (least recently used dropped first), None = unbounded."""

    def __init__(self, ranker: PreferenceRanker, maxsize: int | None = None):
        self.ranker = ranker
        self.maxsize = maxsize
        self.cache: OrderedDict[Key, dict[int, float]] = OrderedDict()
        self.calls = 0  # passes that reached ``ranker``
        self.hits = 0  # sides served from the cache
        self._lock = threading.Lock()

    @property
    def sides_independent(self) -> bool:
        return sides_independent(self.ranker)

    def keys(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> tuple[Key, Key]:
        """Each side's cache key: its own history, or both when the sides are not independent."""
        cset = frozenset(int(c) for c in candidates)
        pos, neg = tuple(int(i) for i in likes), tuple(int(i) for i in dislikes)
        if self.sides_independent:
            return ("pos", (pos,), cset), ("neg", (neg,), cset)
        return ("pos", (pos, neg), cset), ("neg", (pos, neg), cset)

    def question(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int],
                 need: Sequence[bool]) -> Query:
        """What to ask the ranker for the sides in ``need``: those sides' histories alone when the sides
        are independent (the other side costs nothing), both histories otherwise (each side reads both)."""
        if not self.sides_independent:
            return likes, dislikes, candidates
        return likes if need[0] else (), dislikes if need[1] else (), candidates

    def score(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> Scores:
        histories = (likes, dislikes)
        keys = self.keys(likes, dislikes, candidates)
        found = [self._get(key) if h else None for h, key in zip(histories, keys, strict=True)]
        need = [bool(h) and f is None for h, f in zip(histories, found, strict=True)]
        if any(need):
            with self._lock:
                self.calls += 1
            fresh = self.ranker.score(*self.question(likes, dislikes, candidates, need))
            for side, (wanted, s) in enumerate(zip(need, fresh, strict=True)):
                if wanted and s is not None:
                    found[side] = {int(c): float(x) for c, x in zip(candidates, s, strict=True)}
                    self._put(keys[side], found[side])
        out = [None if f is None else np.array([f[int(c)] for c in candidates], np.float32) for f in found]
        return out[0], out[1]

    def prefetch(self, queries: Sequence[Query], batch_size: int = 32) -> None:
        """Score every side of ``queries`` that is not cached yet, in shared batches when the ranker has
        ``score_many`` (``recsys.llm.LetterRanker``: on a GPU, many people's prompts per pass), so that the
        ``score`` calls that follow are served from the cache. Each missing side is asked once."""
        scheduled: set[Key] = set()
        asked: list[tuple[tuple[Key | None, Key | None], Query]] = []  # (the keys it fills, the question)
        for likes, dislikes, candidates in queries:
            if not candidates:
                continue
            keys: list[Key | None] = []
            for key, history in zip(self.keys(likes, dislikes, candidates), (likes, dislikes), strict=True):
                fresh = bool(history) and key not in scheduled and self._peek(key) is None
                keys.append(key if fresh else None)
                scheduled |= {key} if fresh else set()
            if keys[0] or keys[1]:
                question = self.question(likes, dislikes, candidates, [k is not None for k in keys])
                asked.append(((keys[0], keys[1]), question))
        if not asked:
            return
        many = getattr(self.ranker, "score_many", None)
        questions = [q for _, q in asked]
        results = many(questions, batch_size=batch_size) if many is not None else [self.ranker.score(*q) for q in questions]
        with self._lock:
            self.calls += len(asked)
        for (keys, (_, _, candidates)), scores in zip(asked, results, strict=True):
            for key, side_scores in zip(keys, scores, strict=True):
                if key is not None and side_scores is not None:
                    self._put(key, {int(c): float(x) for c, x in zip(candidates, side_scores, strict=True)})

    def _peek(self, key: Key) -> dict[int, float] | None:
        with self._lock:
            return self.cache.get(key)

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


def sides_independent(ranker: object) -> bool:
    """Whether ``ranker``'s pos scores ignore the dislikes and its neg scores the likes (False unless it says so)."""
    return bool(getattr(ranker, "sides_independent", False))


def prefetch(ranker: object, queries: Sequence[Query], batch_size: int = 32) -> None:
    """``ranker.prefetch(queries)`` when the ranker (or what it wraps) can answer many questions ahead in
    shared batches; a no-op for rankers that cannot (they are cheap, or read per-person data)."""
    fn = getattr(ranker, "prefetch", None)
    if fn is not None:
        fn(queries, batch_size=batch_size)
