"""scripts/eval_adapters.py: two adapter pairs compared per validation query (--rho-out / --paired-with)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from recsys.finetune import Query


@pytest.fixture(scope="module")
def eval_adapters():
    spec = importlib.util.spec_from_file_location(
        "eval_adapters", Path(__file__).resolve().parents[1] / "scripts" / "eval_adapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(name, keys, rho):
    return {"adapters": name, "keys": keys, "rho": rho}


def test_paired_rows_pair_the_same_queries_and_skip_undefined_correlations(eval_adapters):
    keys = {"pos": ["a", "b", "c", "d"], "neg": ["e", "f"]}
    new = record("new", keys, {"pos": [0.5, 0.3, None, 0.1], "neg": [0.2, 0.4]})
    old = record("old", keys, {"pos": [0.2, 0.3, 0.4, 0.0], "neg": [0.2, 0.4]})
    header, rule, pos, neg = eval_adapters.paired_rows(new, old)
    assert header.startswith("| task | queries | new | old |") and rule.startswith("|---")
    # pos: the pairs (0.5, 0.2), (0.3, 0.3), (0.1, 0.0): differences 0.3, 0, 0.1 (query "c" has no rho in "new")
    cells = [c.strip() for c in pos.strip("|").split("|")]
    assert cells[:4] == ["pos", "3", "0.300", "0.167"]
    # mean 0.133, Student-t with 2 degrees of freedom: 4.303 × sd 0.153 / √3 = ±0.380
    assert cells[4] == "+0.133 [-0.246, +0.513]"
    # identical correlations: a difference of exactly 0
    assert [c.strip() for c in neg.strip("|").split("|")][4] == "+0.000 [+0.000, +0.000]"


def test_paired_rows_of_one_task_runs(eval_adapters):
    """--task neg: a run scores the "neg" queries only, and its record holds that task alone."""
    new = record("new", {"neg": ["e", "f"]}, {"neg": [0.3, 0.5]})
    old = record("old", {"neg": ["e", "f"]}, {"neg": [0.2, 0.4]})
    header, rule, neg = eval_adapters.paired_rows(new, old)
    assert [c.strip() for c in neg.strip("|").split("|")][:2] == ["neg", "2"]
    assert [c.strip() for c in neg.strip("|").split("|")][4] == "+0.100 [+0.100, +0.100]"
    # a record that still lists the unscored task's (empty) keys, as files written before the fix do: paired on "neg"
    older = record("new", {"pos": [], "neg": ["e", "f"]}, {"neg": [0.3, 0.5]})
    assert eval_adapters.paired_rows(older, old)[2] == neg


def test_paired_rows_refuse_runs_of_different_queries(eval_adapters):
    new = record("new", {"pos": ["a", "b"]}, {"pos": [0.1, 0.2]})
    old = record("old", {"pos": ["a", "x"]}, {"pos": [0.1, 0.2]})
    with pytest.raises(ValueError, match="different validation queries"):
        eval_adapters.paired_rows(new, old)


def test_query_key_names_task_history_candidates_and_target(eval_adapters):
    q = Query("neg", (5, 6), 1, (3.0, 1.0, 4.0))
    key = eval_adapters.query_key(q, [10, 11, 12])
    assert key == eval_adapters.query_key(Query("neg", (5, 6), 1, (3.0, 1.0, 4.0)), [10, 11, 12])
    assert key != eval_adapters.query_key(q, [11, 10, 12])  # another candidate order: another query
    assert key != eval_adapters.query_key(Query("pos", (5, 6), 1, (3.0, 1.0, 4.0)), [10, 11, 12])
    assert key != eval_adapters.query_key(Query("neg", (5, 6), 2, (3.0, 1.0, 4.0)), [10, 11, 12])


def test_metrics_share_tied_places(eval_adapters):
    """A target alone at the top counts fully; tied with others it gets the mean of the places they share."""
    import numpy as np

    scores = np.array([[3.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0], [0.0, 2.0, 1.0, 0.0]])
    m = eval_adapters.metrics(scores, np.array([0, 1, 0]))
    # places: [0]; [0, 1, 2] (three tied at the top); [2, 3] (tied with candidate 3 below two others)
    assert m["top1"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["mrr"] == pytest.approx((1 + (1 + 1 / 2 + 1 / 3) / 3 + (1 / 3 + 1 / 4) / 2) / 3)
