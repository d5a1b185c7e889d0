import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from recsys.metrics import hr_at_k, mrr_at_k, ndcg_at_k, summarize, target_rank


def test_target_rank_counts_ties_against_the_target():
    scores = np.array([[0.1, 0.9, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0], [0.0, -np.inf, 3.0, 2.0]])
    assert target_rank(scores, np.array([2, 0, 0])).tolist() == [2, 3, 2]


def test_hand_computed_values():
    ranks = np.array([0, 1, 4, 9, 20])
    assert ndcg_at_k(ranks, 5) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert hr_at_k(ranks, 10) == pytest.approx(4 / 5)
    assert mrr_at_k(ranks, 10) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10) / 5)
    assert summarize(ranks)["HR@15"] == pytest.approx(4 / 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ndcg_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(50, 30))
    targets = rng.integers(0, 30, size=50)
    relevance = np.zeros_like(scores)
    relevance[np.arange(50), targets] = 1
    ours = ndcg_at_k(target_rank(scores, targets), 10)
    assert ours == pytest.approx(ndcg_score(relevance, scores, k=10))
