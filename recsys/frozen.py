"""Exact fast path for training LoRA on the TOP layers only: run the frozen part of the model once.

With LoRA on layers ``first`` and up, layers below ``first`` are the base model's, so the prompt's
hidden state entering layer ``first`` is fixed per query. ``precompute`` stores it once;
``query_logits`` then runs only layers ``first``… (e.g. 6 of 30), epoch after epoch. The result
equals the full computation (``finetune.query_logits``) up to float rounding, gradients included;
tests/test_frozen.py checks it.

For answer-scoped adapters (llm.answer_hidden) the fixed part is larger still: the base model's keys
and values of every prompt token but the last, at each layer from ``first`` on, plus the answer
token entering layer ``first``. ``precompute_answer_one`` computes them (float16 by default, ~7 MB per
query for SmolLM2, ~500 tokens, layers 12-29); ``answer_batch_logits`` then runs ONE token through
the layers, so a step costs milliseconds instead of a full forward and backward.

Not for: inference (llm.py runs the whole model), data (finetune.py).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from recsys import llm, prompts
from recsys.catalog import Catalog, Movie


@dataclass(frozen=True)
class FrozenQuery:
    query: Any  # finetune.Query
    hidden: torch.Tensor  # (1, T, d): the whole prompt entering layer ``first``


@dataclass(frozen=True)
class FrozenExample:
    """One example's fixed inputs to the trainable layers, one per query."""

    n_candidates: int
    queries: tuple[FrozenQuery, ...] | tuple[AnswerQuery, ...]


@dataclass(frozen=True)
class AnswerQuery:
    query: Any  # finetune.Query
    hidden: torch.Tensor  # (1, 1, d): the answer token entering layer ``first``
    keys: tuple[torch.Tensor, ...]  # per layer from ``first`` on: (1, kv_heads, T - 1, head_dim), RoPE applied
    values: tuple[torch.Tensor, ...]

    @property
    def position(self) -> int:
        return self.keys[0].shape[2]


class _StoredPrefix:
    """What an attention layer asks of ``past_key_values``: the stored prefix, with the new token appended.

    ``keys``/``values``: per layer from ``first`` on, (B, kv_heads, T, head_dim).
    """

    def __init__(self, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], first: int):
        self.keys, self.values, self.first = keys, values, first

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        i = layer_idx - self.first
        return (torch.cat([self.keys[i].to(key.dtype), key], 2),
                torch.cat([self.values[i].to(value.dtype), value], 2))


def to_plain(example: FrozenExample) -> dict[str, Any]:
    """The stored inputs as tensors, numbers and strings only (no pickled classes: loadable with weights_only)."""
    queries = []
    for fq in example.queries:
        item = {"task": fq.query.task, "history": list(fq.query.history), "hidden": fq.hidden}
        if isinstance(fq, AnswerQuery):
            item |= {"keys": list(fq.keys), "values": list(fq.values)}
        queries.append(item)
    return {"n_candidates": example.n_candidates, "queries": queries}


def from_plain(stored: dict[str, Any], queries: Sequence[Any]) -> FrozenExample:
    """``to_plain``'s inputs with ``queries`` attached: the same tasks and histories, any labels."""
    if [(q.task, list(q.history)) for q in queries] != [(d["task"], d["history"]) for d in stored["queries"]]:
        raise ValueError("the stored base pass was computed for other prompts")
    out = [AnswerQuery(q, d["hidden"], tuple(d["keys"]), tuple(d["values"])) if "keys" in d else
           FrozenQuery(q, d["hidden"]) for q, d in zip(queries, stored["queries"], strict=True)]
    return FrozenExample(stored["n_candidates"], tuple(out))


def candidate_movies(catalog: Catalog, example: Any) -> list[Movie]:
    """A training example's candidates as its prompt shows them: with its own printed mean ratings when it
    carries them (``Example.shown``, leave-the-person-out), else the catalog's."""
    movies = [catalog[i] for i in example.candidates]
    shown = getattr(example, "shown", None)
    if shown is None:
        return movies
    return [replace(m, rating=r) for m, r in zip(movies, shown, strict=True)]


def example_prompts(catalog: Catalog, example: Any, show_year: bool,
                    template: str = prompts.TEMPLATE_VERSION) -> list[prompts.Prompt]:
    """One scoring prompt per query of a training example, as the ranker builds them: each query's own
    history, and (shared templates) the other query's history as the other side."""
    shown = prompts.texts(candidate_movies(catalog, example), show_year, True, template)
    histories = {q.task: prompts.texts([catalog[i] for i in q.history], show_year, template=template)
                 for q in example.queries}
    return [prompts.build(q.task, histories[q.task], shown, histories.get("neg" if q.task == "pos" else "pos", ()),
                          template) for q in example.queries]


@torch.no_grad()
def precompute_one(model: Any, tokenizer: Any, catalog: Catalog, example: Any, show_year: bool,
                   first: int, template: str = prompts.TEMPLATE_VERSION) -> FrozenExample:
    """What the base model hands layer ``first`` for each of the example's prompts."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    captured: list[torch.Tensor] = []
    hook = llm.base_decoder(model).layers[first].register_forward_pre_hook(
        lambda _m, args: captured.append(args[0].detach().clone()))
    try:
        with llm.adapters_off(model):
            for prompt in example_prompts(catalog, example, show_year, template):
                llm.full_hidden(model, [llm.prompt_ids(tokenizer, prompt)], pad)
    finally:
        hook.remove()
    return FrozenExample(len(example.candidates), tuple(FrozenQuery(q, h) for q, h in zip(example.queries, captured,
                                                                                            strict=True)))


def precompute(model: Any, tokenizer: Any, catalog: Catalog, examples: Sequence[Any], show_year: bool,
               first: int, desc: str = "frozen layers", template: str = prompts.TEMPLATE_VERSION) -> list[FrozenExample]:
    return [precompute_one(model, tokenizer, catalog, ex, show_year, first, template)
            for ex in tqdm(examples, desc=desc, mininterval=10)]


def query_logits(model: Any, example: FrozenExample, first: int, letter_ids: Sequence[int],
                 n_tasks: int) -> Iterator[tuple[Any, torch.Tensor]]:
    """(query, (1, n) fp32 letter logits) per query, running layers ``first``… with the query's adapter."""
    dec = llm.base_decoder(model)
    for fq in example.queries:
        if n_tasks > 1:
            model.set_adapter(fq.query.task)
        hidden = fq.hidden
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        rotary = dec.rotary_emb(hidden, positions)
        for layer in dec.layers[first:]:  # one unpadded causal sequence: no mask, no cache
            hidden = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=rotary)
        yield fq.query, llm.letter_logits(model, dec.norm(hidden)[:, -1], letter_ids[: example.n_candidates])


@torch.no_grad()
def precompute_answer_one(model: Any, tokenizer: Any, catalog: Catalog, example: Any, show_year: bool,
                          first: int, dtype: torch.dtype = torch.float16,
                          template: str = prompts.TEMPLATE_VERSION) -> FrozenExample:
    """The base model's keys/values before the answer token (layers ``first``…) and the answer token
    entering layer ``first``, for each of the example's prompts (answer-scoped adapters). Prompts that
    share a prefix (letters-v6: everything before the question) read it once, as the ranker does."""
    dec = llm.base_decoder(model)
    device = dec.embed_tokens.weight.device
    out: list[AnswerQuery] = []
    built = example_prompts(catalog, example, show_year, template)
    with llm.adapters_off(model):
        past, past_prefix = None, None
        for q, prompt in zip(example.queries, built, strict=True):
            prefix, suffix = llm.encode(tokenizer, prompt.prefix), llm.encode(tokenizer, prompt.suffix)
            if prompt.prefix != past_prefix:
                past = dec(input_ids=torch.tensor([prefix], device=device), use_cache=True).past_key_values
                past_prefix = prompt.prefix
            cache = copy.deepcopy(past)
            ids = torch.tensor([suffix], device=device)
            positions = torch.arange(len(prefix), len(prefix) + len(suffix), device=device)[None]
            if len(suffix) > 1:
                dec(input_ids=ids[:, :-1], position_ids=positions[:, :-1], past_key_values=cache, use_cache=True)
            keys = tuple(cache.layers[i].keys.to(dtype).clone() for i in range(first, len(dec.layers)))
            values = tuple(cache.layers[i].values.to(dtype).clone() for i in range(first, len(dec.layers)))
            captured: list[torch.Tensor] = []
            hook = dec.layers[first].register_forward_pre_hook(
                lambda _m, args, out=captured: out.append(args[0].detach().clone()))
            try:
                dec(input_ids=ids[:, -1:], past_key_values=cache, use_cache=True, position_ids=positions[:, -1:])
            finally:
                hook.remove()
            out.append(AnswerQuery(q, captured[0], keys, values))
    return FrozenExample(len(example.candidates), tuple(out))


def answer_query_logits(model: Any, example: FrozenExample, first: int, letter_ids: Sequence[int],
                        n_tasks: int) -> Iterator[tuple[Any, torch.Tensor]]:
    """(query, (1, n) fp32 letter logits) per query, one query at a time (``answer_batch_logits`` of one)."""
    for aq in example.queries:
        (group,) = answer_batch_logits(model, [FrozenExample(example.n_candidates, (aq,))], first, letter_ids, n_tasks)
        yield group[0]


def _left_padded(parts: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """(1, heads, T_i, head_dim) tensors -> (B, heads, width, head_dim), each at the right end (zeros before)."""
    out = parts[0].new_zeros((len(parts), parts[0].shape[1], width, parts[0].shape[3]))
    for row, t in enumerate(parts):
        out[row, :, width - t.shape[2]:] = t[0]
    return out


def answer_batch_logits(model: Any, examples: Sequence[FrozenExample], first: int, letter_ids: Sequence[int],
                        n_tasks: int) -> Iterator[list[tuple[Any, torch.Tensor]]]:
    """Every query of ``examples``, one batch per task (its adapter active): the answer tokens alone
    through layers ``first``…, each attending to its own stored base-model prefix (left-padded, masked).
    Yields [(query, (1, n) fp32 letter logits)] per task; batching reads each weight once per batch
    instead of once per query, which is what a one-token pass is bound by on a CPU."""
    dec = llm.base_decoder(model)
    by_task: dict[str, list[tuple[AnswerQuery, int]]] = {}
    for ex in examples:
        for aq in ex.queries:
            by_task.setdefault(aq.query.task, []).append((aq, ex.n_candidates))
    for task, group in by_task.items():
        if n_tasks > 1:
            model.set_adapter(task)
        width = max(aq.position for aq, _ in group)
        hidden = torch.cat([aq.hidden for aq, _ in group])  # (B, 1, d)
        device = hidden.device
        positions = torch.tensor([[aq.position] for aq, _ in group], device=device)
        mask = torch.zeros((len(group), 1, 1, width + 1), dtype=torch.bool, device=device)
        for row, (aq, _) in enumerate(group):
            mask[row, 0, 0, width - aq.position:] = True  # its own prefix and itself; not the left pads
        layers = range(len(group[0][0].keys))
        prefix = _StoredPrefix([_left_padded([aq.keys[i] for aq, _ in group], width) for i in layers],
                               [_left_padded([aq.values[i] for aq, _ in group], width) for i in layers], first)
        rotary = dec.rotary_emb(hidden, positions)
        for layer in dec.layers[first:]:
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, past_key_values=prefix,
                           position_embeddings=rotary)
        n_max = max(n for _, n in group)
        logits = llm.letter_logits(model, dec.norm(hidden)[:, -1], letter_ids[:n_max])
        yield [(aq.query, logits[row : row + 1, :n]) for row, (aq, n) in enumerate(group)]
