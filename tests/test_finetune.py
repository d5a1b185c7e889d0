"""Fine-tuning on a toy split with a tiny random Llama: data comes from training items only, one tiny
epoch runs, a tiny overfit lowers the loss, checkpoints resume, adapters round-trip with metadata."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from recsys import finetune, llm
from recsys.data import Dataset, to_split
from tests.fakes import FakeRetriever
from tests.test_llm import make_tiny_model, one_thread, smol_tokenizer  # noqa: F401  (fixtures)


@pytest.fixture
def toy_split(toy_items):
    """12 users x 12 ratings over the 25 toy movies, chronological, ratings cycling 1..5."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, 13):
        items = rng.choice(toy_items["item_id"].to_numpy(), 12, replace=False)
        for t, item in enumerate(items):
            rows.append((user, int(item), float(1 + (user + t) % 5), 1000 * user + t))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return to_split(Dataset("toy", toy_items, inter))


def tiny_config(tmp_path, **changes) -> finetune.FinetuneConfig:
    cfg = finetune.FinetuneConfig(
        user_fraction=0.5, val_users=3, max_examples_per_user=3, n_candidates=12, n_hard=6,
        batch_size=4, lr=5e-3, warmup_steps=1, eval_every=2, out_dir=tmp_path / "adapters",
        run_dir=tmp_path / "runs", seed=0,
    )
    return replace(cfg, **changes)


@pytest.mark.parametrize("task", ["pos", "neg"])
def test_examples_use_only_training_items(toy_split, toy_catalog, tmp_path, task):
    cfg = tiny_config(tmp_path, task=task, max_examples_per_user=50)
    users, val_users = finetune.split_users(toy_split, cfg)
    assert not set(users) & set(val_users)
    for u in users:
        rng = np.random.default_rng(0)
        pool = toy_split.item_ids[1:]
        examples = finetune.user_examples(toy_split, u, cfg, FakeRetriever(toy_catalog), pool, rng)
        train = [int(i) for i in toy_split.item_ids[toy_split.train(u)]]
        ratings = dict(zip(train, toy_split.ratings[u][: len(train)], strict=True))
        for ex in examples:
            target = ex.candidates[ex.target]
            assert target in train and set(ex.history) <= set(train)
            assert len(ex.candidates) == cfg.n_candidates == len(set(ex.candidates))
            assert 1 <= len(ex.history) <= cfg.max_history
            good = (lambda r: r >= 4) if task == "pos" else (lambda r: r <= 2)
            assert good(ratings[target]) and all(good(ratings[i]) for i in ex.history)
            # history is the newest first, and strictly before the target
            positions = [train.index(i) for i in ex.history]
            assert positions == sorted(positions, reverse=True) and positions[0] < train.index(target)


def test_popularity_retriever_follows_the_protocol(toy_split):
    retriever = finetune.PopularityRetriever(toy_split, pool=20, seed=0)
    out = retriever.retrieve([1, 2], exclude={3, 4}, k=5)
    assert len(out) == 5 == len(set(out)) and not set(out) & {1, 2, 3, 4}


def test_one_tiny_epoch_and_adapter_round_trip(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="neg")
    train_users, val_users = finetune.split_users(toy_split, cfg)
    retriever = FakeRetriever(toy_catalog)
    train = finetune.build_examples(toy_split, train_users, cfg, retriever, 0)
    val = finetune.build_examples(toy_split, val_users, cfg, retriever, 1)
    model, state = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                          train, val, cfg, tmp_path / "ckpt.pt")
    assert state.step == math.ceil(len(train) / cfg.batch_size)
    assert all(math.isfinite(x) for x in state.train_losses)
    assert state.evals[0]["step"] == 0 and state.evals[-1]["step"] == state.step

    letter_ids = llm.letter_token_ids(smol_tokenizer, cfg.n_candidates)
    bias = finetune.content_free_bias(model, smol_tokenizer, "neg", letter_ids, cfg.n_candidates)
    meta = finetune.metadata(cfg, state, (len(train_users), len(val_users)), (len(train), len(val)),
                             "fake", bias, "test machine")
    for name in ("pos", "neg"):  # the same weights under both names: enough for a round trip
        finetune.save_adapter(model, tmp_path / "adapters" / name, meta)
    saved = json.loads((tmp_path / "adapters" / "neg" / llm.METADATA_FILE).read_text())
    assert saved["template_version"] == llm.prompts.TEMPLATE_VERSION
    assert saved["uniform_loss"] == pytest.approx(math.log(12), abs=1e-4) and len(saved["letter_bias"]) == 12
    assert (tmp_path / "adapters" / "neg" / "adapter_model.safetensors").stat().st_size < 200_000

    ex = val[0]
    base = model.unload()  # the plain base weights again; the trained adapter lives in the saved files
    ranker = llm.LetterRanker(base, smol_tokenizer, {n: tmp_path / "adapters" / n for n in ("pos", "neg")},
                              toy_catalog, llm.RankerConfig(max_dislikes=cfg.max_history))
    assert ranker.metadata["neg"]["val_loss"] == saved["val_loss"]
    _, neg = ranker.score([], list(ex.history), list(ex.candidates))
    # the training computation on the ranker's prompt order gives the ranker's scores
    order = ranker.prompt_order(list(ex.candidates))
    shown = finetune.Example(ex.history, tuple(ex.candidates[i] for i in order), 0)
    ranker.model.set_adapter("neg")
    logits = finetune.example_logits(ranker.model, smol_tokenizer, toy_catalog, shown, cfg, letter_ids)
    np.testing.assert_allclose(neg[order], logits[0].detach().numpy(), atol=1e-5)


def test_tiny_overfit_lowers_the_loss(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="pos", lr=3e-2, batch_size=4, epochs=12, eval_every=1000, lora_dropout=0.0)
    users, _ = finetune.split_users(toy_split, cfg)
    examples = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)[:4]
    _, state = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                      examples, examples, cfg)
    assert state.step == 12
    assert state.train_losses[-1] < 0.5 * state.train_losses[0]
    assert state.evals[-1]["loss"] < 0.5 * state.evals[0]["loss"] and state.evals[-1]["accuracy"] >= 0.75


def test_training_resumes_from_its_checkpoint(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="pos", eval_every=1, epochs=2)
    users, _ = finetune.split_users(toy_split, cfg)
    examples = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)[:8]
    ckpt = tmp_path / "ckpt.pt"
    stopped = replace(cfg, max_minutes=0.0)  # stops (and checkpoints) after the first step
    _, first = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                      examples, examples[:2], stopped, ckpt)
    assert first.step == 1 and ckpt.exists()
    # same configuration and data -> resumes; max_minutes differs, so resume with the stopped config
    _, resumed = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                        examples, examples[:2], replace(stopped, max_minutes=None), ckpt)
    assert resumed.step == 4 and resumed.train_losses[0] == first.train_losses[0]
