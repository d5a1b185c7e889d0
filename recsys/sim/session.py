"""One simulated session: show k movies, collect the person's answers, feed them back, repeat.

Clicks reach ``Recommender.recommend`` exactly as the app's do: likes and dislikes newest first (a
round's answers are clicked top to bottom, so the lowest one is newest), every movie shown before is
in ``exclude`` (never shown twice), and so is everything the person rated before the session.

Also the parts a condition needs that are not the LLM:
- ``PopularRetriever``: the most-popular baseline as a Retriever;
- ``EmbeddingNegRanker``: the cheap negative baseline, a PreferenceRanker whose neg score is the
  largest SASRec item-embedding cosine similarity to a disliked movie (pos None), fused like the LLM;
- ``OracleNegRanker``: knows which candidates the person would 👎 (an upper bound, not a model), and
  ``GenreOracleNegRanker``: knows the genre they burst-disliked (the same for "no more horror");
- ``SidesRanker``: a ranker with one side switched off (e.g. SASRec + positive adapter only);
- ``BlendedNegRanker``: one ranker's pos, and a neg that averages two rankers' neg scores, each standardised within
  the list (the negative adapter beside the catalog's mean rating it reads poorly: docs/BENCHMARKS.md §5);
The conditions share one ``recsys.memo.CachedRanker`` per model, so conditions that ask the LLM the
same question (round 1 of every LLM condition, the α grid) pay for it once.
Not for: choosing users, aggregating or reporting (recsys/simulate.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.fusion import standardised
from recsys.memo import prefetch
from recsys.pipeline import Recommender
from recsys.protocols import PreferenceRanker
from recsys.sim import metrics as M
from recsys.sim.person import DISLIKE_MAX, Answer, Person, PersonConfig, answer

log = logging.getLogger(__name__)

Scores = tuple[np.ndarray | None, np.ndarray | None]


@dataclass(frozen=True)
class Condition:
    """A named way of ranking: a Recommender and the α/LLM switch passed to ``recommend``.

    ``ranker_for`` replaces the recommender's ranker per person (the oracle, which reads their ratings).
    """

    name: str
    recommender: Recommender
    alpha: float | None = None
    use_llm: bool = True
    ranker_for: Callable[[Person], PreferenceRanker] | None = None
    only: str | None = None  # run in this scenario only

    def for_person(self, person: Person) -> Recommender:
        if self.ranker_for is None:
            return self.recommender
        r = self.recommender
        return Recommender(r.catalog, r.retriever, self.ranker_for(person), r.text, r.config)


@dataclass(frozen=True)
class Round:
    shown: tuple[int, ...]
    answers: tuple[Answer, ...]
    degraded: bool = False  # the ranker failed and the pipeline served the retriever's order


def run_session(cond: Condition, person: Person, cfg: PersonConfig, rounds: int = 5, k: int = 10) -> list[Round]:
    """``rounds`` lists of ``k`` for ``person`` under ``cond``; answers update likes/dislikes between lists."""
    return run_sessions(cond, [person], cfg, rounds, k)[0]


def run_sessions(cond: Condition, people: Sequence[Person], cfg: PersonConfig, rounds: int = 5, k: int = 10,
                 batch_size: int = 32, progress: Callable[[int], None] | None = None) -> list[list[Round]]:
    """``run_session`` for many people in lockstep: each round first asks every person's ranking question of
    the condition's ranker ahead (``recsys.memo.prefetch``: many people's prompts per pass on a GPU), then
    ranks each person from the cache. The same lists as one ``run_session`` per person. ``progress(n)``
    is told each finished round for ``n`` people."""
    states = [([*p.likes], [*p.dislikes], [], cond.for_person(p)) for p in people]  # likes, dislikes, shown, rec
    out: list[list[Round]] = [[] for _ in people]
    for _ in range(rounds):
        # only a shared ranker that can answer ahead (an LLM behind a CachedRanker) is worth the extra retrieval
        if cond.use_llm and cond.ranker_for is None and hasattr(cond.recommender.ranker, "prefetch"):
            asks = [cond.recommender.ranking_query(likes, dislikes, exclude={*p.seen, *shown})
                    for p, (likes, dislikes, shown, _) in zip(people, states, strict=True)]
            try:
                prefetch(cond.recommender.ranker, [q for q in asks if q[0] or q[1]], batch_size)
            except Exception:  # noqa: BLE001 - each person's own pass below retries and degrades as the app does
                log.exception("batched ranking failed; ranking each person alone")
        for person, (likes, dislikes, shown, recommender), rounds_so_far in zip(people, states, out, strict=True):
            rec = recommender.recommend(
                likes, dislikes, exclude={*person.seen, *shown}, k=k, alpha=cond.alpha, use_llm=cond.use_llm
            )
            ids = rec.ids()
            answers = tuple(answer(i, person, cfg) for i in ids)
            for item, a in zip(ids, answers, strict=True):
                if a == "like":
                    likes.insert(0, item)
                elif a == "dislike":
                    dislikes.insert(0, item)
            shown.extend(ids)
            rounds_so_far.append(Round(tuple(ids), answers, rec.degraded))
        if progress is not None:
            progress(len(people))
    return out


def session_metrics(
    rounds: Sequence[Round],
    heldout: Mapping[int, float],
    genres: Mapping[int, Sequence[str]] | None = None,
    genre: str | None = None,
    k: int = 10,
) -> dict[str, list[float]]:
    """Per-round metrics of one session (see recsys.sim.metrics); cumulative counts run over rounds."""
    out: dict[str, list[float]] = {
        "like_share": [], "dislike_share": [], "ndcg": [], "cum_liked": [], "cum_disliked": [], "genre_share": [],
        "degraded": [],
    }
    liked = disliked = 0
    for r in rounds:
        liked += M.count_liked(r.shown, heldout)
        disliked += M.count_disliked(r.shown, heldout)
        out["like_share"].append(M.like_share(r.shown, heldout))
        out["dislike_share"].append(M.dislike_share(r.shown, heldout))
        out["ndcg"].append(M.graded_ndcg(r.shown, heldout, k))
        out["cum_liked"].append(float(liked))
        out["cum_disliked"].append(float(disliked))
        out["genre_share"].append(M.genre_share(r.shown, genres or {}, genre))
        out["degraded"].append(float(r.degraded))
    return out


# ------------------------------------------------------------------------------------ non-LLM parts


class PopularRetriever:
    """Implements recsys.protocols.Retriever: the same most-popular list for everyone (raw ids)."""

    def __init__(self, popular: Sequence[int]):
        self.popular = [int(i) for i in popular]

    def retrieve(self, history: Sequence[int], exclude: Collection[int], k: int) -> list[int]:
        skip = {*history, *exclude}
        return [i for i in self.popular if i not in skip][:k]


class EmbeddingNegRanker:
    """Implements recsys.protocols.PreferenceRanker: neg = max cosine similarity to the dislikes.

    ``vectors`` (n_items + 1, d) are L2-normalised item embeddings (``SASRecRetriever.item_vectors()``),
    ``index`` maps raw id -> row. Unknown movies score 0; pos is always None.
    """

    sides_independent = True  # neg reads the dislikes only (recsys.memo)

    def __init__(self, vectors: np.ndarray, index: Mapping[int, int]):
        self.vectors, self.index = vectors, index

    def _rows(self, items: Sequence[int]) -> np.ndarray:
        rows = [self.index.get(int(i), 0) for i in items]
        v = self.vectors[rows].copy()
        v[[r == 0 for r in rows]] = 0.0  # row 0 is padding: no similarity to anything
        return v

    def score(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> Scores:
        if not dislikes or not candidates:
            return None, None
        sim = self._rows(candidates) @ self._rows(dislikes).T  # (n_candidates, n_dislikes)
        return None, sim.max(axis=1).astype(np.float32)


class RatingNegRanker:
    """Implements PreferenceRanker with the catalog's mean rating: neg = -rating (low-rated = more disliked).

    The non-LLM baseline for what the LLM prompts show next to each candidate (letters-v5): the LLM's
    negative model has to beat the number it reads. Movies without a rating score as the mean. pos is None.
    """

    def __init__(self, ratings: Mapping[int, float]):
        self.ratings = dict(ratings)
        self.mean = float(np.mean(list(self.ratings.values()))) if self.ratings else 0.0

    def score(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> Scores:
        if not dislikes or not candidates:
            return None, None
        return None, np.array([-self.ratings.get(int(c), self.mean) for c in candidates], dtype=np.float32)


class OracleNegRanker:
    """Implements PreferenceRanker with the person's own ratings: neg = 1 for a movie they would 👎.

    Not a model: the upper bound of what any negative ranker can buy through the fusion at a given α.
    """

    def __init__(self, heldout: Mapping[int, float], dislike_max: float = DISLIKE_MAX):
        self.heldout, self.dislike_max = heldout, dislike_max

    def score(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> Scores:
        if not dislikes or not candidates:
            return None, None
        return None, np.array([float(self.heldout.get(int(c), np.inf) <= self.dislike_max) for c in candidates],
                              dtype=np.float32)


class GenreOracleNegRanker:
    """Implements PreferenceRanker knowing the genre the person burst-disliked: neg = 1 for that genre.

    Not a model: the most a genre-aware negative ranker can buy through the fusion at a given α.
    """

    def __init__(self, genres: Mapping[int, Sequence[str]], genre: str | None):
        self.genres, self.genre = genres, genre

    def score(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> Scores:
        if not dislikes or not candidates or self.genre is None:
            return None, None
        return None, np.array([float(self.genre in self.genres.get(int(c), ())) for c in candidates], dtype=np.float32)


class SidesRanker:
    """A PreferenceRanker with a side switched off: that side gets no history and returns None."""

    def __init__(self, ranker: PreferenceRanker, pos: bool = True, neg: bool = True):
        self.ranker, self.pos, self.neg = ranker, pos, neg

    def score(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> Scores:
        pos, neg = self.ranker.score(likes if self.pos else (), dislikes if self.neg else (), candidates)
        return (pos if self.pos else None), (neg if self.neg else None)

    def prefetch(self, queries: Sequence[tuple], batch_size: int = 32) -> None:
        prefetch(self.ranker, [(lk if self.pos else (), dk if self.neg else (), c) for lk, dk, c in queries], batch_size)


class CombinedRanker:
    """pos from one ranker, neg from another (e.g. the LLM's pos with the embedding baseline's neg)."""

    def __init__(self, pos: PreferenceRanker, neg: PreferenceRanker):
        self.pos_ranker, self.neg_ranker = pos, neg

    def score(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> Scores:
        pos = self.pos_ranker.score(likes, (), candidates)[0] if likes else None
        neg = self.neg_ranker.score((), dislikes, candidates)[1] if dislikes else None
        return pos, neg

    def prefetch(self, queries: Sequence[tuple], batch_size: int = 32) -> None:
        prefetch(self.pos_ranker, [(lk, (), c) for lk, _, c in queries if lk], batch_size)
        prefetch(self.neg_ranker, [((), dk, c) for _, dk, c in queries if dk], batch_size)


class BlendedNegRanker:
    """pos from ``ranker``; neg the mean of ``ranker``'s and ``other``'s neg, each standardised within the list
    (either alone where the other has none). A fixed equal-weight blend: nothing is fitted."""

    def __init__(self, ranker: PreferenceRanker, other: PreferenceRanker):
        self.ranker, self.other = ranker, other

    def score(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]) -> Scores:
        pos, neg = self.ranker.score(likes, dislikes, candidates)
        other = self.other.score((), dislikes, candidates)[1] if dislikes else None
        parts = [standardised(n) for n in (neg, other) if n is not None]
        return pos, (np.mean(parts, axis=0).astype(np.float32) if parts else None)

    def prefetch(self, queries: Sequence[tuple], batch_size: int = 32) -> None:
        prefetch(self.ranker, queries, batch_size)
