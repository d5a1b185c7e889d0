"""Does int8 (AVX512-VNNI) buy the CPU ranking pass anything? A probe, not product code.

This CPU multiplies int8 matrices (``torch._int_mm``) about twice as fast as bfloat16 ones, so int8 would halve the
floor the matrix products set (docs/BENCHMARKS.md §2, "Session 26"). This swaps the decoder layers' base Linear
modules (the adapters' LoRA terms stay in their own dtype) for W8A8 ones: weights per output channel, activations
per token, both symmetric absmax to int8, the int32 product rescaled to bfloat16; the quantising and rescaling
compiled by inductor around ``torch._int_mm``; one variant first divides each input channel by SmoothQuant's factor
(and multiplies the weight's by it: the same product) read from the unquantised model's passes over another draw of
people, so that outlier channels stop setting every token's scale. Rankers are timed in turn on ``bench_llm_latency.person``, and their
scores compared with the bfloat16 ranker's (the app's default: the attention compiled alone) and with a float32
one's on ``--people`` other people (Spearman per prompt, same top candidate), next to bfloat16's own distance from
float32. Prints markdown with the command, machine and date.

    python scripts/probe_int8.py --runs 12 --people 16 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import sys
import types
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_attention import agreement, interleaved_ms, print_provenance, setup  # noqa: E402
from bench_llm_latency import add_model_args  # noqa: E402
from probe_cpu_speed import other_people  # noqa: E402

from recsys import llm  # noqa: E402

ATTENTION_IN = ("q_proj", "k_proj", "v_proj")
MLP_IN = ("gate_proj", "up_proj")
ALL = (*ATTENTION_IN, "o_proj", *MLP_IN, "down_proj")
VARIANTS = {"all": ALL, "mlp-in": MLP_IN, "attention-in + mlp-in": ATTENTION_IN + MLP_IN}


def w8a8_matmul(x: torch.Tensor, qweight: torch.Tensor, wscale: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    """x (M, K) bfloat16 @ the int8 weight (K, N) with per-channel scales: x / ``smooth`` (K,) quantised per row
    (token); the weight was multiplied by ``smooth`` along K before it was quantised, so the product is x's."""
    x_s = x.float() / smooth
    scale = x_s.abs().amax(-1, keepdim=True).clamp(min=1e-6) / 127
    q = torch.round(x_s / scale).to(torch.int8)
    return (torch._int_mm(q, qweight).float() * scale * wscale).to(x.dtype)


_compiled = torch.compile(w8a8_matmul, dynamic=True)


def w8a8_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] <= 16:  # _int_mm wants more rows; the answer positions alone stay in bfloat16
        return torch.nn.functional.linear(x, self.weight, self.bias)
    y = _compiled(rows, self.qweight, self.wscale, self.smooth).reshape(*x.shape[:-1], -1)
    return y if self.bias is None else y + self.bias


def base_linears(model: torch.nn.Module, names: tuple[str, ...]) -> dict[str, torch.nn.Linear]:
    """The decoder layers' base Linear modules named in ``names`` (peft keeps a LoRA layer's base as .base_layer)."""
    out = {}
    for name, m in llm.base_decoder(model).layers.named_modules():
        parts = name.split(".")
        own = parts[-2] if parts[-1] == "base_layer" else parts[-1]
        if type(m) is torch.nn.Linear and "lora_" not in name and own in names:
            out[name] = m
    return out


def quantise(model: torch.nn.Module, names: tuple[str, ...], smooth: dict[str, torch.Tensor] | None = None) -> int:
    """Swap the forward of every base Linear named in ``names`` for a W8A8 one; returns how many. ``smooth``: per
    module, the SmoothQuant factors (``smoothing``) that move activation outliers into the weights."""
    linears = base_linears(model, names)
    for name, m in linears.items():
        quantise_linear(m, None if smooth is None else smooth[name])
    return len(linears)


@torch.inference_mode()
def smoothing(ranker: llm.LetterRanker, names: tuple[str, ...], people: list, alpha: float = 0.5) -> dict[str, torch.Tensor]:
    """SmoothQuant's per-input-channel factors max|X_j|^α / max|W_j|^(1-α) (Xiao et al., 2023) for each base Linear,
    the activations' maxima read from ``ranker``'s own passes over ``people``."""
    linears = base_linears(ranker.model, names)
    amax = {name: torch.zeros(m.in_features) for name, m in linears.items()}

    def record(name: str):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            amax[name] = torch.maximum(amax[name], args[0].detach().abs().float().reshape(-1, args[0].shape[-1]).amax(0))
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in linears.items()]
    try:
        for p in people:
            ranker.score(*p)
    finally:
        for h in hooks:
            h.remove()
    return {name: (amax[name].clamp(min=1e-5) ** alpha / m.weight.detach().float().abs().amax(0).clamp(min=1e-5)
                   ** (1 - alpha)).clamp(min=1e-5) for name, m in linears.items()}


def quantise_linear(m: torch.nn.Linear, smooth: torch.Tensor | None = None) -> None:
    smooth = torch.ones(m.in_features) if smooth is None else smooth.float()
    w = m.weight.detach().float() * smooth
    s = w.abs().amax(1).clamp(min=1e-8) / 127
    m.register_buffer("qweight", torch.round(w / s[:, None]).to(torch.int8).t().contiguous(), persistent=False)
    m.register_buffer("wscale", s, persistent=False)
    m.register_buffer("smooth", smooth, persistent=False)
    m.forward = types.MethodType(w8a8_forward, m)


def gemm_rates(tokens: int, runs: int = 50) -> tuple[float, float]:
    """This CPU's bfloat16 and int8 GEMM rates (GFLOP/s, GOP/s) for a prompt's rows by the MLP's up projection."""
    x, w = torch.randn(tokens, 576, dtype=torch.bfloat16), torch.randn(576, 1536, dtype=torch.bfloat16)
    xi, wi = torch.randint(-127, 127, (tokens, 576), dtype=torch.int8), torch.randint(-127, 127, (576, 1536),
                                                                                         dtype=torch.int8)
    bf16, int8 = (np.median(t) for t in interleaved_ms([lambda: x @ w, lambda: torch._int_mm(xi, wi)], runs))
    return 2 * tokens * 576 * 1536 / bf16 / 1e6, 2 * tokens * 576 * 1536 / int8 / 1e6


def linear_times(tokens: int, runs: int = 50) -> list[tuple[int, int, float, float, float]]:
    """Per decoder Linear shape (K, N): ms for a bfloat16 Linear, the W8A8 one (quantise + int8 product + rescale,
    compiled) and the int8 product alone, on ``tokens`` rows."""
    out = []
    for k, n in ((576, 1536), (1536, 576), (576, 576), (576, 192)):
        linear = torch.nn.Linear(k, n, bias=False, dtype=torch.bfloat16)
        w8a8 = copy.deepcopy(linear)
        x = torch.randn(tokens, k, dtype=torch.bfloat16)
        quantise_linear(w8a8)
        xi = torch.randint(-127, 127, (tokens, k), dtype=torch.int8)
        fns = [partial(linear, x), partial(w8a8, x), partial(torch._int_mm, xi, w8a8.qweight)]
        with torch.inference_mode():
            out.append((k, n, *(float(np.median(t)) for t in interleaved_ms(fns, runs, 5))))
    return out


def main(args: argparse.Namespace) -> None:
    split, catalog, (likes, dislikes, candidates), model, tokenizer, adapters = setup(args, torch.bfloat16)
    config = llm.RankerConfig(compile_attention=True)

    def ranker(base: torch.nn.Module = model) -> llm.LetterRanker:
        return llm.LetterRanker(copy.deepcopy(base), tokenizer, adapters, catalog, config)

    bf16 = ranker()
    fp32 = llm.LetterRanker(copy.deepcopy(model).float(), tokenizer, adapters, catalog)
    people = other_people(split, args.people, args.seed)
    calibration = other_people(split, args.people, args.seed + 1)  # another draw: the factors are not fitted on the test
    quantised, swapped = [], []
    for names in VARIANTS.values():
        r = ranker()
        swapped.append(quantise(r.model, names))
        quantised.append(r)
    smoothed = ranker()
    swapped.append(quantise(smoothed.model, ALL, smoothing(smoothed, ALL, calibration)))
    quantised.append(smoothed)
    ref_bf16 = [bf16.score(*p) for p in people]
    ref_fp32 = [fp32.score(*p) for p in people]
    rankers = [bf16, *quantised]
    times = interleaved_ms([lambda r=r: r.score(likes, dislikes, candidates) for r in rankers], args.runs)
    lengths = [len(llm.prompt_ids(tokenizer, b)) for b in bf16.prompts_for(likes, dislikes, candidates).values()]
    bf16_rate, int8_rate = gemm_rates(max(lengths))
    per_linear = linear_times(max(lengths))

    print_provenance()
    print(f"prompts (pos, neg): {lengths} tokens; adapters {args.adapters_dir}; {args.runs} timed runs each, in "  # noqa: T201
          f"turn; agreement over {len(people)} people (ml-latest-small, 20 random candidates, seed {args.seed}); "
          f"GEMM ({max(lengths)}×576 by 576×1536): bfloat16 {bf16_rate:.0f} GFLOP/s, int8 {int8_rate:.0f} GOP/s\n")
    print("| ranking pass (`LetterRanker.score`, both adapters) | Linear modules in int8 | p50 ms | p95 ms "  # noqa: T201
          "| vs bfloat16: Spearman per prompt (median, min); same top | vs float32: Spearman (median, min); same top |")
    print("|---|---|---|---|---|---|")  # noqa: T201
    labels = ["bfloat16, the attention compiled alone (the app's default)",
              *(f"W8A8: {label}" for label in VARIANTS), "W8A8: all, smoothed (SmoothQuant, α = 0.5)"]
    for label, n, r, ms in zip(labels, [0, *swapped], rankers, times, strict=True):
        cells = []
        for reference in (ref_bf16, ref_fp32):
            if r is bf16 and reference is ref_bf16:
                cells.append("(reference)")
                continue
            rho, top1 = agreement(r, reference, people)
            cells.append(f"{np.median(rho):.3f}, {np.min(rho):.3f}; {sum(top1)} of {len(top1)}")
        print(f"| {label} | {n} | {np.percentile(ms, 50):.0f} | {np.percentile(ms, 95):.0f} | "  # noqa: T201
              f"{cells[0]} | {cells[1]} |")
    print(f"\n| one decoder Linear, {max(lengths)} rows (in → out) | bfloat16 ms | W8A8 ms (quantise, int8 product, "  # noqa: T201
          "rescale) | the int8 product alone ms |")
    print("|---|---|---|---|")  # noqa: T201
    for k, n, bf16_ms, w8a8_ms, int8_ms in per_linear:
        print(f"| {k} → {n} | {bf16_ms:.2f} | {w8a8_ms:.2f} | {int8_ms:.2f} |")  # noqa: T201


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--people", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    return add_model_args(p)


if __name__ == "__main__":
    main(make_parser().parse_args())
