"""recsys.attention: the compiled CPU pass's causal attention in query blocks equals transformers' sdpa."""

from __future__ import annotations

import types

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from recsys import attention
from tests.test_llm import make_tiny_model, smol_tokenizer  # noqa: F401, F811  (fixture)

LAYER = types.SimpleNamespace(num_key_value_groups=3, is_causal=True, training=False)


def qkv(length: int, dtype=torch.float64, heads: int = 9, groups: int = 3, dim: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(1, heads, length, dim, generator=gen, dtype=dtype),
            torch.randn(1, groups, length, dim, generator=gen, dtype=dtype),
            torch.randn(1, groups, length, dim, generator=gen, dtype=dtype))


@pytest.mark.parametrize("length", [4, 5, 17, 64])
def test_blocks_give_sdpa_causal_attention(length):
    """Grouped-query causal attention, even and odd lengths (unequal blocks): sdpa's outputs, (B, T, H, D)."""
    q, k, v = qkv(length)
    got, _ = attention.chunked_causal_attention(LAYER, q, k, v, None, scaling=0.3)
    want, _ = sdpa_attention_forward(LAYER, q, k, v, None, scaling=0.3)
    assert got.shape == (1, length, 9, 8)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # each position sees only itself and earlier ones: changing the last key/value leaves the others as they were
    k2, v2 = k.clone(), v.clone()
    k2[:, :, -1] += 5
    v2[:, :, -1] -= 5
    moved, _ = attention.chunked_causal_attention(LAYER, q, k2, v2, None, scaling=0.3)
    torch.testing.assert_close(moved[:, :-1], got[:, :-1], rtol=1e-10, atol=1e-10)
    assert not torch.allclose(moved[:, -1], got[:, -1])


def test_the_default_scale_is_one_over_root_dim():
    q, k, v = qkv(6)
    got, _ = attention.chunked_causal_attention(LAYER, q, k, v, None)
    want, _ = sdpa_attention_forward(LAYER, q, k, v, None, scaling=8 ** -0.5)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_anything_but_an_unpadded_causal_prompt_goes_to_sdpa(monkeypatch):
    """A mask (padding, packing), a cache longer than the queries, or dropout: transformers' own function."""
    import transformers.integrations.sdpa_attention as sdpa

    calls = []
    monkeypatch.setattr(sdpa, "sdpa_attention_forward", lambda *a, **kw: calls.append(kw) or ("sdpa", None))
    q, k, v = qkv(6)
    mask = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    assert attention.chunked_causal_attention(LAYER, q, k, v, mask)[0] == "sdpa"
    assert attention.chunked_causal_attention(LAYER, q[:, :, -1:], k, v, None)[0] == "sdpa"  # a decoding step
    assert attention.chunked_causal_attention(LAYER, q, k, v, None, dropout=0.1)[0] == "sdpa"
    assert attention.chunked_causal_attention(LAYER, *qkv(3), None)[0] == "sdpa"  # shorter than the blocks
    assert len(calls) == 4
    assert attention.chunked_causal_attention(LAYER, q, k, v, None)[0] != "sdpa"


def test_a_model_runs_it_and_gets_its_own_back(smol_tokenizer, monkeypatch):  # noqa: F811
    """Swapped into a (tiny, float64) Llama: the same logits as its sdpa, computed by the blocks (an unpadded prompt
    gets no mask, so nothing falls back to sdpa), and swapping back restores the model's own attention."""
    import transformers.integrations.sdpa_attention as sdpa

    model = make_tiny_model(len(smol_tokenizer)).double()
    ids = torch.randint(0, len(smol_tokenizer), (1, 23), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = model(input_ids=ids).logits
        attention.register()
        before = attention.swap(model, attention.CHUNKED_ATTENTION)
        with monkeypatch.context() as patch:
            patch.setattr(sdpa, "sdpa_attention_forward", lambda *a, **kw: pytest.fail("fell back to sdpa"))
            got = model(input_ids=ids).logits
        assert attention.swap(model, before) == attention.CHUNKED_ATTENTION
    assert model.config._attn_implementation == before == "sdpa"
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_a_compiled_attention_that_fails_later_runs_the_blocks_uncompiled(monkeypatch, caplog):
    """A compile that breaks on a later call (e.g. a new shape) costs that call nothing: the blocks run uncompiled,
    and the compiled function is not tried again."""
    from transformers import AttentionInterface

    tries = []

    def failing(*args, **kwargs):
        tries.append(1)
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: failing)
    # the registration below is global: restored after the test
    monkeypatch.setitem(AttentionInterface._global_mapping, attention.COMPILED_ATTENTION, None)
    name = attention.compile_blocks("inductor")
    attend = AttentionInterface()[name]
    q, k, v = qkv(9)
    want, _ = sdpa_attention_forward(LAYER, q, k, v, None, scaling=0.3)
    for _ in range(2):
        got, _ = attend(LAYER, q, k, v, None, scaling=0.3)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert len(tries) == 1 and "running it uncompiled" in caplog.text
