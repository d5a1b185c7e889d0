"""SASRec and GRU4Rec train for real on a tiny split whose next item is predictable (RecBole-style smoke)."""

import numpy as np
import pytest

from recsys.baselines import GRU4Rec, GRU4RecConfig, MostPopular
from recsys.data import Split
from recsys.evaluate import evaluate_scores
from recsys.sasrec import SASRec, SASRecConfig, SASRecRetriever, popularity_order, train_sasrec
from recsys.training import TrainConfig, score_all, train_model

N_ITEMS = 30


@pytest.fixture(scope="module")
def cyclic_split() -> Split:
    """Each person walks the item cycle 1 -> 2 -> ... -> 30 -> 1 from a random start: next item = current + 1."""
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(120):
        start, length = rng.integers(0, N_ITEMS), rng.integers(8, 16)
        seqs.append(((start + np.arange(length)) % N_ITEMS + 1).astype(np.int64))
    return Split("cyclic", np.arange(N_ITEMS + 1), np.arange(len(seqs)), seqs, [np.full(len(s), 4.0) for s in seqs])


TINY = TrainConfig(max_len=16, lr=5e-3, batch_size=32, epochs=30, eval_every=5, patience=2, seed=0, device="cpu")


def test_sasrec_learns_the_cycle(cyclic_split):
    model, stats = train_sasrec(cyclic_split, SASRecConfig(hidden=32, heads=2, max_len=16, dropout=0.0), TINY)
    metrics = evaluate_scores(lambda h: score_all(model, h, 16), cyclic_split)
    assert stats["best_val_ndcg10"] > 0.8
    assert metrics["full"]["HR@5"] > 0.9  # random would be ~5/30


def test_gru4rec_learns_the_cycle(cyclic_split):
    model = GRU4Rec(N_ITEMS, GRU4RecConfig(hidden=32, dropout=0.0))
    train_model(model, cyclic_split, TINY)
    assert evaluate_scores(lambda h: score_all(model, h, 16), cyclic_split)["full"]["HR@5"] > 0.9


def test_most_popular_is_flat_and_weak(cyclic_split):
    pop = MostPopular(cyclic_split)
    scores = pop.score_all([np.array([1]), np.array([5])])
    assert np.array_equal(scores[0], scores[1]) and scores[0, 0] == -np.inf
    assert evaluate_scores(pop.score_all, cyclic_split)["full"]["HR@5"] < 0.5


def test_retriever_masks_seen_and_excluded_and_round_trips(cyclic_split, tmp_path):
    model, _ = train_sasrec(cyclic_split, SASRecConfig(hidden=16, heads=1, max_len=16, dropout=0.0),
                            TrainConfig(max_len=16, epochs=2, eval_every=1, device="cpu"))
    raw_ids = np.arange(N_ITEMS + 1) * 10  # raw catalog ids differ from indices
    ret = SASRecRetriever(model, raw_ids, popularity_order(cyclic_split), {"dataset": "cyclic"})
    out = ret.retrieve([10, 20, 30], exclude=[40, 999], k=5)
    assert len(out) == 5 and not {10, 20, 30, 40} & set(out) and all(i % 10 == 0 and i > 0 for i in out)
    ret.save(tmp_path / "m")
    again = SASRecRetriever.load(tmp_path / "m")
    assert again.retrieve([10, 20, 30], [40], 5) == out
    assert again.meta["dataset"] == "cyclic"


def test_retriever_cold_start_is_popularity(cyclic_split):
    model = SASRec(N_ITEMS, SASRecConfig(hidden=16, heads=1, max_len=16))
    pop = popularity_order(cyclic_split)
    ret = SASRecRetriever(model, np.arange(N_ITEMS + 1), pop)
    assert ret.retrieve([], [], 3) == [int(i) for i in pop[:3]]
    assert ret.retrieve([12345], [int(pop[0])], 2) == [int(i) for i in pop[1:3]]  # unknown ids are ignored
