"""Fine-tuning on a toy split with a tiny random Llama: data comes from training items only, one tiny
epoch runs, a tiny overfit lowers the loss, checkpoints resume, adapters round-trip with metadata."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from recsys import finetune, frozen, llm
from recsys.data import Dataset, to_split
from tests.fakes import FakeRetriever
from tests.test_llm import make_tiny_model, one_thread, smol_tokenizer  # noqa: F401  (fixtures)


def make_split(toy_items, n_users: int, per_user: int, step: tuple[int, int], seed: int):
    """``n_users`` x ``per_user`` ratings over the 25 toy movies, chronological; user u's t-th rating is
    1 + (step[0] * u + step[1] * t) % 5."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        items = rng.choice(toy_items["item_id"].to_numpy(), per_user, replace=False)
        for t, item in enumerate(items):
            rows.append((user, int(item), float(1 + (step[0] * user + step[1] * t) % 5), 1000 * user + t))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return to_split(Dataset("toy", toy_items, inter))


@pytest.fixture
def toy_split(toy_items):
    """12 users x 12 ratings, ratings cycling 1..5."""
    return make_split(toy_items, 12, 12, (1, 1), 0)


def tiny_config(tmp_path, **changes) -> finetune.FinetuneConfig:
    cfg = finetune.FinetuneConfig(
        user_fraction=0.5, val_users=3, max_examples_per_user=3, n_candidates=12, n_hard=6,
        batch_size=4, lr=5e-3, warmup_steps=1, eval_every=2, out_dir=tmp_path / "adapters",
        run_dir=tmp_path / "runs", seed=0,
    )
    return replace(cfg, **changes)


@pytest.mark.parametrize("task", ["pos", "neg", "both"])
def test_examples_use_only_training_items(toy_split, toy_catalog, tmp_path, task):
    cfg = tiny_config(tmp_path, task=task, max_examples_per_user=50)
    users, val_users = finetune.split_users(toy_split, cfg)
    assert not set(users) & set(val_users)
    n_examples = 0
    for u in users:
        rng = np.random.default_rng(0)
        pool = toy_split.item_ids[1:]
        examples = finetune.user_examples(toy_split, u, cfg, FakeRetriever(toy_catalog), pool, rng)
        n_examples += len(examples)
        train = [int(i) for i in toy_split.item_ids[toy_split.train(u)]]
        ratings = dict(zip(train, toy_split.ratings[u][: len(train)], strict=True))
        for ex in examples:
            assert len(ex.candidates) == cfg.n_candidates == len(set(ex.candidates))
            assert [q.task for q in ex.queries] == list(cfg.tasks)
            targets = [ex.candidates[q.target] for q in ex.queries]
            assert len(set(targets)) == len(targets)  # with "both": the other task's target is a wrong answer
            for q, target in zip(ex.queries, targets, strict=True):
                assert target in train and set(q.history) <= set(train)
                assert 1 <= len(q.history) <= finetune.MAX_HISTORY[q.task]
                good = (lambda r: r >= 4) if q.task == "pos" else (lambda r: r <= 2)
                assert good(ratings[target]) and all(good(ratings[i]) for i in q.history)
                # the history is newest first and strictly before the target
                positions = [train.index(i) for i in q.history]
                assert positions == sorted(positions, reverse=True) and positions[0] < train.index(target)
    assert n_examples > 0


def test_candidate_ratings_leave_out_the_adapters_own_users(toy_split, toy_catalog):
    """An example's target must not show a mean that contains the rating it is labelled by."""
    users = [0, 1]
    rated = finetune.with_ratings(toy_catalog, toy_split, users)
    own = {int(i) for u in users for i in toy_split.item_ids[toy_split.train(u)]}
    others = {int(i) for u in range(2, len(toy_split.sequences)) for i in toy_split.item_ids[toy_split.train(u)]}
    assert any(m.rating is not None for m in rated)
    for m in rated:
        assert (m.rating is not None) == (m.item_id in others)  # rated exactly by the other users
    everyone = finetune.mean_ratings(toy_split)
    assert any(m.rating != everyone[m.item_id] for m in rated if m.item_id in own and m.rating is not None)


def test_popularity_retriever_follows_the_protocol(toy_split):
    retriever = finetune.PopularityRetriever(toy_split, pool=20, seed=0)
    out = retriever.retrieve([1, 2], exclude={3, 4}, k=5)
    assert len(out) == 5 == len(set(out)) and not set(out) & {1, 2, 3, 4}


def test_default_retriever_refuses_another_datasets_sasrec(toy_split, tmp_path, monkeypatch):
    """Hard negatives from a SASRec trained on another catalog would be that catalog's ids (it once happened:
    --dataset ml-100k with ml-latest-small's model as the default)."""
    from recsys.sasrec import SASRec, SASRecConfig, SASRecRetriever

    n_items = len(toy_split.item_ids) - 1

    def saved(folder, dataset):
        SASRecRetriever(SASRec(n_items, SASRecConfig(hidden=8, heads=1, max_len=8)), toy_split.item_ids,
                        np.arange(1, n_items + 1), {"dataset": dataset}).save(folder)
        return folder

    with pytest.raises(ValueError, match="trained on ml-latest-small, not toy"):
        finetune.default_retriever(toy_split, saved(tmp_path / "other", "ml-latest-small"), 0)
    retriever, name = finetune.default_retriever(toy_split, saved(tmp_path / "same", "toy"), 0)
    assert name == f"SASRec ({tmp_path / 'same'})" and retriever.meta["dataset"] == "toy"
    with pytest.raises(FileNotFoundError, match="no model.pt"):
        finetune.default_retriever(toy_split, tmp_path / "missing", 0)
    # the default folder is the dataset's own: assets/sasrec/<dataset>, popularity when there is none
    monkeypatch.setattr(finetune, "SASREC_ASSETS", tmp_path / "assets")
    assert isinstance(finetune.default_retriever(toy_split, None, 0)[0], finetune.PopularityRetriever)
    saved(tmp_path / "assets" / "toy", "toy")
    assert finetune.default_retriever(toy_split, None, 0)[1] == f"SASRec ({tmp_path / 'assets' / 'toy'})"


def test_one_tiny_epoch_and_adapter_round_trip(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both")
    train_users, val_users = finetune.split_users(toy_split, cfg)
    retriever = FakeRetriever(toy_catalog)
    train = finetune.build_examples(toy_split, train_users, cfg, retriever, 0)
    val = finetune.build_examples(toy_split, val_users, cfg, retriever, 1)
    rated = finetune.with_ratings(toy_catalog, toy_split, [*train_users, *val_users])  # candidates show "rated x.y"
    model, state = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, rated,
                                          train, val, cfg, tmp_path / "ckpt.pt")
    assert state.step == math.ceil(len(train) / cfg.batch_size)
    assert all(math.isfinite(x) for x in state.train_losses)
    assert state.evals[0]["step"] == 0 and state.evals[-1]["step"] == state.step
    assert {"pos_loss", "neg_loss", "pos_accuracy", "neg_accuracy"} <= set(state.evals[-1])

    letter_ids = llm.letter_token_ids(smol_tokenizer, cfg.n_candidates)
    metas = {}
    for task in ("pos", "neg"):
        model.set_adapter(task)
        bias = finetune.content_free_bias(model, smol_tokenizer, task, letter_ids, cfg.n_candidates)
        metas[task] = finetune.metadata(cfg, task, state, (len(train_users), len(val_users)),
                                        (len(train), len(val)), "fake", bias, "test machine")
    finetune.save_adapters(model, tmp_path / "adapters", metas)
    saved = json.loads((tmp_path / "adapters" / "neg" / llm.METADATA_FILE).read_text())
    assert saved["template_version"] == llm.prompts.TEMPLATE_VERSION and saved["task"] == "neg"
    assert saved["val_loss"] == pytest.approx(state.evals[-1]["neg_loss"], abs=1e-4)
    assert saved["uniform_loss"] == pytest.approx(math.log(12), abs=1e-4) and len(saved["letter_bias"]) == 12
    assert (tmp_path / "adapters" / "neg" / "adapter_model.safetensors").stat().st_size < 200_000

    # the ranker, loading the saved files onto the plain base weights, scores as training computed
    ex = val[0]
    likes, dislikes = (q.history for q in ex.queries)
    ranker = llm.LetterRanker(model.unload(), smol_tokenizer, {n: tmp_path / "adapters" / n for n in ("pos", "neg")},
                              rated)
    assert ranker.metadata["neg"]["val_loss"] == saved["val_loss"]
    pos, neg = ranker.score(list(likes), list(dislikes), list(ex.candidates))
    order = ranker.prompt_order(list(ex.candidates))
    shown = finetune.Example(tuple(ex.candidates[i] for i in order), ex.queries)  # targets unused here
    logits = [lg for _, lg in finetune.query_logits(ranker.model, smol_tokenizer, rated, shown, cfg, letter_ids)]
    np.testing.assert_allclose(pos[order], logits[0][0].detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(neg[order], logits[1][0].detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("task", ["pos", "both"])
def test_tiny_overfit_lowers_the_loss(toy_split, toy_catalog, smol_tokenizer, tmp_path, task):  # noqa: F811
    """Both adapters learn in a joint run (a regression test: switching adapters between a query's
    forward and backward once froze the "pos" adapter, whose loss then never moved)."""
    cfg = tiny_config(tmp_path, task=task, lr=3e-2, batch_size=4, epochs=12, eval_every=1000, lora_dropout=0.0)
    users, _ = finetune.split_users(toy_split, cfg)
    examples = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)[:4]
    _, state = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                      examples, examples, cfg)
    assert state.step == 12
    assert state.train_losses[-1] < 0.5 * state.train_losses[0]
    for t in cfg.tasks:
        assert state.evals[-1][f"{t}_loss"] < 0.5 * state.evals[0][f"{t}_loss"]
        assert state.evals[-1][f"{t}_accuracy"] >= 0.75


def test_training_resumes_from_its_checkpoint(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both", eval_every=1, checkpoint_every=1, epochs=2)
    users, _ = finetune.split_users(toy_split, cfg)
    examples = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)[:8]
    ckpt = tmp_path / "ckpt.pt"
    stopped = replace(cfg, max_minutes=0.0)  # stops (and checkpoints) after the first step
    _, first = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                      examples, examples[:2], stopped, ckpt)
    assert first.step == 1 and ckpt.exists()
    # same configuration and data -> resumes (the time budget is not part of the configuration's identity)
    _, resumed = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                        examples, examples[:2], replace(stopped, max_minutes=None), ckpt)
    assert resumed.step == 4 and resumed.train_losses[0] == first.train_losses[0]


@pytest.fixture
def long_split(toy_items):
    """10 users x 24 ratings: long enough for graded examples of 8 candidates."""
    return make_split(toy_items, 10, 24, (3, 2), 1)


def test_rated_examples_label_every_candidate_with_the_persons_later_rating(long_split, tmp_path):
    cfg = tiny_config(tmp_path, labels="rated", n_candidates=8, rated_window=12, max_examples_per_user=50)
    n = 0
    for u in range(len(long_split.sequences)):
        train = [int(i) for i in long_split.item_ids[long_split.train(u)]]
        ratings = dict(zip(train, long_split.ratings[u][: len(train)], strict=True))
        for ex in finetune.rated_examples(long_split, u, cfg, np.random.default_rng(0)):
            n += 1
            assert len(ex.candidates) == 8 == len(set(ex.candidates)) and set(ex.candidates) <= set(train)
            first = min(train.index(i) for i in ex.candidates)
            assert max(train.index(i) for i in ex.candidates) < first + cfg.rated_window
            assert {q.task for q in ex.queries} <= {"pos", "neg"} and ex.queries[0].task == "pos"
            for q in ex.queries:
                assert q.ratings == tuple(ratings[i] for i in ex.candidates)  # the person's own, in prompt order
                assert min(q.ratings) <= cfg.dislike_max and max(q.ratings) >= cfg.like_min
                best = max(q.ratings) if q.task == "pos" else min(q.ratings)
                assert q.ratings[q.target] == best
                assert all(train.index(i) < first for i in q.history)  # the history is before every candidate
                good = (lambda r: r >= 4) if q.task == "pos" else (lambda r: r <= 2)
                assert all(good(ratings[i]) for i in q.history)
                soft = q.soft_target(cfg.label_beta)[0]
                assert soft.sum().item() == pytest.approx(1.0) and int(soft.argmax()) in {
                    k for k, r in enumerate(q.ratings) if r == best}
    assert n > 0


@pytest.mark.parametrize("task", ["neg", "pos", "both"])
def test_session_examples_label_the_retrievers_candidates_with_later_ratings(long_split, toy_catalog, tmp_path, task):
    """The candidates are what the retriever shows for the likes before a cut; each carries the person's later
    rating (training part only) or the unknown label; the query finds a movie the person did dislike (or like)."""
    cfg = tiny_config(tmp_path, labels="session", task=task, n_candidates=8, max_examples_per_user=50)
    retriever = FakeRetriever(toy_catalog)
    n, orders = 0, set()
    for u in range(len(long_split.sequences)):
        train = [int(i) for i in long_split.item_ids[long_split.train(u)]]
        ratings = dict(zip(train, long_split.ratings[u][: len(train)], strict=True))
        for ex in finetune.session_examples(long_split, u, cfg, retriever, np.random.default_rng(0)):
            n += 1
            assert len(ex.candidates) == 8 == len(set(ex.candidates))
            labels = tuple(ratings.get(i, cfg.unknown_rating) for i in ex.candidates)

            def shown_at(c: int, candidates=ex.candidates, train=train, ratings=ratings) -> bool:
                """The retriever's list for the likes before cut ``c``, every movie rated before it excluded."""
                likes = [i for i in train[:c] if ratings[i] >= cfg.like_min]
                return set(retriever.retrieve(likes, set(train[:c]), 8)) == set(candidates)

            cuts = [c for c in range(1, len(train)) if shown_at(c)
                    and all(set(q.history) <= set(train[:c]) for q in ex.queries)]
            assert cuts, "no cut of this person's training part shows these candidates"
            orders.add(ex.candidates)
            assert {q.task for q in ex.queries} == set(cfg.tasks)
            for q in ex.queries:
                assert q.ratings == labels  # in prompt order
                good = (lambda r: r >= cfg.like_min) if q.task == "pos" else (lambda r: r <= cfg.dislike_max)
                assert q.history and all(good(ratings[i]) for i in q.history)
                assert good(q.ratings[q.target])  # a movie this person did later like / dislike
                assert q.ratings[q.target] == (max if q.task == "pos" else min)(labels)
    assert n > 0 and len(orders) > 1  # candidates shuffled, not the retriever's order


def test_graded_query_loss_and_correlation():
    hard = finetune.Query("pos", (1,), 2)
    logits = torch.tensor([[0.0, 1.0, 3.0]])
    assert finetune.query_loss(hard, logits, 2.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, torch.tensor([2])).item())
    assert finetune.graded_correlation(hard, [0, 1, 3]) is None
    neg = finetune.Query("neg", (1,), 0, (1.0, 3.0, 5.0))
    assert finetune.graded_correlation(neg, [3.0, 1.0, 0.0]) == pytest.approx(1.0)  # the worst scored highest
    assert finetune.graded_correlation(finetune.Query("pos", (1,), 2, (1.0, 3.0, 5.0)), [3.0, 1.0, 0.0]) == -1.0
    assert finetune.graded_correlation(finetune.Query("pos", (1,), 0, (4.0, 4.0)), [1.0, 0.0]) is None
    # the loss is smallest when the letter softmax IS the rated distribution
    target = neg.soft_target(2.0)
    assert finetune.query_loss(neg, target.log(), 2.0) < finetune.query_loss(neg, torch.zeros(1, 3), 2.0)
    assert finetune.query_loss(neg, target.log(), 2.0) < finetune.query_loss(neg, target.log().flip(-1), 2.0)


def test_tiny_graded_overfit_learns_the_ratings(long_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both", labels="rated", n_candidates=8, rated_window=12, lr=3e-2,
                      epochs=15, eval_every=1000, lora_dropout=0.0)
    examples = finetune.build_examples(long_split, range(len(long_split.sequences)), cfg, None, 0)[:4]
    _, state = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                      examples, examples, cfg)
    assert state.train_losses[-1] < state.train_losses[0]
    for t in cfg.tasks:
        assert state.evals[-1][f"{t}_loss"] < state.evals[0][f"{t}_loss"]
        assert state.evals[-1][f"{t}_spearman"] > max(0.5, state.evals[0][f"{t}_spearman"])
        assert 0 < state.evals[-1][f"{t}_spearman_ci95"] < 2


def test_ci95_is_the_t_interval_half_width():
    assert finetune.ci95([0.0, 1.0, 2.0]) == pytest.approx(4.302653 / math.sqrt(3))
    assert finetune.ci95([0.3] * 5) == 0.0


def test_reference_spearman_reads_the_printed_mean(long_split, toy_catalog, tmp_path):
    cfg = tiny_config(tmp_path, labels="rated", n_candidates=8, rated_window=12)
    examples = finetune.build_examples(long_split, range(len(long_split.sequences)), cfg, None, 0)[:6]
    ex = examples[0]
    own = dict(zip(ex.candidates, ex.queries[0].ratings, strict=True))  # print the person's own ratings as the means
    rated = toy_catalog.with_ratings({m.item_id: own.get(m.item_id, 3.0) for m in toy_catalog})
    ref = finetune.reference_spearman([ex], rated, cfg.tasks)
    assert all(v == pytest.approx(1.0) for v in ref.values()) and "pos_spearman_mean_rating" in ref


def test_mixed_labels_blend_the_persons_rating_the_printed_mean_and_the_genre_match():
    from recsys.catalog import Catalog

    rows = [(1, "Scary A", None, "Horror", 2.0), (2, "Scary B", None, "Horror|Comedy", 4.04),
            (3, "Funny A", None, "Comedy", 3.0), (4, "Funny B", None, "Comedy", None),
            (5, "Scary C", None, "Horror", 3.0), (6, "Scary D", None, "Horror", 3.0)]
    catalog = Catalog(pd.DataFrame(rows, columns=["item_id", "title", "year", "genres", "rating"]))
    person = (3.0, 3.0, 3.0, 1.0)
    ex = finetune.Example((1, 2, 3, 4), (finetune.Query("pos", (5, 6), 0, person),
                                         finetune.Query("neg", (5, 3), 3, person)))
    assert [finetune.genre_match(catalog, (5, 6), c) for c in ex.candidates] == [1.0, 1.0, 0.0, 0.0]
    assert [finetune.genre_match(catalog, (5, 3), c) for c in ex.candidates] == [0.5, 1.0, 0.5, 0.5]
    same = finetune.mixed_labels([ex], catalog)[0]
    assert same == ex  # the default keeps the person's own ratings and targets
    printed = finetune.mixed_labels([ex], catalog, person=0.0, printed=1.0)[0]
    assert printed.queries[0].ratings == pytest.approx((2.0, 4.0, 3.0, 3.5))  # as printed: one decimal, 3.5 if none
    assert printed.queries[0].target == 1 and printed.queries[1].target == 0
    mix = finetune.mixed_labels([ex], catalog, person=0.5, printed=0.5, genre=2.0)[0]
    pos, neg = mix.queries
    assert pos.ratings == pytest.approx((2.5 + 2, 3.5 + 2, 3.0, 2.25))  # like what you liked: up
    assert neg.ratings == pytest.approx((2.5 - 1, 3.5 - 2, 3.0 - 1, 2.25 - 1))  # like what you disliked: down
    assert pos.target == 1 and neg.target == 3
    assert pos.history == (5, 6) and mix.candidates == ex.candidates
    # the other query's movies the other way round (letters-v6 shows both lists): pos = unlike the dislikes (5, 3),
    # neg = unlike the likes (5, 6)
    cross = finetune.mixed_labels([ex], catalog, person=0.0, other_genre=2.0)[0]
    assert cross.queries[0].ratings == pytest.approx((-1.0, -2.0, -1.0, -1.0))
    assert cross.queries[1].ratings == pytest.approx((2.0, 2.0, 0.0, 0.0))
    assert cross.queries[0].target == 0 and cross.queries[1].target == 2


def test_an_init_seed_changes_the_training_order_and_nothing_the_base_pass_depends_on():
    """--init-seed restarts training (LoRA init, batch order) on the same examples, so the stored base pass
    (keyed by the examples, built with --seed) is reused."""
    cfg = finetune.FinetuneConfig(batch_size=4)
    default = finetune.batches(20, cfg, 12)
    assert finetune.batches(20, replace(cfg, init_seed=cfg.seed), 12) == default
    assert finetune.batches(20, replace(cfg, init_seed=7), 12) != default
    assert finetune.training_seed(replace(cfg, init_seed=7)) == 7 and finetune.training_seed(cfg) == cfg.seed
    parser = finetune.make_parser()
    assert parser.parse_args(["--init-seed", "7"]).init_seed == 7 and parser.parse_args([]).init_seed is None


def test_the_anchor_adds_the_kl_to_the_base_models_letter_choice():
    q = finetune.Query("pos", (1,), 0, (5.0, 3.0, 1.0))
    logits = torch.tensor([[0.5, 0.0, 2.0]])
    plain = finetune.query_loss(q, logits, 2.0)
    assert finetune.query_loss(q, logits, 2.0, anchor_weight=3.0) == plain  # no anchor on the query: unchanged
    anchored = replace(q, anchor=(1.0, 2.0, 0.0))
    kl = (torch.softmax(torch.tensor([1.0, 2.0, 0.0]), 0)
          * (torch.log_softmax(torch.tensor([1.0, 2.0, 0.0]), 0) - torch.log_softmax(logits[0], 0))).sum()
    assert finetune.query_loss(anchored, logits, 2.0) == plain  # weight 0: off
    assert finetune.query_loss(anchored, logits, 2.0, 3.0).item() == pytest.approx(plain.item() + 3 * kl.item())
    # at the anchor (up to a shift, as softmax is) the term is 0
    assert finetune.query_loss(anchored, torch.tensor([[3.0, 4.0, 2.0]]), 2.0, 3.0).item() == pytest.approx(
        finetune.query_loss(q, torch.tensor([[3.0, 4.0, 2.0]]), 2.0).item(), abs=1e-6)
    args = finetune.make_parser().parse_args(["--anchor-weight", "2", "--anchor-tasks", "pos", "neg"])
    assert args.anchor_weight == 2.0 and args.anchor_tasks == ["pos", "neg"]
    assert finetune.make_parser().parse_args([]).anchor_weight == 0.0  # off unless asked for


def anchor_gap(model, stored, letter_ids) -> float:
    """Mean KL(anchor || adapter) over the anchored queries of answer-scoped stored examples (layers 0+)."""
    with torch.no_grad():
        gaps = [torch.nn.functional.kl_div(lg.log_softmax(-1), torch.tensor([q.anchor]).log_softmax(-1),
                                           log_target=True, reduction="sum").item()
                for group in frozen.answer_batch_logits(model, stored, 0, letter_ids, 2) for q, lg in group
                if q.anchor is not None]
    assert gaps
    return float(np.mean(gaps))


def test_an_anchored_positive_adapter_stays_near_the_base_models_calibrated_choice(
        long_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    """--anchor-weight: the anchors are the BASE model's letter logits minus its content-free letter bias, also
    once the adapters have moved (a resumed run), on the "pos" queries only; a large weight keeps the trained
    "pos" adapter near them while the unanchored run leaves them."""
    cfg = tiny_config(tmp_path, task="both", labels="rated", n_candidates=8, rated_window=12, lr=3e-2, epochs=10,
                      eval_every=1000, lora_dropout=0.0, adapter_scope="answer", frozen_dtype="float32",
                      person_weight=1.0)
    examples = finetune.build_examples(long_split, range(len(long_split.sequences)), cfg, None, 0)[:4]
    letter_ids = llm.letter_token_ids(smol_tokenizer, cfg.n_candidates)
    trained = {}
    for weight in (0.0, 30.0):
        run = replace(cfg, anchor_weight=weight, run_dir=tmp_path / f"runs{weight}")
        model, state = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                              examples, examples, run)
        assert state.step == 10 and all(math.isfinite(x) for x in state.train_losses)
        trained[weight] = (model, run)
    model, run = trained[30.0]
    score, feats, _ = finetune.scorer(model, smol_tokenizer, toy_catalog, examples, [], run, letter_ids)
    anchored = finetune.anchored(model, smol_tokenizer, score, feats, run, letter_ids)
    assert {q.task for ex in anchored for q in (fq.query for fq in ex.queries) if q.anchor is not None} == {"pos"}

    # the anchor is the base model's choice, computed with the adapters off, minus its content-free bias
    base = make_tiny_model(len(smol_tokenizer))
    bias = np.asarray(finetune.content_free_bias(base, smol_tokenizer, "pos", letter_ids, 8, "answer", run.template))
    for ex, stored in zip(examples, anchored, strict=True):
        (pos,) = [fq.query for fq in stored.queries if fq.query.task == "pos"]
        plain = next(finetune.query_logits(base, smol_tokenizer, toy_catalog,
                                           finetune.Example(ex.candidates, (ex.queries[0],)), replace(run, task="pos"),
                                           letter_ids))[1][0]
        np.testing.assert_allclose(pos.anchor, plain.detach().numpy() - bias, atol=2e-3)

    gaps = {w: anchor_gap(m, anchored, letter_ids) for w, (m, _) in trained.items()}
    assert gaps[30.0] < 0.5 * gaps[0.0]


def test_a_trained_pair_records_its_clear_case_margins():
    from tests.test_clear_case import StandIn

    metas = finetune.with_clear_case({"pos": {"task": "pos"}, "neg": {"task": "neg"}}, StandIn(-1.0, 1.0))
    assert metas["pos"]["task"] == "pos" and metas["neg"]["clear_case"] == metas["pos"]["clear_case"]
    assert metas["neg"]["clear_case"]["adapters"]["neg_mean"] > 0 > metas["neg"]["clear_case"]["zero_shot"]["neg_mean"]
    assert metas["neg"]["clear_case"]["adapters"]["orders"] == 8


def test_adapters_trained_on_a_cut_base_model_rank_on_the_same_cut(toy_split, toy_catalog, smol_tokenizer,  # noqa: F811
                                                                   tmp_path, monkeypatch):
    """--base-layers: training cuts the base model to its first N decoder layers and records N; a ranker handed the
    whole model cuts it the same way before attaching the adapters, and scores as a model built with N layers does."""
    from transformers import LlamaForCausalLM

    whole = make_tiny_model(len(smol_tokenizer))
    loaded = []
    monkeypatch.setattr(llm, "load_base", lambda *a, **kw: loaded.append(copy.deepcopy(whole)) or (loaded[-1], smol_tokenizer))
    cfg = tiny_config(tmp_path, task="both", base_layers=1, adapter_scope="answer", lora_layers=(0,),
                      frozen_dtype="float32", epochs=2.0)
    metas = finetune.run(cfg, toy_split, toy_catalog, FakeRetriever(toy_catalog), "fake")
    assert len(loaded) == 2  # training, then the clear case's ranker (a whole model each time, cut by both)
    assert [len(llm.base_decoder(m).layers) for m in loaded] == [1, 1]
    assert metas["pos"]["base_layers"] == metas["neg"]["base_layers"] == 1
    assert json.loads((cfg.out_dir / "neg" / llm.METADATA_FILE).read_text())["base_layers"] == 1

    dirs = {name: cfg.out_dir / name for name in ("pos", "neg")}
    ranker = llm.LetterRanker(copy.deepcopy(whole), smol_tokenizer, dirs, toy_catalog)
    one_layer = LlamaForCausalLM(replace(whole.config, num_hidden_layers=1)).eval()
    missing, unexpected = one_layer.load_state_dict(whole.state_dict(), strict=False)
    assert not missing and unexpected and all(".layers.1." in k for k in unexpected)
    built = llm.LetterRanker(one_layer, smol_tokenizer, dirs, toy_catalog)
    likes, dislikes, cands = [1, 2, 3], [4, 5], [6, 7, 8, 9, 10, 11, 12, 13]
    for got, want in zip(ranker.score(likes, dislikes, cands), built.score(likes, dislikes, cands), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    for name in dirs:  # the same adapters on the whole model: other scores (the cut is what they were trained on)
        meta = json.loads((dirs[name] / llm.METADATA_FILE).read_text())
        (dirs[name] / llm.METADATA_FILE).write_text(json.dumps({**meta, "base_layers": None}))
    uncut = llm.LetterRanker(copy.deepcopy(whole), smol_tokenizer, dirs, toy_catalog)
    assert len(llm.base_decoder(uncut.model).layers) == 2
    assert not np.allclose(uncut.score(likes, dislikes, cands)[0], ranker.score(likes, dislikes, cands)[0], atol=1e-3)


def test_lora_layers_must_lie_within_the_kept_base_layers(tmp_path):
    with pytest.raises(ValueError, match="--lora-layers 18 is not among the 18 layers"):
        tiny_config(tmp_path, base_layers=18, lora_layers=tuple(range(12, 19)))
    assert tiny_config(tmp_path, base_layers=18, lora_layers=tuple(range(18))).base_layers == 18
    with pytest.raises(ValueError, match="renumbered 0 to 23"):  # 0-11 and 18-29 kept: 24 layers
        tiny_config(tmp_path, base_layers=(*range(12), *range(18, 30)), lora_layers=tuple(range(12, 30)))
    parse = finetune.make_parser().parse_args
    assert finetune.base_layers_arg(parse(["--base-layers", "24"]).base_layers) == 24
    assert finetune.base_layers_arg(parse(["--base-layers", "0-2", "5"]).base_layers) == (0, 1, 2, 5)
    assert finetune.base_layers_arg(parse([]).base_layers) is None


def test_train_all_keeps_the_validation_people_and_trains_everyone_else(toy_split, tmp_path):
    cfg = tiny_config(tmp_path)
    train, val = finetune.split_users(toy_split, cfg)
    every_train, every_val = finetune.split_users(toy_split, replace(cfg, train_all=True))
    assert every_val == val and set(train) < set(every_train)
    assert sorted([*every_train, *every_val]) == list(range(len(toy_split.sequences)))


@pytest.mark.parametrize(("labels", "fixture"), [("rated", "toy_split"), ("next", "toy_split"),
                                                  ("session", "long_split")])  # a session cut needs a longer part
def test_train_all_examples_come_from_the_simulations_history_part_only(request, toy_catalog, tmp_path, labels, fixture):
    """Neither a leave-one-out test movie nor a simulated person's later ratings is ever in a train_all example."""
    from recsys.sim.split import rating_split

    toy_split = request.getfixturevalue(fixture)

    cfg = tiny_config(tmp_path, train_all=True, printed_mean="loo", labels=labels, n_candidates=4, n_hard=2, rated_window=5,
                      max_examples_per_user=50)
    rs = rating_split(toy_split)
    users, _ = finetune.split_users(toy_split, cfg)
    found = 0
    for u in users:
        history = {int(i) for i in toy_split.item_ids[rs.history(u)]}
        part = finetune.training_part(toy_split, u, cfg)
        assert len(part) == len(rs.history(u)) < len(toy_split.train(u))
        for ex in finetune.build_examples(toy_split, [u], cfg, FakeRetriever(toy_catalog), 0):
            rated = {ex.candidates[q.target] for q in ex.queries} if labels == "next" else set(ex.candidates)
            if labels == "session":  # the retriever's movies: those labelled with a rating
                rated = {c for c, r in zip(ex.candidates, ex.queries[0].ratings, strict=True) if r != cfg.unknown_rating}
            assert rated <= history and all(set(q.history) <= history for q in ex.queries)
            found += 1
    assert found > 0


def test_train_all_needs_the_leave_one_out_printed_mean(toy_split, toy_catalog, tmp_path):
    cfg = tiny_config(tmp_path, train_all=True)
    with pytest.raises(ValueError, match="--printed-mean loo"):
        finetune.run(cfg, toy_split, toy_catalog, FakeRetriever(toy_catalog), "fake")


def test_loo_examples_print_means_without_their_own_person(toy_split, toy_catalog, tmp_path):
    """--printed-mean loo: each example's candidates show the mean over every OTHER person, in its prompt and in
    its mixed labels; the catalog's own (every user's) is not what they show."""
    cfg = tiny_config(tmp_path, task="both", printed_mean="loo", labels="rated", n_candidates=4, rated_window=6,
                      max_examples_per_user=2)
    users, _ = finetune.split_users(toy_split, replace(cfg, train_all=True))
    plain = finetune.build_examples(toy_split, users, replace(cfg, printed_mean="others"), None, 0)
    loo = finetune.build_examples(toy_split, users, cfg, None, 0)
    assert plain and [ex.candidates for ex in plain] == [ex.candidates for ex in loo]
    assert all(ex.shown is None for ex in plain)
    everyone = finetune.with_ratings(toy_catalog, toy_split, [])
    moved = 0
    for ex in loo:
        movies = frozen.candidate_movies(everyone, ex)
        assert [m.rating for m in movies] == list(ex.shown) and [m.item_id for m in movies] == list(ex.candidates)
        moved += sum(m.rating != everyone[m.item_id].rating for m in movies)
        for prompt in frozen.example_prompts(everyone, ex, cfg.show_year, cfg.template):
            for m in movies:  # letters-v5: "Title [Genres] rated 3.4"; none when only this person rated it
                assert (f"{m.title} [" in prompt.text and f"rated {m.rating:.1f}" in prompt.text if m.rating is not None
                        else f"rated {everyone[m.item_id].rating:.1f}" not in prompt.text)
    assert moved > 0
    # one person's examples show exactly the recount without them
    u = users[0]
    mine = finetune.build_examples(toy_split, [u], cfg, None, 0)
    recount = finetune.mean_ratings(toy_split, [v for v in range(len(toy_split.sequences)) if v != u])
    assert mine and all(list(ex.shown) == [recount.get(i) for i in ex.candidates] for ex in mine)
    # the training labels' printed part reads them too, and relabelling keeps them
    for ex, before in zip(finetune.mixed_labels(mine, everyone, person=0.0, printed=1.0), mine, strict=True):
        assert ex.shown == before.shown
        for q in ex.queries:
            assert list(q.ratings) == [round(r, 1) if r is not None else 3.5 for r in ex.shown]
