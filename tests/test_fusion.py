import numpy as np
import pytest

from recsys.fusion import fuse, fused_order, ranks_from_scores, reciprocal_rank_fusion, standardised


def test_ranks_from_scores_average_ties():
    assert ranks_from_scores(np.array([0.1, 0.9, 0.5, 0.5])).tolist() == [4.0, 1.0, 2.5, 2.5]


def test_paper_equation_by_hand():
    base, pos, neg = np.array([1, 2, 3]), np.array([3, 1, 2]), np.array([1, 3, 2])
    got = fuse(base, pos, neg, alpha=0.6)
    want = [0.6 / 1 + 0.4 * (1 / 3 - 1 / 1), 0.6 / 2 + 0.4 * (1 / 1 - 1 / 3), 0.6 / 3 + 0.4 * (1 / 2 - 1 / 2)]
    assert got == pytest.approx(want)
    assert fused_order(got, base).tolist() == [1, 0, 2]  # 0.567 > 0.333 > 0.2


def test_missing_sides_contribute_nothing_and_alpha_one_is_the_retriever():
    base = np.array([1, 2, 3])
    assert fuse(base, None, None, 0.6) == pytest.approx(0.6 / base)
    assert fused_order(fuse(base, np.array([3, 2, 1]), np.array([1, 2, 3]), 1.0), base).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        fuse(base, None, None, 1.5)


def test_rrf():
    assert reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]]) == [1, 3, 2, 4]


def test_standardised_scores_are_z_scores_within_the_list_and_zero_when_flat():
    z = standardised([1.0, 2.0, 6.0])
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0) and np.argsort(z).tolist() == [0, 1, 2]
    assert standardised([3.0, 3.0]).tolist() == [0.0, 0.0]
