import numpy as np

from recsys.pipeline import PipelineConfig, Recommender
from recsys.text import TextRetriever
from tests.fakes import FakeEncoder, FakeRanker, FakeRetriever

HORROR = {1, 2, 3, 4, 5, 23}


def _rec(catalog, ranker=None, text=None):
    return Recommender(catalog, FakeRetriever(catalog), ranker, text, PipelineConfig(n_candidates=20, k=10))


def test_never_shows_liked_disliked_or_excluded(toy_catalog):
    rec = _rec(toy_catalog, FakeRanker(toy_catalog)).recommend(likes=[12, 11], dislikes=[3], exclude=[6, 7])
    assert len(rec.items) == 10 and not {12, 11, 3, 6, 7} & set(rec.ids())
    assert [it.rank for it in rec.items] == list(range(1, 11))
    assert all(it.pos_rank is not None and it.neg_rank is not None for it in rec.items)


def test_negative_side_pushes_disliked_genre_down(toy_catalog):
    rec = _rec(toy_catalog, FakeRanker(toy_catalog))
    before = rec.recommend(likes=[17], dislikes=[])
    after = rec.recommend(likes=[17], dislikes=[3, 4], alpha=0.3)
    pos = {i: r for r, i in enumerate(before.ids())}
    moved = [i for i in after.ids() if i in HORROR]
    assert all(after.ids().index(i) >= pos.get(i, -1) for i in moved)
    assert sum(i in HORROR for i in after.ids()) < sum(i in HORROR for i in before.ids())


def test_retriever_only_and_constraints(toy_catalog):
    rec = _rec(toy_catalog, FakeRanker(toy_catalog))
    quick = rec.recommend(likes=[12], dislikes=[3], use_llm=False)
    assert not quick.llm_used and [it.base_rank for it in quick.items] == list(range(1, 11))
    no_horror = rec.recommend(likes=[12], allowed=lambda i: i not in HORROR)
    assert not HORROR & set(no_horror.ids())


class _Broken:
    def score(self, likes, dislikes, candidates):
        raise RuntimeError("adapter weights missing")


def test_ranker_failure_degrades_to_retriever(toy_catalog):
    rec = _rec(toy_catalog, _Broken()).recommend(likes=[12], dislikes=[3])
    assert rec.degraded and not rec.llm_used and "RuntimeError" in rec.note
    assert [it.base_rank for it in rec.items] == list(range(1, 11))


def test_free_text_query_without_likes_uses_text_retrieval(toy_catalog):
    text = TextRetriever(FakeEncoder(), toy_catalog)
    rec = _rec(toy_catalog, FakeRanker(toy_catalog), text).recommend(likes=[], query="Comedy Romance")
    assert rec.ids()[0] in {18, 22}  # "Notting Hill" / "Amelie" are the Comedy|Romance movies
    scores = text.scores("Comedy Romance")
    assert scores.shape == (len(toy_catalog),) and np.all(scores <= 1.0001)
