"""Exact fast path for training LoRA on the TOP layers only: run the frozen part of the model once.

With LoRA on layers ``first`` and up, layers below ``first`` are the base model's, so the prompt's
hidden state entering layer ``first`` is fixed per query. ``precompute`` stores it once;
``query_logits`` then runs only layers ``first``… (e.g. 6 of 30), epoch after epoch. The result
equals the full computation (``finetune.query_logits``) up to float rounding, gradients included;
tests/test_frozen.py checks it.

Not for: inference (llm.py runs the whole model), data (finetune.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from recsys import llm, prompts
from recsys.catalog import Catalog


@dataclass(frozen=True)
class FrozenQuery:
    query: Any  # finetune.Query
    hidden: torch.Tensor  # (1, T, d): the whole prompt entering layer ``first``


@dataclass(frozen=True)
class FrozenExample:
    """One example's fixed inputs to the trainable layers, one per query."""

    n_candidates: int
    queries: tuple[FrozenQuery, ...]


def decoder(model: Any) -> Any:
    return model.get_base_model().get_decoder() if llm.is_peft(model) else model.get_decoder()


@torch.no_grad()
def precompute_one(model: Any, tokenizer: Any, catalog: Catalog, example: Any, show_year: bool,
                   first: int) -> FrozenExample:
    """What the base model hands layer ``first`` for each of the example's prompts."""
    shown = prompts.texts([catalog[i] for i in example.candidates], show_year, candidates=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    captured: list[torch.Tensor] = []
    hook = decoder(model).layers[first].register_forward_pre_hook(
        lambda _m, args: captured.append(args[0].detach().clone()))
    try:
        with llm.adapters_off(model):
            for q in example.queries:
                history = prompts.texts([catalog[i] for i in q.history], show_year)
                llm.full_hidden(model, [llm.prompt_ids(tokenizer, prompts.build(q.task, history, shown))], pad)
    finally:
        hook.remove()
    return FrozenExample(len(example.candidates), tuple(FrozenQuery(q, h) for q, h in zip(example.queries, captured,
                                                                                            strict=True)))


def precompute(model: Any, tokenizer: Any, catalog: Catalog, examples: Sequence[Any], show_year: bool,
               first: int, desc: str = "frozen layers") -> list[FrozenExample]:
    return [precompute_one(model, tokenizer, catalog, ex, show_year, first)
            for ex in tqdm(examples, desc=desc, mininterval=10)]


def query_logits(model: Any, example: FrozenExample, first: int, letter_ids: Sequence[int],
                 n_tasks: int) -> Iterator[tuple[Any, torch.Tensor]]:
    """(query, (1, n) fp32 letter logits) per query, running layers ``first``… with the query's adapter."""
    dec = decoder(model)
    for fq in example.queries:
        if n_tasks > 1:
            model.set_adapter(fq.query.task)
        hidden = fq.hidden
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        rotary = dec.rotary_emb(hidden, positions)
        for layer in dec.layers[first:]:  # one unpadded causal sequence: no mask, no cache
            hidden = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=rotary)
        yield fq.query, llm.letter_logits(model, dec.norm(hidden)[:, -1], letter_ids[: example.n_candidates])
