import json

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


def test_user_cases_show_as_many_liked_and_disliked_movies_as_asked():
    sp = _split()
    ho = holdout(sp, 0)
    scores = np.random.default_rng(1).normal(size=(30, 61)).astype(np.float32)
    default, short = user_cases(sp, scores, ho, "full"), user_cases(sp, scores, ho, "full", history=(2, 1))
    assert any(len(c.likes) > 2 for c in default) and any(len(c.dislikes) > 1 for c in default)
    for d, c in zip(default, short, strict=True):  # the best-rated first: a shorter history is a prefix
        assert c.likes == d.likes[:2] and c.dislikes == d.dislikes[:1] and c.candidates == d.candidates


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
    averaged = result(0.2)
    averaged["full"]["orders"] = 4  # LLM scores over 4 candidate orders: not pooled with 1-order runs
    (tmp_path / "d.json").write_text(json.dumps({"46": averaged}))
    with pytest.raises(SystemExit, match="candidate orders"):
        merge_results([tmp_path / "a.json", tmp_path / "d.json"])
    averaged["full"]["orders"] = 1  # a run without the count is a 1-order run
    (tmp_path / "d.json").write_text(json.dumps({"46": averaged}))
    assert sorted(merge_results([tmp_path / "a.json", tmp_path / "d.json"])) == [42, 46]
    averaged["full"]["history"] = [20, 10]  # prompts with more liked / disliked movies: not pooled either
    (tmp_path / "d.json").write_text(json.dumps({"46": averaged}))
    with pytest.raises(SystemExit, match="liked/disliked"):
        merge_results([tmp_path / "a.json", tmp_path / "d.json"])
    averaged["full"]["history"] = [10, 5]  # the default, as a run without it
    (tmp_path / "d.json").write_text(json.dumps({"46": averaged}))
    assert sorted(merge_results([tmp_path / "a.json", tmp_path / "d.json"])) == [42, 46]


def _valid_cases(n: int, target_pos: int = 5) -> list:
    from recsys.rerank_eval import UserCase

    return [UserCase([1], [], list(range(100 * u, 100 * u + 20)), target_pos, target_pos,
                     tuple(float(20 - i) for i in range(20))) for u in range(n)]


def _to_top(c, s):  # moves the target to the front, the rest keep SASRec's order
    return np.array([c.target_pos] + [i for i in range(20) if i != c.target_pos])


def _keep(c, s):
    return np.arange(20)


def test_cross_fit_picks_what_helps_the_other_users_and_keeps_the_retriever_on_ties():
    from recsys.rerank_eval import cross_fit

    cases = _valid_cases(40)
    scored = [(None, None)] * len(cases)
    ranks, chosen = cross_fit(cases, scored, {"keep": _keep, "oracle": _to_top}, seed=0)
    assert chosen == ["oracle", "oracle"] and np.all(ranks == 0)
    ranks, chosen = cross_fit(cases, scored, {"keep": _keep, "same": _keep}, seed=0)
    assert chosen == ["keep", "keep"] and np.all(ranks == 5)


def test_guarded_cross_fit_leaves_the_retriever_only_on_significant_evidence():
    from recsys.rerank_eval import cross_fit

    cases = _valid_cases(40)
    scored = [(None, None)] * len(cases)
    ranks, chosen = cross_fit(cases, scored, {"keep": _keep, "oracle": _to_top}, seed=0, guard=0.05)
    assert chosen == ["oracle", "oracle"] and np.all(ranks == 0)  # every user gains: clear evidence
    lucky = {id(c) for c in cases[::10]}  # 4 of 40 users gain a lot, the other 36 lose a little

    def mostly_worse(c, s):  # the lucky: target first; the rest: target from 6th to 8th
        return _to_top(c, s) if id(c) in lucky else np.array([0, 1, 2, 3, 4, 6, 7, 5, *range(8, 20)])

    plain, chosen_plain = cross_fit(cases, scored, {"keep": _keep, "lucky": mostly_worse}, seed=0)
    guarded, chosen = cross_fit(cases, scored, {"keep": _keep, "lucky": mostly_worse}, seed=0, guard=0.05)
    assert "lucky" in chosen_plain  # a higher mean on the other half: the plain fit takes it
    assert all(c.startswith("keep") for c in chosen) and any("guard: lucky not significant" in c for c in chosen)
    assert np.all(guarded == 5)  # SASRec's order everywhere


def test_beats_incumbent_needs_a_significant_gain_and_pays_for_each_member_tried():
    from recsys.rerank_eval import beats_incumbent

    rng = np.random.default_rng(0)
    gain = rng.normal(0.02, 0.1, size=400)  # t ≈ 3.3: significant alone (needs 1.65), not after 100,000 tries (4.97)
    assert beats_incumbent(gain, 0.05, 1) and not beats_incumbent(gain, 0.05, 100_000)
    assert not beats_incumbent(rng.normal(0.0, 0.1, size=400) - 0.01)
    assert beats_incumbent(np.full(5, 0.1)) and not beats_incumbent(np.full(5, 0.0)) and not beats_incumbent([0.3])
    with pytest.raises(ValueError):
        beats_incumbent(gain, 0.0)


def test_cross_fit_never_chooses_on_the_users_it_is_applied_to():
    from recsys.rerank_eval import N_FOLDS, cross_fit

    cases = _valid_cases(40)
    scored = [(None, None)] * len(cases)
    fold = np.random.default_rng(3).permutation(len(cases)) % N_FOLDS  # the folds cross_fit draws with seed 3
    in_fold0 = {id(c) for c, f in zip(cases, fold, strict=True) if f == 0}

    def helps_fold0_only(c, s):  # lifts fold 0's targets to the top, sinks fold 1's to the bottom
        return _to_top(c, s) if id(c) in in_fold0 else np.array([i for i in range(20) if i != c.target_pos]
                                                                  + [c.target_pos])

    ranks, chosen = cross_fit(cases, scored, {"keep": _keep, "cheat": helps_fold0_only}, seed=3)
    # fold 0 is ranked by what fold 1 prefers (keep) and vice versa: an in-sample fit would give fold 0 rank 0
    assert chosen == ["keep", "cheat"]
    assert np.all(ranks[fold == 0] == 5) and np.all(ranks[fold == 1] == 19)


def test_score_fusion_weights_move_from_the_retriever_to_the_model():
    from recsys.rerank_eval import score_fusion

    case = _valid_cases(1)[0]
    pos = np.zeros(20)
    pos[7] = 5.0
    neg = np.zeros(20)
    neg[0] = 5.0
    assert score_fusion(case, (pos, neg), 0.0, 0.0).tolist() == list(range(20))
    assert score_fusion(case, (pos, neg), 10.0, 0.0)[0] == 7
    assert score_fusion(case, (pos, neg), 0.0, 10.0)[-1] == 0
    assert score_fusion(case, (None, None), 10.0, 10.0).tolist() == list(range(20))


def test_scoring_settings_compare_the_same_however_they_were_read():
    """``Scoring`` from the command line (lists), from a JSON result (lists) or from a dump (numpy arrays) is one
    value; a record without a setting means its default (runs from before the setting existed)."""
    from recsys.rerank_eval import HISTORY, Scoring

    made = Scoring(np.int64(4), [20, 10])
    assert made == Scoring(4, (20, 10)) and made.history == (20, 10) and isinstance(made.orders, int)
    assert Scoring.recorded(json.loads(json.dumps(made.record()))) == made
    assert Scoring.recorded({k: np.array(v) for k, v in made.record().items()}) == made
    assert Scoring.recorded({}) == Scoring() == Scoring(1, HISTORY) != made
    assert Scoring.recorded({"orders": 4}) == Scoring(orders=4)
    config = made.ranker_config()
    assert (config.orders, config.max_likes, config.max_dislikes) == (4, 20, 10)


def test_score_dump_round_trips_and_is_reused_only_for_the_same_cases(tmp_path):
    from dataclasses import replace

    from recsys.rerank_eval import Scoring, UserCase, load_scores, reused_scores, save_scores

    cases = _valid_cases(3) + [UserCase([1], [], list(range(900, 920)), -1, 40, tuple(range(20)))]
    rng = np.random.default_rng(0)
    scored = [(rng.normal(size=20), rng.normal(size=20)) for _ in range(3)] + [(None, None)]
    path = tmp_path / "s.npz"
    save_scores(path, cases, {"tuned": scored, "zero": None})
    back, again = load_scores(path)
    assert [(c.candidates, c.target_pos, c.base_rank) for c in back] == \
        [(c.candidates, c.target_pos, c.base_rank) for c in cases]
    assert back[0].base_scores == cases[0].base_scores
    assert np.allclose(again[1][0], scored[1][0]) and again[3] == (None, None)
    assert reused_scores(path, cases, "tuned") is not None
    assert reused_scores(path, cases, "zero") is None  # never scored by that ranker
    moved = cases[:1] + [replace(cases[1], candidates=cases[1].candidates[::-1])] + cases[2:]
    assert reused_scores(path, moved, "tuned") is None
    assert reused_scores(tmp_path / "missing.npz", cases, "tuned") is None
    # scores averaged over other candidate orders (RankerConfig.orders) are not these: scored again
    assert reused_scores(path, cases, "tuned", Scoring(orders=4)) is None
    save_scores(path, cases, {"tuned": scored}, Scoring(orders=4))
    assert reused_scores(path, cases, "tuned", Scoring(orders=4)) is not None
    assert reused_scores(path, cases, "tuned") is None
    legacy = {k: v for k, v in np.load(path).items() if k != "orders"}  # a dump from before the count: 1 order
    np.savez_compressed(path, **legacy)
    assert reused_scores(path, cases, "tuned") is not None and reused_scores(path, cases, "tuned", Scoring(4)) is None
    save_scores(path, cases, {"tuned": scored})
    # prompts that showed another number of liked / disliked movies (--history) are not these either; a dump from
    # before the count showed the paper's 10 and 5
    assert reused_scores(path, cases, "tuned", Scoring(history=(20, 10))) is None
    save_scores(path, cases, {"tuned": scored}, Scoring(history=(20, 10)))
    assert reused_scores(path, cases, "tuned", Scoring(history=(20, 10))) is not None
    assert reused_scores(path, cases, "tuned") is None
    np.savez_compressed(path, **{k: v for k, v in np.load(path).items() if k != "history"})
    assert reused_scores(path, cases, "tuned") is not None
    assert reused_scores(path, cases, "tuned", Scoring(history=(20, 10))) is None
    # a person without likes has no pos scores to reuse: still a scored case; one whose dislikes went unscored is not
    no_likes = [UserCase([], [2], list(range(700, 720)), 3, 3, tuple(range(20, 0, -1)))]
    save_scores(path, no_likes, {"tuned": [(None, rng.normal(size=20))]})
    assert reused_scores(path, no_likes, "tuned") is not None
    save_scores(path, no_likes, {"tuned": [(None, None)]})
    assert reused_scores(path, no_likes, "tuned") is None


def test_deltas_from_a_dump_are_paired_differences_from_sasrec(tmp_path):
    from recsys.rerank_eval import deltas_table, save_scores

    cases = _valid_cases(30, target_pos=12)  # SASRec puts every target 13th: NDCG@10 = 0
    oracle = [(np.eye(20)[12], -np.eye(20)[12]) for _ in cases]
    path = tmp_path / "toy-7-full.npz"
    save_scores(path, cases, {"tuned": oracle})
    table = deltas_table([path])
    assert "toy seed 7 full (n = 30; SASRec 0.0000)" in table
    assert "| fine-tuned pos alone | +1.0000 [+1.0000, +1.0000]" in table  # every target moves to rank 1
    save_scores(tmp_path / "ml-100k-43-sampled-100.npz", cases, {"tuned": oracle})  # names with hyphens
    assert "ml-100k seed 43 sampled-100 (n = 30" in deltas_table([tmp_path / "ml-100k-43-sampled-100.npz"])


def test_two_pairs_dumps_are_paired_per_user_and_other_cases_refused(tmp_path):
    from recsys.rerank_eval import dumps_paired, save_scores

    cases = _valid_cases(30, target_pos=12)  # SASRec puts every target 13th: NDCG@10 = 0
    oracle = [(np.eye(20)[12], -np.eye(20)[12]) for _ in cases]
    flat = [(np.zeros(20), np.zeros(20)) for _ in cases]
    save_scores(tmp_path / "new" / "toy-7-full.npz", cases, {"tuned": oracle})
    save_scores(tmp_path / "old" / "toy-7-full.npz", cases, {"tuned": flat})
    table = dumps_paired(tmp_path / "new" / "toy-7-full.npz", tmp_path / "old" / "toy-7-full.npz")
    assert "| fine-tuned pos alone | +1.0000 [+1.0000, +1.0000] |" in table  # rank 1 against ties kept in SASRec's order
    same = dumps_paired(tmp_path / "old" / "toy-7-full.npz", tmp_path / "old" / "toy-7-full.npz").splitlines()[4:]
    assert len(same) >= 5 and all(line.endswith("| +0.0000 [+0.0000, +0.0000] |") for line in same)  # one pair: 0
    save_scores(tmp_path / "toy-7-sampled-100.npz", _valid_cases(30, target_pos=3), {"tuned": flat})
    with pytest.raises(SystemExit, match="different cases"):
        dumps_paired(tmp_path / "new" / "toy-7-full.npz", tmp_path / "toy-7-sampled-100.npz")
    save_scores(tmp_path / "old" / "toy-7-sampled-100.npz", cases, {"tuned": flat})  # a protocol with a hyphen
    assert "| fine-tuned pos alone | +0.0000" in dumps_paired(*[tmp_path / "old" / "toy-7-sampled-100.npz"] * 2)


def test_people_are_grouped_by_which_pairs_trained_on_them(tmp_path, toy_items):
    from recsys.finetune import FinetuneConfig, split_users
    from recsys.rerank_eval import dumps_paired, save_scores, training_groups
    from tests.test_finetune import make_split

    split = make_split(toy_items, 20, 10, (1, 1), 0)
    configs = {"old": {"seed": 0, "user_fraction": 0.25, "val_users": 4},
               "new": {"seed": 0, "user_fraction": 0.25, "val_users": 4, "train_all": True}}
    for name, config in configs.items():
        (tmp_path / name / "pos").mkdir(parents=True)
        (tmp_path / name / "pos" / "metadata.json").write_text(json.dumps({"config": config}))
    # an adapter trained on another dataset trained nobody here, though its config would pick people of this split
    (tmp_path / "old" / "neg").mkdir()
    (tmp_path / "old" / "neg" / "metadata.json").write_text(json.dumps(
        {"dataset": "elsewhere", "config": {"seed": 1, "user_fraction": 0.9, "val_users": 1}}))
    groups = training_groups(split, [tmp_path / "new", tmp_path / "old"])
    old_train, val = split_users(split, FinetuneConfig(**configs["old"]))
    assert [int(m.sum()) for m in groups.values()] == [5, 11, 4]  # both; the new pair only; neither (validation)
    # either adapter of a pair counts: a negative adapter on this dataset with more people widens "trained by old"
    (tmp_path / "old" / "neg" / "metadata.json").write_text(json.dumps(
        {"dataset": "toy", "config": {"seed": 0, "user_fraction": 0.5, "val_users": 4}}))
    wider = training_groups(split, [tmp_path / "new", tmp_path / "old"])
    new_train = set(split_users(split, FinetuneConfig(**configs["new"]))[0])
    old_neg_train = set(split_users(split, FinetuneConfig(seed=0, user_fraction=0.5, val_users=4))[0])
    expected = (old_neg_train | set(old_train)) & new_train
    assert set(np.flatnonzero(next(iter(wider.values())))) == expected and len(expected) > 5
    (tmp_path / "old" / "neg" / "metadata.json").unlink()
    both, new_only, neither = groups.values()
    assert set(np.flatnonzero(both)) == set(old_train) and set(np.flatnonzero(neither)) == set(val)
    assert not (both & new_only).any() and (both | new_only | neither).all()

    cases = _valid_cases(20, target_pos=12)
    oracle = [(np.eye(20)[12], -np.eye(20)[12]) if i in old_train else (np.zeros(20), np.zeros(20)) for i in range(20)]
    save_scores(tmp_path / "toy-7-full.npz", cases, {"tuned": oracle})
    save_scores(tmp_path / "old" / "toy-7-full.npz", cases, {"tuned": [(np.zeros(20), np.zeros(20))] * 20})
    row = next(line for line in dumps_paired(tmp_path / "toy-7-full.npz", tmp_path / "old" / "toy-7-full.npz",
                                             groups).splitlines() if line.startswith("| fine-tuned pos alone"))
    assert row == "| fine-tuned pos alone | +1.0000 [+1.0000, +1.0000] | +0.0000 [+0.0000, +0.0000] | +0.0000 [+0.0000, +0.0000] |"
    with pytest.raises(SystemExit, match="not one per person"):
        dumps_paired(tmp_path / "toy-7-full.npz", tmp_path / "old" / "toy-7-full.npz", {"x": np.ones(3, dtype=bool)})


def test_a_runs_stored_deltas_print_one_column_per_seed_and_protocol():
    from recsys.rerank_eval import paired_deltas, rank_rows, results_deltas

    cases = _valid_cases(30, target_pos=12)
    rows = rank_rows(cases, [(np.eye(20)[12], -np.eye(20)[12]) for _ in cases], None)
    deltas = paired_deltas(rows)
    assert "SASRec" not in deltas and deltas["fine-tuned pos alone"] == [1.0, 1.0, 1.0]
    cell = {"NDCG@10": 0.25}
    result = {"all": {"SASRec": cell}, "valid": {"SASRec": cell}, "n_users": 30, "n_valid": 30}
    results = {42: {"full": {**result, "deltas": deltas}}, 43: {"full": {**result, "deltas": {"only here": [0.1, 0.0, 0.2]}}}}
    table = results_deltas(results, "toy")
    assert "| row | toy seed 42 full (n = 30; SASRec 0.2500) | toy seed 43 full (n = 30; SASRec 0.2500) |" in table
    assert "| only here | — | +0.1000 [+0.0000, +0.2000] (+40.0%) |" in table
    assert results_deltas({42: {"full": result}}, "toy") == ""  # runs stored before deltas: no table


def test_dump_file_takes_a_run_folder_and_refuses_clearly(tmp_path):
    from recsys.rerank_eval import dump_file

    (tmp_path / "run" / "scores").mkdir(parents=True)
    with pytest.raises(SystemExit, match="no score dump"):
        dump_file(tmp_path / "run")
    with pytest.raises(SystemExit, match="no such score dump"):
        dump_file(tmp_path / "nowhere")
    one = tmp_path / "run" / "scores" / "toy-7-full.npz"
    one.write_bytes(b"")
    assert dump_file(tmp_path / "run") == one == dump_file(tmp_path / "run" / "scores") == dump_file(one)
    (tmp_path / "run" / "scores" / "toy-8-full.npz").write_bytes(b"")
    with pytest.raises(SystemExit, match="2 score dumps, name one"):
        dump_file(tmp_path / "run")
