"""The frozen-feature fast path (recsys/frozen.py) computes what the full path computes, gradients too."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from recsys import finetune, frozen, llm, prompts
from tests.fakes import FakeRetriever
from tests.test_finetune import tiny_config, toy_split  # noqa: F401  (fixture)
from tests.test_llm import make_tiny_model, one_thread, smol_tokenizer  # noqa: F401  (fixtures)


def tiny_three_layer_model(vocab_size: int):
    model = make_tiny_model(vocab_size)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(**{**model.config.to_dict(), "num_hidden_layers": 3})
    return LlamaForCausalLM(config).eval()


def lora_model(vocab_size: int, cfg: finetune.FinetuneConfig):
    torch.manual_seed(2)
    model = finetune.add_lora(tiny_three_layer_model(vocab_size), cfg)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (the adapter a no-op): make it matter
            torch.nn.init.normal_(p, std=0.5)
    return model


def logits_and_grads(model, params, scores):
    """Each query's letter logits and the LoRA gradients of its cross-entropy, one query at a time."""
    logits, grads = [], []
    for q, lg in scores:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(lg, torch.tensor([q.target])).backward()
        logits.append(lg.detach())
        grads.append([p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params])
    return logits, grads


def trainable(split, catalog, tokenizer, cfg, n_examples: int):
    """Examples, a LoRA model with every adapter trainable, the letter ids and the LoRA parameters."""
    users, _ = finetune.split_users(split, cfg)
    examples = finetune.build_examples(split, users, cfg, FakeRetriever(catalog), 0)[:n_examples]
    model = lora_model(len(tokenizer), cfg).train()
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return examples, model, llm.letter_token_ids(tokenizer, cfg.n_candidates), params


def assert_same_logits_and_grads(model, params, reference, fast) -> None:
    """Both query streams give the same logits and LoRA gradients, and the adapters matter."""
    ref_logits, ref_grads = logits_and_grads(model, params, reference)
    fast_logits, fast_grads = logits_and_grads(model, params, fast)
    assert len(ref_logits) == len(fast_logits) == 2
    for a, b in zip(ref_logits, fast_logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        assert a.std() > 0.1  # the adapters change the scores, so the check means something
    for ga, gb in zip(ref_grads, fast_grads, strict=True):
        for x, y in zip(ga, gb, strict=True):
            torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-3)
    assert any(float(g.abs().sum()) > 0 for g in fast_grads[0])


def test_frozen_path_equals_the_full_path(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both", lora_layers=(1, 2), lora_dropout=0.0)
    examples, model, letter_ids, params = trainable(toy_split, toy_catalog, smol_tokenizer, cfg, 3)
    for ex in examples:
        fast = frozen.precompute_one(model, smol_tokenizer, toy_catalog, ex, cfg.show_year, 1)
        assert_same_logits_and_grads(model, params,
                                     finetune.query_logits(model, smol_tokenizer, toy_catalog, ex, cfg, letter_ids),
                                     frozen.query_logits(model, fast, 1, letter_ids, n_tasks=2))


@pytest.mark.parametrize("path", [{"lora_layers": (1,)}, {"adapter_scope": "answer"}], ids=["top-layers", "answer-scoped"])
def test_training_on_frozen_features_learns(toy_split, toy_catalog, smol_tokenizer, tmp_path, path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both", lr=3e-2, epochs=12, eval_every=1000, lora_dropout=0.0, **path)
    users, _ = finetune.split_users(toy_split, cfg)
    examples = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)[:4]
    _, state = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                      examples, examples, cfg)
    for t in cfg.tasks:
        assert state.evals[-1][f"{t}_loss"] < 0.5 * state.evals[0][f"{t}_loss"]


# ------------------------------------------------------------------ answer-scoped adapters (llm.answer_hidden)


def test_answer_pass_without_adapters_equals_the_full_pass(smol_tokenizer):  # noqa: F811
    """Base pass + cached last token = one whole pass, left padding included (rows of different lengths)."""
    model = tiny_three_layer_model(len(smol_tokenizer))
    rows = [list(range(5, 40)), list(range(7, 25))]
    with torch.no_grad():
        full = llm.full_hidden(model, rows, 0)
        answer = llm.answer_hidden(model, rows, 0)
    torch.testing.assert_close(answer, full, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="scope"):
        llm.scoped_hidden(model, rows, 0, scope="everywhere")


def test_answer_scoped_adapters_act_at_the_last_token_only(smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both", lora_dropout=0.0, adapter_scope="answer")
    model = lora_model(len(smol_tokenizer), cfg).eval()
    rows = [list(range(5, 40)), list(range(7, 25))]
    with torch.no_grad():
        batched = llm.answer_hidden(model, rows, 0, ["pos", "neg"])
        singles = []
        for row, name in zip(rows, ["pos", "neg"], strict=True):
            model.set_adapter(name)
            singles.append(llm.answer_hidden(model, [row], 0)[0])
        everywhere = llm.full_hidden(model, rows, 0, ["pos", "neg"])
        base = llm.answer_hidden(model, rows, 0, [llm.BASE, llm.BASE])
        with llm.adapters_off(model):
            plain = llm.full_hidden(model, rows, 0)
            # switched off is off for the answer scope too, and a nested adapters_off keeps them off when it ends
            off_answer = llm.answer_hidden(model, rows, 0, ["pos", "neg"])
            with llm.adapters_off(model):
                pass
            assert llm.adapters_disabled(model)
            torch.testing.assert_close(llm.full_hidden(model, rows, 0), plain)
        assert not llm.adapters_disabled(model)
    torch.testing.assert_close(off_answer, plain, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched, torch.stack(singles), atol=1e-5, rtol=1e-4)  # mixed batch = one by one
    torch.testing.assert_close(base, plain, atol=1e-5, rtol=1e-4)
    assert (batched - everywhere).abs().max() > 0.1  # acting at one token is not acting everywhere
    assert (batched - plain).abs().max() > 0.1  # and it does act


@pytest.mark.parametrize("template", ["letters-v5", "letters-v6", "letters-v9"])
def test_stored_base_pass_equals_the_answer_pass(toy_split, toy_catalog, smol_tokenizer, tmp_path, template):  # noqa: F811
    """Training on stored keys/values computes what the ranker computes, gradients included; with the shared
    template (v6) the two queries' prompts share everything before the question and read it once."""
    for first in (0, 1):
        cfg = tiny_config(tmp_path, task="both", lora_dropout=0.0, adapter_scope="answer",
                          lora_layers=(first, 2), frozen_dtype="float32", template=template)
        examples, model, letter_ids, params = trainable(toy_split, toy_catalog, smol_tokenizer, cfg, 2)
        for ex in examples:
            stored = frozen.precompute_answer_one(model, smol_tokenizer, toy_catalog, ex, cfg.show_year, first,
                                                  torch.float32, template)
            pos, neg = frozen.example_prompts(toy_catalog, ex, cfg.show_year, template)
            assert pos.prefix == neg.prefix and ("Movies:" in pos.prefix) == (template in prompts.SHARED_TEMPLATES)
            assert_same_logits_and_grads(model, params,
                                         finetune.query_logits(model, smol_tokenizer, toy_catalog, ex, cfg, letter_ids),
                                         frozen.answer_query_logits(model, stored, first, letter_ids, n_tasks=2))


def test_the_stored_base_pass_is_reused_only_for_the_same_prompts(toy_split, toy_catalog, tmp_path,  # noqa: F811
                                                                 monkeypatch):
    monkeypatch.setattr(finetune, "BASE_PASS_CHUNK", 2)
    cfg = tiny_config(tmp_path, adapter_scope="answer")
    users, _ = finetune.split_users(toy_split, cfg)
    examples = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)
    calls = []

    def compute(tag):
        def one(ex):
            calls.append(tag)
            return frozen.FrozenExample(len(ex.candidates), tuple(frozen.FrozenQuery(q, torch.full((1,), float(len(calls))))
                                                                  for q in ex.queries))
        return one

    def stored(train, val, tag, config=cfg):
        return finetune.cached_base_pass(config, train, val, compute(tag))

    train, val = examples[:3], examples[3:4]
    first = stored(train, val, "a")
    assert calls == ["a"] * 4 and [float(fe.queries[0].hidden) for fe in first[0]] == [1.0, 2.0, 3.0]
    (folder,) = (tmp_path / "runs" / cfg.task).iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["train-00000.pt", "train-00001.pt", "val-00000.pt"]
    relabelled = [replace(ex, queries=tuple(replace(q, target=(q.target + 1) % len(ex.candidates))
                                            for q in ex.queries)) for ex in train]
    again = stored(relabelled, val, "b")  # other labels, same prompts: reused, with the new labels attached
    assert calls == ["a"] * 4
    assert [float(fe.queries[0].hidden) for fe in again[0]] == [1.0, 2.0, 3.0]
    assert [fq.query for fe in again[0] for fq in fe.queries] == [q for ex in relabelled for q in ex.queries]
    stored(examples[:2], val, "c")  # other prompts: computed
    stored(train, val, "d", replace(cfg, lora_layers=(1, 2)))  # other layers: computed
    assert calls == ["a"] * 4 + ["c"] * 3 + ["d"] * 4
    printed = [replace(ex, shown=(3.0,) * len(ex.candidates)) for ex in train]  # other printed means: computed
    stored(printed, val, "p")
    assert calls[-4:] == ["p"] * 4 and len(list((tmp_path / "runs" / cfg.task).iterdir())) == 4
    (folder / "train-00001.pt").unlink()  # a run killed before its last chunk was written
    calls.clear()
    resumed = stored(train, val, "e")
    assert calls == ["e"] and len(resumed[0]) == 3  # only the missing chunk (one example) is computed
    with pytest.raises(ValueError, match="other prompts"):
        frozen.from_plain(frozen.to_plain(first[0][0]), examples[5].queries)


def test_a_padded_batch_of_answer_queries_equals_each_alone(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both", lora_dropout=0.0, adapter_scope="answer", frozen_dtype="float32")
    users, _ = finetune.split_users(toy_split, cfg)
    examples = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)[:4]
    model = lora_model(len(smol_tokenizer), cfg).eval()
    letter_ids = llm.letter_token_ids(smol_tokenizer, cfg.n_candidates)
    stored = [frozen.precompute_answer_one(model, smol_tokenizer, toy_catalog, ex, cfg.show_year, 1, torch.float32)
              for ex in examples]
    assert len({aq.position for ex in stored for aq in ex.queries}) > 1  # prompts of different lengths: padded
    with torch.no_grad():
        groups = list(frozen.answer_batch_logits(model, stored, 1, letter_ids, n_tasks=2))
        alone = {id(q): lg for ex in stored for q, lg in frozen.answer_query_logits(model, ex, 1, letter_ids, 2)}
    assert [len(g) for g in groups] == [4, 4] and {g[0][0].task for g in groups} == {"pos", "neg"}
    for group in groups:
        for q, lg in group:
            torch.testing.assert_close(lg, alone[id(q)], atol=1e-5, rtol=1e-4)


def test_the_plain_stored_form_round_trips(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both", lora_dropout=0.0, adapter_scope="answer")
    users, _ = finetune.split_users(toy_split, cfg)
    ex = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)[0]
    model = lora_model(len(smol_tokenizer), cfg).eval()
    letter_ids = llm.letter_token_ids(smol_tokenizer, cfg.n_candidates)
    stored = frozen.precompute_answer_one(model, smol_tokenizer, toy_catalog, ex, cfg.show_year, 1)
    path = tmp_path / "plain.pt"
    torch.save(frozen.to_plain(stored), path)
    back = frozen.from_plain(torch.load(path, weights_only=True), ex.queries)
    with torch.no_grad():
        for (q1, a), (q2, b) in zip(frozen.answer_query_logits(model, stored, 1, letter_ids, 2),
                                    frozen.answer_query_logits(model, back, 1, letter_ids, 2), strict=True):
            assert q1 is q2
            torch.testing.assert_close(a, b)
