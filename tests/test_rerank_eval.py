import numpy as np
import pytest

from recsys.data import Split
from recsys.evaluate import holdout
from recsys.rerank_eval import preferences, rank_rows, reference_orders, reranked_rank, user_cases


def _split():
    rng = np.random.default_rng(0)
    seqs = [rng.permutation(np.arange(1, 61))[:12] for _ in range(30)]
    rates = [rng.choice([1.0, 2.0, 4.0, 5.0], size=12) for _ in range(30)]
    return Split("t", np.arange(61) + 100, np.arange(30), seqs, rates)  # raw id = index + 100


def test_preferences_use_ratings_and_exclude_the_test_item():
    sp = _split()
    likes, dislikes = preferences(sp, 0)
    hist = {int(sp.item_ids[i]): r for i, r in zip(sp.sequences[0][:-1], sp.ratings[0][:-1], strict=True)}
    assert all(hist[i] >= 4 for i in likes) and all(hist[i] <= 2 for i in dislikes)
    assert int(sp.item_ids[sp.sequences[0][-1]]) not in likes + dislikes
    assert len(likes) <= 10 and len(dislikes) <= 5


class Oracle:
    """Knows each user's target: gives it the top positive score and the lowest negative score."""

    def __init__(self, targets):
        self.targets = set(targets)

    def score(self, likes, dislikes, candidates):
        pos = np.array([1.0 if c in self.targets else 0.0 for c in candidates], dtype=np.float32)
        return pos, -pos


def test_oracle_reranker_lifts_every_valid_target_to_the_top_and_leaves_the_rest():
    sp = _split()
    ho = holdout(sp, 0)
    scores = np.random.default_rng(1).normal(size=(30, 61)).astype(np.float32)
    scores[:, 0] = -np.inf
    for protocol in ("full", "sampled-100"):
        cases = user_cases(sp, scores, ho, protocol)
        # one oracle per user: a global target set would also boost other users' targets
        scored = [Oracle([int(sp.item_ids[ho.targets[u]])]).score(c.likes, c.dislikes, c.candidates)
                  for u, c in enumerate(cases)]
        rows = rank_rows(cases, scored, None)
        valid = np.array([c.target_pos >= 0 for c in cases])
        assert valid.any() and (~valid).any() if protocol == "full" else True
        assert np.all(rows["fine-tuned pos alone"][valid] == 0)
        assert np.all(rows["retrieval + pos + neg (α=0.4)"][~valid] == rows["SASRec"][~valid])
        assert np.all(rows["retrieval + pos + neg (α=0.4)"] <= rows["SASRec"])


def test_reranked_rank_outside_top20_keeps_base_rank():
    from recsys.rerank_eval import UserCase

    case = UserCase([], [], list(range(20)), -1, 57)
    assert reranked_rank(case, np.arange(20)[::-1]) == 57
    inside = UserCase([], [], list(range(20)), 3, 3)
    assert reranked_rank(inside, np.array([3, 0, 1, 2] + list(range(4, 20)))) == 0


def test_reference_orders_reorder_only_the_top_20():
    sp = _split()
    ho = holdout(sp, 0)
    scores = np.random.default_rng(2).normal(size=(30, 61)).astype(np.float32)
    scores[:, 0] = -np.inf
    cases = user_cases(sp, scores, ho, "full")
    refs = reference_orders(sp, 0)
    demote_all = [(None, np.arange(len(c.candidates), dtype=np.float32)) for c in cases]  # neg: later = worse
    rows = rank_rows(cases, None, None, refs, {"toy-neg": demote_all})
    assert "fine-tuned pos alone" not in rows  # no LLM rows without LLM scores
    # a negative scorer that dislikes SASRec's bottom candidates most never lowers a valid target's rank
    assert np.all(rows["retrieval + toy-neg (α=0.3)"] <= rows["SASRec"])
    for name in refs:
        valid = np.array([c.target_pos >= 0 for c in cases])
        assert np.all(rows[name][~valid] == rows["SASRec"][~valid])
        assert np.all(rows[name][valid] < 20)
    order = refs["most-rated first"](cases[0])
    assert sorted(order.tolist()) == list(range(len(cases[0].candidates)))


def test_score_cases_calls_the_ranker_only_where_reordering_can_matter():
    from recsys.rerank_eval import UserCase, score_cases

    class Counting:
        def __init__(self):
            self.seen = []

        def score(self, likes, dislikes, candidates):
            self.seen.append(tuple(candidates))
            return np.arange(len(candidates), dtype=np.float32), None

    cases = [UserCase([1], [], list(range(20)), 4, 4), UserCase([1], [], list(range(20, 40)), -1, 33),
             UserCase([1], [], list(range(40, 60)), 0, 0)]
    ranker = Counting()
    scored = score_cases(ranker, cases, "test")
    assert ranker.seen == [tuple(range(20)), tuple(range(40, 60))]
    assert scored[1] == (None, None) and scored[0][0] is not None and scored[2][0] is not None
    rows = rank_rows(cases, scored, None)
    assert rows["retrieval + pos (α=0.6)"][1] == 33 and rows["fine-tuned pos alone"][0] == 15  # 15 higher scores


def test_markdown_with_full_ranking_only():
    from recsys.rerank_eval import markdown

    cell = {"NDCG@10": 0.1}
    result = {"full": {"all": {"SASRec": cell}, "valid": {"SASRec": cell}, "n_users": 5, "n_valid": 2}}
    table = markdown({42: result}, "toy", cols=("NDCG@10",))
    assert "n = 5 full" in table and "s-100" not in table and "| SASRec | 0.1000 |" in table


def test_runs_of_different_seeds_pool_into_one_table(tmp_path):
    import json

    from recsys.rerank_eval import markdown, merge_results

    def result(ndcg: float) -> dict:
        cell = {"NDCG@10": ndcg}
        return {"full": {"all": {"SASRec": cell}, "valid": {"SASRec": cell}, "n_users": 5, "n_valid": 2}}

    (tmp_path / "a.json").write_text(json.dumps({"42": result(0.1)}))
    (tmp_path / "b.json").write_text(json.dumps({"43": result(0.2), "44": result(0.3)}))
    merged = merge_results([tmp_path / "a.json", tmp_path / "b.json"])
    assert sorted(merged) == [42, 43, 44]
    assert "seeds [42, 43, 44]" in markdown(merged, "toy", cols=("NDCG@10",))
    assert "| SASRec | 0.2000 ± 0.0816 |" in markdown(merged, "toy", cols=("NDCG@10",))
    merged[43]["full"]["n_valid"] = 3
    assert "n = 2/3/2 full" in markdown(merged, "toy", "valid", cols=("NDCG@10",))
    with pytest.raises(SystemExit, match="twice"):
        merge_results([tmp_path / "a.json", tmp_path / "a.json"])
    other = result(0.1)
    other["full"]["all"]["retrieval + pos (α=0.6)"] = {"NDCG@10": 0.1}
    (tmp_path / "c.json").write_text(json.dumps({"45": other}))
    with pytest.raises(SystemExit, match="different rows"):
        merge_results([tmp_path / "a.json", tmp_path / "c.json"])
