"""Causal self-attention for the CPU ranking pass: the prompt's queries in two blocks, compiled.

On a 2-core CPU, PyTorch's fused attention kernel (``scaled_dot_product_attention``, flash for CPU) takes
~4.8 ms per layer for a 450-token SmolLM2 prompt in bfloat16, 29% of the compiled ranking pass, although
its causal half is ~0.23 GFLOP per layer (a few hundred microseconds at the ~400 GFLOP/s this CPU's bf16
matrix products reach). Written as plain matrix products and a float32 softmax that inductor fuses, with
the queries split in two blocks so that the first half never multiplies the keys it may not see (75% of
the full square's work), the same attention takes ~3.1 ms (docs/BENCHMARKS.md §2, "Session 26"). Uncompiled
it is no faster than the fused kernel (the mask and softmax then make their own passes over memory), so it
always runs compiled, in one of two ways:

- ``CHUNKED_ATTENTION`` (``chunked_causal_attention``, plain torch code): inside a model that torch.compile
  compiles whole (``llm.CompiledAnswerPass``, ``RankerConfig.compile``): 10–14% less time per pass;
- ``COMPILED_ATTENTION`` (``compile_blocks``): the blocks compiled alone, one small graph (~10 s), for a model
  that otherwise runs eagerly (``RankerConfig.compile_attention``, the app's default): ~10% less time per pass
  without the minutes a whole-model compile costs at start.

Both are transformers attention functions (``AttentionInterface``; masks built as for "sdpa": none for an
unpadded prompt). Anything but an unpadded causal prompt (a padding or packing mask, a cache longer than the
queries, dropout, a GPU) goes to transformers' own sdpa function unchanged. Results equal sdpa's up to
rounding (tests/test_attention.py).

Not for: which prompts are read or how (llm.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

CHUNKED_ATTENTION = "recsys_chunked_causal"  # the blocks as plain torch code: for a model compiled whole
COMPILED_ATTENTION = "recsys_compiled_blocks"  # the blocks compiled alone: for an eager model (compile_blocks)
BLOCKS = 2  # query blocks; 2 measured fastest of 1-6 for 300-600 tokens compiled (3 and 4 within 10% of it)


def causal_blocks(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention of (B, H, T, D) queries over (B, G, T, D) keys and values (G divides H: grouped-query
    attention without repeating the keys) in ``BLOCKS`` query blocks; (B, T, H, D) outputs. Tensors only, so that
    it compiles alone into one small graph (``compile_blocks``)."""
    batch, heads, length, dim = query.shape
    groups = key.shape[1]
    per_group = heads // groups
    grouped = query.view(batch, groups, per_group, length, dim)
    softmax_dtype = torch.promote_types(query.dtype, torch.float32)  # float32 for bfloat16, as sdpa sums
    blocks = []
    for i in range(BLOCKS):
        start, end = length * i // BLOCKS, length * (i + 1) // BLOCKS
        rows = end - start
        q = grouped[:, :, :, start:end].reshape(batch, groups, per_group * rows, dim)
        weights = (q @ key[:, :, :end].transpose(-1, -2)).to(softmax_dtype) * scale
        position = torch.arange(start, end, device=query.device).repeat(per_group)[:, None]
        weights = weights.masked_fill(torch.arange(end, device=query.device)[None, :] > position, float("-inf"))
        out = weights.softmax(-1).to(value.dtype) @ value[:, :, :end]
        blocks.append(out.view(batch, groups, per_group, rows, dim))
    return torch.cat(blocks, dim=3).view(batch, heads, length, dim).transpose(1, 2).contiguous()


def applies(query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float,
            **kwargs: Any) -> bool:
    """Whether the blocks compute this call: an unpadded causal prompt on the CPU, no dropout."""
    length, heads, groups = query.shape[2], query.shape[1], key.shape[1]
    return (attention_mask is None and key.shape[2] == length and length >= 2 * BLOCKS and not dropout
            and query.device.type == "cpu" and not heads % groups and kwargs.get("is_causal") is not False)


def _attention_function(blocks: Callable[..., torch.Tensor]) -> Callable[..., tuple[torch.Tensor, None]]:
    """A transformers attention function that runs ``blocks`` where they apply and transformers' sdpa elsewhere."""

    def attend(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
               **kwargs: Any) -> tuple[torch.Tensor, None]:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        if not applies(query, key, attention_mask, dropout, **kwargs):
            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                          scaling=scaling, **kwargs)
        return blocks(query, key, value, query.shape[-1] ** -0.5 if scaling is None else scaling), None

    return attend


chunked_causal_attention = _attention_function(causal_blocks)
chunked_causal_attention.__doc__ = """Causal attention in query blocks, as transformers' sdpa function is called and
answers: (B, H, T, D) queries, (B, G, T, D) keys and values in; (B, T, H, D) outputs and no weights out."""


def register() -> None:
    """Make ``CHUNKED_ATTENTION`` a name transformers models accept (idempotent)."""
    _register(CHUNKED_ATTENTION, chunked_causal_attention)


def _register(name: str, function: Callable[..., tuple[torch.Tensor, None]]) -> None:
    """``function`` as transformers attention ``name``, its masks built as for sdpa (none for an unpadded prompt)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, sdpa_mask)


def compile_blocks(backend: str = "inductor") -> str:
    """Register ``COMPILED_ATTENTION``: ``causal_blocks`` through torch.compile alone (one small graph, the prompt
    length symbolic; ~10 s of a 2-core CPU on its first call) for a model that otherwise runs eagerly. Returns
    the name to ``swap`` in."""
    compiled = torch.compile(causal_blocks, dynamic=True, backend=backend)
    broken: list[Exception] = []

    def blocks(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
        if not broken:  # a compile that fails later (a new shape) must not fail the click: plain torch from then on
            try:
                return compiled(query, key, value, scale)
            except Exception as exc:  # noqa: BLE001
                broken.append(exc)
                log.warning("the compiled attention failed (%s: %s); running it uncompiled", type(exc).__name__,
                            str(exc)[:200])
        return causal_blocks(query, key, value, scale)

    _register(COMPILED_ATTENTION, _attention_function(blocks))
    return COMPILED_ATTENTION


def swap(model: Any, name: str) -> str:
    """Make ``model`` (a transformers model) run attention ``name``; returns the one it ran before."""
    before = model.config._attn_implementation
    model.set_attn_implementation(name)
    return before
