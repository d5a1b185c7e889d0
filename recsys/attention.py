"""Causal self-attention for the compiled CPU ranking pass: the prompt's queries in two blocks.

On a 2-core CPU, PyTorch's fused attention kernel (``scaled_dot_product_attention``, flash for CPU) takes
~4.8 ms per layer for a 450-token SmolLM2 prompt in bfloat16, 29% of the compiled ranking pass, although
its causal half is ~0.23 GFLOP per layer (a few hundred microseconds at the ~400 GFLOP/s this CPU's bf16
matrix products reach). Written as plain matrix products and a float32 softmax that inductor fuses, with
the queries split in two blocks so that the first half never multiplies the keys it may not see (75% of
the full square's work), the same attention takes ~3.1 ms, and the whole compiled pass 10–14% less
(docs/BENCHMARKS.md §2, "Session 26"). Uncompiled it is no faster than the fused kernel (the
mask and softmax then make their own passes over memory), so only ``CompiledAnswerPass`` uses it.

``chunked_causal_attention`` has the signature of transformers' attention functions (``AttentionInterface``)
and is registered under ``CHUNKED_ATTENTION`` (masks built as for "sdpa": none for an unpadded prompt).
Anything but an unpadded causal prompt (a padding or packing mask, a cache longer than the queries, dropout,
a GPU) goes to transformers' own sdpa function unchanged. Results equal sdpa's up to rounding
(tests/test_attention.py).

Not for: which prompts are read or how (llm.py).
"""

from __future__ import annotations

from typing import Any

import torch

CHUNKED_ATTENTION = "recsys_chunked_causal"
BLOCKS = 2  # query blocks; 2 measured fastest of 1-6 for 300-600 tokens compiled (3 and 4 within 10% of it)


def chunked_causal_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention of (B, H, T, D) queries over (B, G, T, D) keys and values (G divides H: grouped-query
    attention without repeating the keys), as (B, T, H, D) outputs, like transformers' sdpa function."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, length, dim = query.shape
    groups = key.shape[1]
    if (attention_mask is not None or key.shape[2] != length or length < 2 * BLOCKS or dropout
            or query.device.type != "cpu" or heads % groups or kwargs.get("is_causal") is False):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = dim ** -0.5 if scaling is None else scaling
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
    out = torch.cat(blocks, dim=3).view(batch, heads, length, dim)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make ``CHUNKED_ATTENTION`` a name transformers models accept (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CHUNKED_ATTENTION, chunked_causal_attention)
    AttentionMaskInterface.register(CHUNKED_ATTENTION, sdpa_mask)


def swap(model: Any, name: str) -> str:
    """Make ``model`` (a transformers model) run attention ``name``; returns the one it ran before."""
    before = model.config._attn_implementation
    model.set_attn_implementation(name)
    return before
