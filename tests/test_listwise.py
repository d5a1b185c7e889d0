import numpy as np
import pandas as pd

from recsys.listwise import SHOWN, CandidateFeatures, cross_fit_listwise, fit_listwise
from recsys.rerank_eval import UserCase, rank_rows


def _lists(n: int, seed: int, signal: float = 1.0):
    """n lists of 20 candidates with 3 random features; the target is a random candidate whose feature 1
    is set a clear margin beyond every other one's, in the direction of ``signal``."""
    rng = np.random.default_rng(seed)
    features, targets = [rng.normal(size=(20, 3)) for _ in range(n)], rng.integers(0, 20, size=n)
    for x, t in zip(features, targets, strict=True):
        x[t, 1] = signal * (np.max(signal * x[:, 1]) + 1.0)
    return features, [int(t) for t in targets]


def test_fit_listwise_finds_the_feature_that_picks_the_target():
    features, targets = _lists(200, 0)
    w = fit_listwise(features, targets)
    assert w[1] > 1.0 and abs(w[0]) < 0.3 * w[1] and abs(w[2]) < 0.3 * w[1]
    hits = np.mean([np.argmax(x @ w) == t for x, t in zip(features, targets, strict=True)])
    assert hits == 1.0
    # against the sign: the fit follows the data, not the feature's index
    features, targets = _lists(200, 1, signal=-1.0)
    assert fit_listwise(features, targets)[1] < -1.0


def test_fit_listwise_reaches_the_minimum_a_derivative_free_fit_finds():
    from scipy.optimize import minimize

    features, targets = _lists(30, 2)

    def loss(w):  # the objective fit_listwise minimises, written out independently
        s = np.stack([x @ w for x in features])
        return -np.mean(s[np.arange(len(targets)), targets] - np.log(np.exp(s).sum(axis=1))) + 1e-2 * w @ w

    w = fit_listwise(features, targets)
    reference = minimize(loss, np.zeros(3), method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12}).x
    assert np.allclose(w, reference, atol=1e-3)  # a wrong analytic gradient would stop L-BFGS elsewhere


def _cases(features, targets):
    return [UserCase([], [], list(range(100 * i, 100 * i + 20)), t, t) for i, t in enumerate(targets)]


def test_cross_fit_listwise_fits_on_the_other_half_only():
    features, targets = _lists(120, 3)
    cases = _cases(features, targets)
    ranks, weights = cross_fit_listwise(cases, features, seed=0)
    assert len(weights) == 2 and all(w[1] > 1.0 for w in weights)
    assert np.all(ranks == 0)  # the feature generalises across users: every target goes first

    # a feature that points at the target in one half and away from it in the other: fitted on the other
    # half, each half is ranked by the wrong sign (an in-sample fit would put half of the targets first)
    fold = np.random.default_rng(5).permutation(len(cases)) % 2
    flipped = [x * (1 if f == 0 else -1) for x, f in zip(features, fold, strict=True)]
    ranks, weights = cross_fit_listwise(cases, flipped, seed=5)
    assert weights[0][1] < 0 < weights[1][1]  # fold 0 ranked by fold 1's fit and vice versa
    assert np.all(ranks == 19)


def test_cross_fit_listwise_keeps_targets_outside_the_top_20_where_they_were():
    features, targets = _lists(40, 4)
    cases = _cases(features, targets)
    cases[0] = UserCase([], [], cases[0].candidates, -1, 63)
    ranks, _ = cross_fit_listwise(cases, features, seed=0)
    assert ranks[0] == 63


def test_candidate_features_read_scores_ratings_and_genres():
    from recsys.catalog import Catalog
    from recsys.data import Split

    items = pd.DataFrame({"item_id": [100, 101, 102, 103], "title": ["A", "B", "C", "D"], "year": [2000] * 4,
                          "genres": ["Horror", "Horror|Thriller", "Comedy", "Romance"]})
    # item index i <-> raw id 100 + i - 1 (index 0 is padding); 3 users; user 0 rated 101 twice as often
    split = Split("t", np.array([0, 100, 101, 102, 103]), np.arange(3),
                  [np.array([1, 2, 3]), np.array([2, 3, 4]), np.array([2, 4, 1])],
                  [np.array([5.0, 1.0, 3.0]), np.array([1.0, 4.0, 4.0]), np.array([2.0, 5.0, 5.0])])
    means = {100: 4.0, 101: 1.5, 102: 3.5, 103: 4.5}
    feats = CandidateFeatures(split, Catalog(items), means)
    case = UserCase([100], [102], [101, 102, 103], 0, 0, (3.0, 2.0, 1.0))
    x = feats(case)
    assert x.shape == (3, len(SHOWN) + 1)
    assert x[:, 0].tolist() == sorted(x[:, 0], reverse=True)  # SASRec z-score follows its scores
    assert np.argmin(x[:, 2]) == 0 and np.argmax(x[:, 2]) == 2  # mean rating: 101 lowest, 103 highest
    assert x[:, 3].tolist() == [1.0, 0.0, 0.0]  # genre match with the liked Horror movie
    assert x[:, 4].tolist() == [0.0, 1.0, 0.0]  # with the disliked Comedy
    assert feats(case, SHOWN).shape == (3, len(SHOWN))


def test_rank_rows_adds_one_fitted_row_per_feature_set_and_reports_its_weights():
    features, targets = _lists(60, 6)
    cases = _cases(features, targets)
    fitted: dict[str, list[str]] = {}
    rows = rank_rows(cases, None, None, seed=0, fitted=fitted, features={"toy": (("a", "b", "c"), features)})
    row = "retrieval + toy (listwise logit fitted, 2-fold over users)"
    assert np.all(rows[row] == 0) and np.all(rows["SASRec"] == np.array(targets))
    assert len(fitted["toy weights"]) == 2 and fitted["toy weights"][0].startswith("(a ")
    assert ", b +" in fitted["toy weights"][0]  # the feature that picks the target gets a positive weight


def test_the_ce_probe_scores_a_uniform_guess_at_ln_20_and_a_fit_below_it():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("probe_listwise_ce",
                                                  Path(__file__).parents[1] / "scripts" / "probe_listwise_ce.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    features, targets = _lists(50, 7)
    assert np.isclose(probe.cross_entropy(features, targets, np.zeros(3)), np.log(20))
    assert probe.cross_entropy(features, targets, fit_listwise(features, targets)) < 0.5
    assert set(probe.SETS["prompt facts only (what the adapter sees)"]).isdisjoint({"SASRec z-score", "SASRec log rank"})


def test_cross_fit_listwise_keeps_the_retrievers_order_when_the_other_half_has_nothing_to_teach():
    features, targets = _lists(4, 8)
    cases = [UserCase([], [], c.candidates, -1, 30 + i) for i, c in enumerate(_cases(features, targets))]
    cases[0] = UserCase([], [], cases[0].candidates, targets[0], targets[0])  # one valid list, in one fold only
    ranks, weights = cross_fit_listwise(cases, features, seed=0)
    assert ranks[1:].tolist() == [31, 32, 33]
    fold = np.random.default_rng(0).permutation(4) % 2
    assert np.all(weights[fold[0]] == 0) and ranks[0] == targets[0]  # its fold learned from nobody: SASRec's order


def test_llm_score_rows_tell_whether_the_adapters_add_to_the_facts_they_read():
    from recsys.rerank_eval import ADDED_BY_LLM, FACTS_ROW, LLM_OVER_FACTS_ROW, LLM_SCORES_ROW, paired_deltas

    features, targets = _lists(80, 9)
    cases = _cases(features, targets)
    rng = np.random.default_rng(9)
    noise = [rng.normal(size=(20, 3)) for _ in targets]  # facts that say nothing about the target
    knows = [(np.eye(20)[t] * 5.0, None) for t in targets]  # a pos adapter that points at the target; no neg side
    guesses = [(rng.normal(size=20), rng.normal(size=20)) for _ in targets]

    fitted: dict[str, list[str]] = {}
    rows = rank_rows(cases, knows, None, seed=0, fitted=fitted, features={"shown features": (("a", "b", "c"), noise)})
    assert np.all(rows[LLM_SCORES_ROW] == 0) and np.all(rows[LLM_OVER_FACTS_ROW] == 0)
    assert np.mean(rows[FACTS_ROW] == 0) < 0.5  # the facts alone cannot find the target
    assert paired_deltas(rows)[ADDED_BY_LLM][1] > 0  # the interval of the adapters' addition clears 0
    assert "LLM pos z +" in fitted[f"{LLM_OVER_FACTS_ROW} weights"][0]
    assert fitted[f"{LLM_SCORES_ROW} weights"][0].startswith("(SASRec z-score ")

    # facts that decide the target leave the adapters nothing to add: same ranks, a difference of exactly 0
    rows = rank_rows(cases, guesses, None, seed=0, features={"shown features": (("a", "b", "c"), features)})
    assert np.all(rows[FACTS_ROW] == 0) and np.all(rows[LLM_OVER_FACTS_ROW] == 0)
    assert paired_deltas(rows)[ADDED_BY_LLM] == [0.0, 0.0, 0.0]
    assert ADDED_BY_LLM not in paired_deltas(rank_rows(cases, None, None, seed=0))  # no LLM rows, no difference


def test_guarded_listwise_keeps_its_fit_on_real_signal_and_drops_a_fit_to_noise():
    features, targets = _lists(120, 7)
    cases = _cases(features, targets)
    ranks, weights = cross_fit_listwise(cases, features, seed=0, guard=0.05)
    assert all(w[1] > 1.0 for w in weights) and np.all(ranks == 0)  # the signal carries out of sample: kept

    # pure noise: the plain fit still learns weights (and moves targets), the guarded one keeps SASRec's order
    rng = np.random.default_rng(8)
    noise = [rng.normal(size=(20, 3)) for _ in range(120)]
    plain_ranks, plain = cross_fit_listwise(cases, noise, seed=0)
    ranks, weights = cross_fit_listwise(cases, noise, seed=0, guard=0.05)
    assert any(np.any(w != 0) for w in plain) and np.any(plain_ranks != np.array(targets))
    assert all(np.all(w == 0) for w in weights)
    assert np.array_equal(ranks, np.array(targets))  # target_pos: where SASRec put it
