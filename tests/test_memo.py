"""CachedRanker: per-side memo of preference scores (recsys/memo.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from recsys.memo import CachedRanker
from tests.fakes import FakeRanker


class Recording(FakeRanker):
    """FakeRanker that records what each pass was asked."""

    def __init__(self, catalog):
        super().__init__(catalog)
        self.asked: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def score(self, likes, dislikes, candidates):
        self.asked.append((tuple(likes), tuple(dislikes)))
        return super().score(likes, dislikes, candidates)


def test_only_the_missing_side_reaches_the_ranker(toy_catalog):
    inner = Recording(toy_catalog)
    cached = CachedRanker(inner)
    pos, neg = cached.score([6], [1], [3, 9, 12])
    pos2, neg2 = cached.score([6], [2], [12, 3, 9])  # same likes and candidate set, other dislikes
    assert inner.asked == [((6,), (1,)), ((), (2,))]
    np.testing.assert_allclose(pos2, pos[[2, 0, 1]])  # the cached side follows the new order
    np.testing.assert_allclose(neg2, inner.score([], [2], [12, 3, 9])[1])
    assert cached.calls == 2 and cached.hits == 1


class Joint(Recording):
    """Each side reads both histories (a letters-v6 ranker): pos = genre overlap with the likes minus half
    the overlap with the dislikes, neg the other way round."""

    sides_independent = False

    def score(self, likes, dislikes, candidates):
        self.asked.append((tuple(likes), tuple(dislikes)))
        p, n = (self._overlap(h, candidates) for h in (likes, dislikes))
        return (p - n / 2 if likes else None), (n - p / 2 if dislikes else None)


def test_sides_that_read_both_histories_are_keyed_and_asked_by_both(toy_catalog):
    inner = Joint(toy_catalog)
    cached = CachedRanker(inner)
    assert not cached.sides_independent and CachedRanker(Recording(toy_catalog)).sides_independent
    cached.score([6], [1], [3, 9, 12])
    pos, neg = cached.score([6], [2], [12, 3, 9])  # same likes, other dislikes: the pos side changes too
    assert inner.asked == [((6,), (1,)), ((6,), (2,))]  # never a side alone
    want = inner.score([6], [2], [12, 3, 9])
    np.testing.assert_allclose(pos, want[0])
    np.testing.assert_allclose(neg, want[1])
    cached.score([6], [2], [9, 12, 3])
    assert cached.calls == 2 and cached.hits == 2
    inner.asked.clear()
    cached.prefetch([([6], [1], [3, 9]), ([6], [1], [9, 3]), ([7], [], [3, 9])])
    assert inner.asked == [((6,), (1,)), ((7,), ())]


def test_a_side_returned_as_none_is_not_cached(toy_catalog):
    class Stale(FakeRanker):
        skip = True

        def score(self, likes, dislikes, candidates):
            if self.skip:  # what SerialRanker returns for a pass that went stale in the queue
                return None, None
            return super().score(likes, dislikes, candidates)

    inner = Stale(toy_catalog)
    cached = CachedRanker(inner)
    assert cached.score([6], [1], [3, 9]) == (None, None)
    inner.skip = False
    pos, neg = cached.score([6], [1], [3, 9])
    assert pos is not None and neg is not None and cached.calls == 2


def test_empty_sides_and_errors_pass_through(toy_catalog):
    class Boom:
        def score(self, likes, dislikes, candidates):
            raise RuntimeError("model down")

    cached = CachedRanker(Boom())
    assert cached.score([], [], [3, 9]) == (None, None)  # nothing to ask
    with pytest.raises(RuntimeError):
        cached.score([6], [], [3, 9])
    assert not cached.cache


def test_least_recently_used_entries_are_dropped_first(toy_catalog):
    inner = Recording(toy_catalog)
    cached = CachedRanker(inner, maxsize=2)
    for likes in ([6], [7], [6], [8]):  # [6] used again before [8] arrives: [7] is the one dropped
        cached.score(likes, [], [3, 9])
    assert len(cached.cache) == 2 and len(inner.asked) == 3
    cached.score([6], [], [3, 9])
    assert len(inner.asked) == 3
    cached.score([7], [], [3, 9])
    assert len(inner.asked) == 4


def test_concurrent_callers_get_their_own_answers(toy_catalog):
    inner = FakeRanker(toy_catalog)
    cached = CachedRanker(inner, maxsize=4)
    cases = [([a], [b], [3, 9, 12, 20]) for a in (6, 7, 8) for b in (1, 2, 3)] * 5
    errors: list[str] = []

    def work(case):
        got, want = cached.score(*case), inner.score(*case)
        for g, w in zip(got, want, strict=True):
            if not np.allclose(g, w):
                errors.append(str(case))

    threads = [threading.Thread(target=work, args=(c,)) for c in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cached.cache) <= 4


def test_prefetch_asks_each_missing_side_once_then_score_is_served_from_the_cache(toy_catalog):
    from recsys.memo import prefetch

    inner = Recording(toy_catalog)
    cached = CachedRanker(inner)
    cached.score([6], [], [3, 9, 12])  # pos of the first question is already known
    inner.asked.clear()
    queries = [([6], [1], [12, 9, 3]),  # only its neg is missing
               ([6], [1], [3, 9, 12]),  # the same question again: nothing new
               ([7], [1], [3, 9]),      # both sides new (another candidate set)
               ([], [], [3]), ([7], [2], [])]  # nothing to score
    prefetch(cached, queries)
    assert inner.asked == [((), (1,)), ((7,), (1,))]  # no score_many here: one score call per question
    assert cached.calls == 3
    for likes, dislikes, cands in queries[:3]:
        want = inner.score(likes, dislikes, cands)
        got = cached.score(likes, dislikes, cands)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w)
    assert cached.calls == 3  # every later score was a cache hit
    prefetch(FakeRanker(toy_catalog), queries)  # a ranker without prefetch: nothing happens


def test_prefetch_uses_score_many_in_batches(toy_catalog):
    class Many(Recording):
        def __init__(self, catalog):
            super().__init__(catalog)
            self.batches: list[int] = []

        def score_many(self, queries, batch_size=32):
            self.batches.append(len(queries))
            return [FakeRanker.score(self, *q) for q in queries]

    inner = Many(toy_catalog)
    cached = CachedRanker(inner)
    cached.prefetch([([6], [1], [3, 9, 12]), ([7], [], [3, 9])], batch_size=8)
    assert inner.batches == [2] and inner.asked == []
    assert cached.score([7], [], [9, 3])[0] is not None and cached.calls == 2 and cached.hits == 1
