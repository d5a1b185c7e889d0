"""Where the ranking pass's time goes on this CPU, and whether int8 weights would buy it back.

The shipped ranker (base model + adapters, float32 where the CPU has no native bf16) scores 20
candidates for one ml-latest-small person (``bench_llm_latency.person``). This probe reports:

1. the CPU's float32 matmul ceiling (one GEMM shaped like the MLP's up projection over both prompts);
2. ``LetterRanker.score`` (both prompts, as the ranker runs them: one at a time on the CPU since session
   7) and the same two prompts through the base model as one padded batch vs one at a time unpadded;
3. dynamic int8 quantisation of every base Linear inside the decoder layers (torch.ao's
   ``quantize_dynamic``; the LoRA matrices and the LM head stay float32): its ``score`` time, and how
   far its scores agree with float32 on ``--people`` other people (Spearman per prompt, top-1 agreement).

The three float32 passes of item 2 are timed in turn (interleaved), so machine noise hits them alike.
Prints a markdown table with the command, machine and date.

    python scripts/probe_cpu_speed.py --runs 5 --people 8
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_llm_latency import add_model_args, person, preferences  # noqa: E402

from recsys import llm  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import mean_ratings, prepare  # noqa: E402


def median_s(fn: Callable[[], object], runs: int) -> float:
    return interleaved([fn], runs)[0]


def interleaved(fns: list[Callable[[], object]], runs: int) -> list[float]:
    """Median seconds of each of ``fns``, called in turn ``runs`` times (after one warm-up each), so a
    noisy machine slows every variant alike."""
    return [statistics.median(t) for t in interleaved_times(fns, runs)]


def interleaved_times(fns: list[Callable[[], object]], runs: int, warmup: int = 1) -> list[list[float]]:
    """Seconds of every call of each of ``fns``, called in turn ``runs`` times after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for times, fn in zip(out, fns, strict=True):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return out


def other_people(split, n: int, seed: int) -> list[tuple[list[int], list[int], list[int]]]:
    """``n`` people with >= 3 likes and >= 1 dislike, each with 20 random catalog candidates."""
    rng = np.random.default_rng(seed)
    pool = np.unique(split.item_ids)
    out = []
    for u in rng.permutation(len(split.sequences)):
        likes, dislikes, _ = preferences(split, u)
        if len(likes) >= 3 and dislikes:
            out.append((likes, dislikes, [int(i) for i in rng.choice(pool, 20, replace=False)]))
        if len(out) == n:
            break
    return out


def quantise_decoder_linears(model: torch.nn.Module) -> int:
    """Swap every base ``nn.Linear`` inside the decoder layers for a dynamic int8 one; returns how many."""
    from torch.ao.quantization import quantize_dynamic

    def q(linear: torch.nn.Linear) -> torch.nn.Module:
        return quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8)[0]

    layers = model.get_base_model().model.layers if llm.is_peft(model) else model.model.layers
    targets = [name for name, m in layers.named_modules() if type(m) is torch.nn.Linear and "lora_" not in name]
    for name in targets:  # peft's LoRA layers keep their base as ".base_layer": only that one is swapped
        parent, _, child = name.rpartition(".")
        owner = layers.get_submodule(parent)
        setattr(owner, child, q(getattr(owner, child)))
    return len(targets)


def main(args: argparse.Namespace) -> None:
    ds, split = prepare("ml-latest-small")
    catalog = Catalog(ds.items).with_ratings(mean_ratings(split))
    likes, dislikes, candidates = person(split, args.sasrec_dir)
    model, tokenizer = llm.load_base(args.base_model, args.cache_dir, "cpu")
    ranker = llm.LetterRanker(model, tokenizer, {n: args.adapters_dir / n for n in llm.ADAPTER_NAMES}, catalog)
    rows = [llm.prompt_ids(tokenizer, llm.prompts.build(t, ranker.texts(h), ranker.texts(candidates, candidates=True)))
            for t, h in (("pos", likes), ("neg", dislikes))]
    tokens = sum(len(r) for r in rows)

    x, w = torch.randn(tokens, 576), torch.randn(1536, 576)
    gemm = median_s(lambda: x @ w.T, args.runs)
    gflops = 2 * tokens * 576 * 1536 / gemm / 1e9

    @torch.inference_mode()
    def base(batch: list[list[int]]) -> None:
        with llm.adapters_off(ranker.model):
            llm.full_hidden(ranker.model, batch, ranker.pad_id)

    score, padded, apart = interleaved([lambda: ranker.score(likes, dislikes, candidates), lambda: base(rows),
                                        lambda: [base([r]) for r in rows]], args.runs)
    people = other_people(split, args.people, args.seed)
    reference = [ranker.score(*p) for p in people]

    swapped = quantise_decoder_linears(ranker.model)
    score_int8 = median_s(lambda: ranker.score(likes, dislikes, candidates), args.runs)
    rho, top1 = [], []
    for (lk, dk, c), ref in zip(people, reference, strict=True):
        new = ranker.score(lk, dk, c)
        for a, b in zip(ref, new, strict=True):
            rho.append(spearmanr(a, b).statistic)
            top1.append(int(np.argmax(a) == np.argmax(b)))

    print(f"command: `{' '.join(shlex.quote(a) for a in sys.argv)}`")  # noqa: T201
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({torch.backends.cpu.get_cpu_capability()}), "  # noqa: T201
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, dtype {model.dtype}; "
          f"date {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"prompts (pos, neg): {[len(r) for r in rows]} tokens; {args.runs} timed runs each, median\n")  # noqa: T201
    print("| measurement | value |\n|---|---|")  # noqa: T201
    print(f"| float32 GEMM ({tokens}×576 by 576×1536) | {gflops:.0f} GFLOP/s |")  # noqa: T201
    print(f"| `LetterRanker.score`, float32 (both adapters, as the ranker runs them) | {1000 * score:.0f} ms |")  # noqa: T201
    print(f"| base model, both prompts as one padded batch | {1000 * padded:.0f} ms |")  # noqa: T201
    print(f"| base model, the prompts one at a time, no padding | {1000 * apart:.0f} ms |")  # noqa: T201
    print(f"| `LetterRanker.score`, dynamic int8 ({swapped} Linear layers) | {1000 * score_int8:.0f} ms |")  # noqa: T201
    print(f"| int8 vs float32 scores, Spearman per prompt ({len(rho)} prompts, {len(people)} people) | "  # noqa: T201
          f"median {np.median(rho):.2f}, min {np.min(rho):.2f}, max {np.max(rho):.2f} |")
    print(f"| int8 vs float32, same top candidate | {sum(top1)} of {len(top1)} |")  # noqa: T201


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--people", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    return add_model_args(p)


if __name__ == "__main__":
    main(make_parser().parse_args())
