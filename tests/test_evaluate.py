import numpy as np

from recsys.data import Split
from recsys.evaluate import holdout, protocol_ranks


def _split():
    seqs = [np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8, 9])]
    return Split("t", np.arange(201), np.arange(2), seqs, [np.ones(len(s)) for s in seqs])


def test_sampled_negatives_are_unseen_and_fixed():
    sp = _split()
    a, b = holdout(sp, seed=7), holdout(sp, seed=7)
    assert np.array_equal(a.negatives, b.negatives) and a.negatives.shape == (2, 100)
    for u, seq in enumerate(sp.sequences):
        assert not set(a.negatives[u]) & set(seq.tolist())
    assert a.targets.tolist() == [4, 9] and a.histories[1].tolist() == [5, 6, 7, 8]


def test_full_ranking_masks_history_and_sampled_uses_only_negatives():
    sp = _split()
    ts = holdout(sp, seed=0)
    scores = np.tile(np.arange(201, dtype=np.float64), (2, 1))  # item id = score: 200 is best
    scores[:, 0] = -np.inf
    scores[0, 1:4] = 1e9  # seen items score high but are masked in full ranking
    ranks = protocol_ranks(scores, ts)
    assert ranks["full"].tolist() == [200 - 4, 200 - 9]  # the seen items scored 1e9 are masked, not counted
    expected = [(ts.negatives[u] > ts.targets[u]).sum() for u in range(2)]
    assert ranks["sampled-100"].tolist() == expected
