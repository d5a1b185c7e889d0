"""The frozen-feature fast path (recsys/frozen.py) computes what the full path computes, gradients too."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys import finetune, frozen, llm
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


def test_frozen_path_equals_the_full_path(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both", lora_layers=(1, 2), lora_dropout=0.0)
    users, _ = finetune.split_users(toy_split, cfg)
    examples = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)[:3]
    model = lora_model(len(smol_tokenizer), cfg).train()
    letter_ids = llm.letter_token_ids(smol_tokenizer, cfg.n_candidates)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)

    def run(scores):
        logits, grads = [], []
        for q, lg in scores:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(lg, torch.tensor([q.target])).backward()
            logits.append(lg.detach())
            grads.append([p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params])
        return logits, grads

    for ex in examples:
        full_logits, full_grads = run(finetune.query_logits(model, smol_tokenizer, toy_catalog, ex, cfg, letter_ids))
        fast = frozen.precompute_one(model, smol_tokenizer, toy_catalog, ex, cfg.show_year, 1)
        fast_logits, fast_grads = run(frozen.query_logits(model, fast, 1, letter_ids, n_tasks=2))
        assert len(full_logits) == len(fast_logits) == 2
        for a, b in zip(full_logits, fast_logits, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
            assert a.std() > 0.1  # the adapters change the scores, so the check means something
        for ga, gb in zip(full_grads, fast_grads, strict=True):
            for x, y in zip(ga, gb, strict=True):
                torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-3)
        assert any(float(g.abs().sum()) > 0 for g in fast_grads[0])


def test_training_on_frozen_features_learns(toy_split, toy_catalog, smol_tokenizer, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, task="both", lr=3e-2, epochs=12, eval_every=1000, lora_dropout=0.0,
                      lora_layers=(1,))
    users, _ = finetune.split_users(toy_split, cfg)
    examples = finetune.build_examples(toy_split, users, cfg, FakeRetriever(toy_catalog), 0)[:4]
    _, state = finetune.train_adapter(make_tiny_model(len(smol_tokenizer)), smol_tokenizer, toy_catalog,
                                      examples, examples, cfg)
    for t in cfg.tasks:
        assert state.evals[-1][f"{t}_loss"] < 0.5 * state.evals[0][f"{t}_loss"]
