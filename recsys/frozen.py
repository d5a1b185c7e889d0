"""Exact fast path for training LoRA on the TOP layers only: run the frozen part of the model once.

With LoRA on layers ``first`` and up, layers below ``first`` are the base model's, so what they hand
layer ``first`` is fixed per example. ``precompute`` stores it once; ``query_logits`` then runs only
layers ``first``… (e.g. 6 of 30), epoch after epoch. Two layouts, as in training and at inference:

- adapters on the whole prompt (``adapt_prefix``, the default): the prompt entering layer ``first``;
- a shared prefix read by the base model only: the prefix's keys/values in layers ``first``… plus the
  suffix entering layer ``first``; the trainable layers run on the suffix alone.

The result equals the full computation (``finetune.query_logits``) up to float rounding, gradients
included; tests/test_frozen.py checks both layouts.

Not for: inference (llm.py runs the whole model), data (finetune.py).
"""

from __future__ import annotations

import copy
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
    hidden: torch.Tensor  # (1, S, d): the suffix entering layer ``first``


@dataclass(frozen=True)
class FrozenExample:
    """One example's fixed inputs to the trainable layers.

    Shared-prefix adapters: the base model's prefix keys/values per layer from ``first``. Adapters that
    also encode the prefix (``adapt_prefix``): the prefix entering layer ``first`` (the same for every
    query, attention being causal), and the trainable layers run on prefix + suffix.
    """

    n_candidates: int
    prefix_len: int
    prefix_kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer from ``first``: (1, kv heads, P, hd)
    queries: tuple[FrozenQuery, ...]
    prefix_hidden: torch.Tensor | None = None  # (1, P, d), adapt_prefix only


class PrefixKV:
    """The slice of a cache the decoder layers use: each layer's prefix keys/values, then the suffix's own."""

    def __init__(self, prefix_kv: Sequence[tuple[torch.Tensor, torch.Tensor]], first: int):
        self.prefix_kv, self.first = prefix_kv, first

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *_: Any, **__: Any):
        prefix_keys, prefix_values = self.prefix_kv[layer_idx - self.first]
        return torch.cat([prefix_keys, keys], dim=2), torch.cat([prefix_values, values], dim=2)


def decoder(model: Any) -> Any:
    return model.get_base_model().get_decoder() if llm.is_peft(model) else model.get_decoder()


@torch.no_grad()
def precompute_one(model: Any, tokenizer: Any, catalog: Catalog, example: Any, show_year: bool,
                   first: int, adapt_prefix: bool = False) -> FrozenExample:
    """What the base model hands layer ``first`` for each of the example's queries (see FrozenExample)."""
    shown = [prompts.movie_text(catalog[i], show_year) for i in example.candidates]
    prefix = llm.encode(tokenizer, prompts.PREFIX)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    layers = decoder(model).layers
    captured: list[torch.Tensor] = []
    hook = layers[first].register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().clone()))
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    prefix_hidden = None
    try:
        with llm.adapters_off(model):
            cache = llm.prefix_cache(model, prefix)
            if adapt_prefix:
                prefix_hidden = captured.pop()
            else:
                kv = tuple((cache.layers[i].keys.clone(), cache.layers[i].values.clone())
                           for i in range(first, len(layers)))
            queries = []
            for q in example.queries:
                history = [prompts.movie_text(catalog[i], show_year) for i in q.history]
                suffix = llm.encode(tokenizer, prompts.task_suffix(q.task, history, shown))
                llm.suffix_hidden(model, copy.deepcopy(cache), len(prefix), [suffix], pad)
                queries.append(FrozenQuery(q, captured.pop()))
    finally:
        hook.remove()
    return FrozenExample(len(example.candidates), len(prefix), kv, tuple(queries), prefix_hidden)


def precompute(model: Any, tokenizer: Any, catalog: Catalog, examples: Sequence[Any], show_year: bool,
               first: int, adapt_prefix: bool = False, desc: str = "frozen layers") -> list[FrozenExample]:
    return [precompute_one(model, tokenizer, catalog, ex, show_year, first, adapt_prefix)
            for ex in tqdm(examples, desc=desc, mininterval=10)]


def causal_mask(prefix_len: int, suffix_len: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 1, S, P + S) additive mask: every suffix token sees the whole prefix and the suffix up to itself."""
    mask = torch.zeros(1, 1, suffix_len, prefix_len + suffix_len, dtype=dtype, device=device)
    future = torch.ones(suffix_len, suffix_len, dtype=torch.bool, device=device).triu(1)
    mask[0, 0, :, prefix_len:].masked_fill_(future, torch.finfo(dtype).min)
    return mask


def query_logits(model: Any, example: FrozenExample, first: int, letter_ids: Sequence[int],
                 n_tasks: int) -> Iterator[tuple[Any, torch.Tensor]]:
    """(query, (1, n) fp32 letter logits) per query, running layers ``first``… with the query's adapter."""
    dec = decoder(model)
    for fq in example.queries:
        if n_tasks > 1:
            model.set_adapter(fq.query.task)
        if example.prefix_hidden is not None:  # the whole prompt, causal, no cache
            hidden = torch.cat([example.prefix_hidden, fq.hidden], dim=1)
            positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
            rotary = dec.rotary_emb(hidden, positions)
            for layer in dec.layers[first:]:
                hidden = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=rotary)
            yield fq.query, llm.letter_logits(model, dec.norm(hidden)[:, -1], letter_ids[: example.n_candidates])
            continue
        hidden = fq.hidden
        suffix_len = hidden.shape[1]
        positions = torch.arange(example.prefix_len, example.prefix_len + suffix_len, device=hidden.device)[None]
        rotary = dec.rotary_emb(hidden, positions)
        mask = causal_mask(example.prefix_len, suffix_len, hidden.dtype, hidden.device)
        cache = PrefixKV(example.prefix_kv, first)
        for layer in dec.layers[first:]:
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, past_key_values=cache,
                           position_embeddings=rotary)
        yield fq.query, llm.letter_logits(model, dec.norm(hidden)[:, -1], letter_ids[: example.n_candidates])
