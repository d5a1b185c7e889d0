"""recsys/clear_case.py's margins on a stand-in ranker: their signs, and the prompt order restored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys import clear_case


@dataclass(frozen=True)
class Config:
    seed: int = 0


class StandIn:
    """Scores each candidate by whether it is a horror film, more sharply in later prompt orders (seeds)."""

    def __init__(self, pos_sign: float, neg_sign: float):
        self.config, self.signs, self.seen = Config(), (pos_sign, neg_sign), []

    def score(self, likes, dislikes, candidates):
        self.seen.append(self.config.seed)
        horror = np.array([c in clear_case.HORROR_IDS for c in candidates], dtype=float) * (1 + self.config.seed)
        return self.signs[0] * horror, self.signs[1] * horror

    def score_zero_shot(self, likes, dislikes, candidates):
        return -self.score(likes, dislikes, candidates)[0], -self.score(likes, dislikes, candidates)[1]


def test_margins_point_the_way_each_adapter_should_lean():
    catalog = clear_case.catalog()
    assert len(catalog) == 30 and {catalog[i].title for i in clear_case.LIKED} <= set(clear_case.LIGHT)
    assert all(catalog[i].title in clear_case.HORROR for i in clear_case.DISLIKED)
    right = StandIn(pos_sign=-1.0, neg_sign=1.0)  # pos prefers the light films, neg finds horror dislikable
    assert clear_case.margins(right) == clear_case.Margins(neg=1.0, pos=1.0)
    assert clear_case.margins(right, zero_shot=True) == clear_case.Margins(neg=-1.0, pos=-1.0)
    assert clear_case.margins(right, seed=3) == clear_case.Margins(neg=4.0, pos=4.0)
    assert right.seen[-1] == 3 and right.config.seed == 0  # another order asked for, then the ranker's own restored


def test_the_summary_is_the_mean_and_worst_order():
    right = StandIn(pos_sign=-1.0, neg_sign=1.0)
    assert clear_case.summary(right, orders=[0, 1, 2]) == {"orders": 3, "neg_mean": 2.0, "neg_min": 1.0,
                                                             "pos_mean": 2.0, "pos_min": 1.0}
    wrong = StandIn(pos_sign=1.0, neg_sign=-1.0)
    assert clear_case.summary(wrong, orders=[0, 1, 2])["neg_mean"] == -2.0
    assert right.seen == [0, 1, 2] and clear_case.summary(right)["orders"] == len(clear_case.ORDERS)


def test_check_horror_records_the_summary_in_both_adapters_metadata(tmp_path):
    """scripts/check_horror.py --record: a pair put together from two trainings gets the margins the trainer
    writes for the pairs it trains, each metadata file keeping its own facts."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "check_horror", Path(__file__).resolve().parents[1] / "scripts" / "check_horror.py")
    check_horror = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_horror)
    for task, template in (("pos", "letters-v7"), ("neg", "letters-v5")):
        (tmp_path / task).mkdir()
        (tmp_path / task / "metadata.json").write_text(json.dumps({"task": task, "template_version": template}))
    check_horror.record(tmp_path, StandIn(pos_sign=-1.0, neg_sign=1.0))
    for task, template in (("pos", "letters-v7"), ("neg", "letters-v5")):
        meta = json.loads((tmp_path / task / "metadata.json").read_text())
        assert meta["task"] == task and meta["template_version"] == template
        assert meta["clear_case"]["adapters"] == {"orders": 8, "neg_mean": 4.5, "neg_min": 1.0, "pos_mean": 4.5,
                                                  "pos_min": 1.0}
        assert meta["clear_case"]["zero_shot"]["neg_mean"] == -4.5
    given = {"adapters": {"orders": 8, "neg_mean": 1.0}, "zero_shot": {"orders": 8, "neg_mean": -1.0}}
    unused = StandIn(pos_sign=-1.0, neg_sign=1.0)
    check_horror.record(tmp_path, unused, given)  # the summaries the script already printed: not computed again
    assert unused.seen == [] and json.loads((tmp_path / "neg" / "metadata.json").read_text())["clear_case"] == given
