"""The CPU ranking pass with recsys.attention's query blocks vs transformers' sdpa attention.

Four rankers over the shipped adapters, each on its own copy of the base model: eager (sdpa; the
reference scores), eager with the blocks compiled alone (``RankerConfig.compile_attention``, the app's
default since session 26), compiled whole with sdpa (what ``RECSYS_COMPILE`` ran before session 26) and
compiled whole with the blocks (what it runs now). Timed in turn on ``bench_llm_latency.person`` (so the machine's
noise hits them alike), and the other rankers' scores compared with the eager ones on ``--people``
other people (Spearman per prompt, same top candidate): the blocks must agree with eager as closely as
the compiled sdpa pass does. Prints a markdown table with the command, machine and date.

    python scripts/bench_attention.py --runs 20 --people 16 --threads 2
    python scripts/bench_attention.py --runs 20 --people 16 --threads 2 --no-whole   # the app's default alone
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_llm_latency import add_model_args, person  # noqa: E402
from probe_cpu_speed import interleaved_times, other_people  # noqa: E402

from recsys import attention, llm  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import mean_ratings, prepare  # noqa: E402


def interleaved_ms(fns: list, runs: int, warmup: int = 2) -> list[list[float]]:
    """Milliseconds of each of ``fns`` per call, called in turn ``runs`` times after ``warmup`` rounds."""
    return [[1000 * t for t in times] for times in interleaved_times(fns, runs, warmup)]


def print_provenance(details: str = "") -> None:
    """The command and the machine, as every table's first lines (``details`` ends the machine line)."""
    print(f"command: `{' '.join(shlex.quote(a) for a in sys.argv)}`")  # noqa: T201
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({torch.backends.cpu.get_cpu_capability()}), "  # noqa: T201
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}{details}; "
          f"date {datetime.now(UTC).isoformat(timespec='seconds')}")


def agreement(ranker, reference: list, people: list) -> tuple[list[float], list[int]]:
    rho, top1 = [], []
    for (likes, dislikes, candidates), ref in zip(people, reference, strict=True):
        for a, b in zip(ref, ranker.score(likes, dislikes, candidates), strict=True):
            rho.append(spearmanr(a, b).statistic)
            top1.append(int(np.argmax(a) == np.argmax(b)))
    return rho, top1


class Setup(NamedTuple):
    split: object
    catalog: Catalog
    person: tuple[list[int], list[int], list[int]]  # likes, dislikes, candidates: the one person timed
    model: torch.nn.Module
    tokenizer: object
    adapters: dict[str, Path]


def setup(args: argparse.Namespace, dtype: torch.dtype | None = None) -> Setup:
    """What the ranker benchmarks share: threads, ml-latest-small, the timed person, the base model, the adapters."""
    if args.threads:
        torch.set_num_threads(args.threads)
    ds, split = prepare("ml-latest-small")
    catalog = Catalog(ds.items).with_ratings(mean_ratings(split))
    model, tokenizer = llm.load_base(args.base_model, args.cache_dir, "cpu", dtype)
    return Setup(split, catalog, person(split, args.sasrec_dir), model, tokenizer,
                 {n: args.adapters_dir / n for n in llm.ADAPTER_NAMES})


def main(args: argparse.Namespace) -> None:
    split, catalog, (likes, dislikes, candidates), model, tokenizer, adapters = setup(args)
    eager = llm.LetterRanker(copy.deepcopy(model), tokenizer, adapters, catalog)
    start = time.perf_counter()
    alone = llm.LetterRanker(copy.deepcopy(model), tokenizer, adapters, catalog, llm.RankerConfig(compile_attention=True))
    alone_s = time.perf_counter() - start
    assert alone.attention == attention.COMPILED_ATTENTION and eager.attention == "sdpa"
    rankers = [eager, alone]
    rows = [("eager, sdpa attention (the app's default before)", None),
            ("eager, query blocks compiled alone (`compile_attention`, the app's default now)", alone_s)]
    if not args.no_whole:  # in the same process these made the blocks compiled alone as slow as sdpa (session 26)
        swap = attention.swap
        attention.swap = lambda m, name: m.config._attn_implementation  # this ranker keeps sdpa
        try:
            start = time.perf_counter()
            sdpa = llm.LetterRanker(copy.deepcopy(model), tokenizer, adapters, catalog, llm.RankerConfig(compile=True))
            sdpa_s = time.perf_counter() - start
        finally:
            attention.swap = swap
        start = time.perf_counter()
        blocks = llm.LetterRanker(model, tokenizer, adapters, catalog, llm.RankerConfig(compile=True))
        blocks_s = time.perf_counter() - start
        assert sdpa.compiled and blocks.compiled and sdpa.attention == "sdpa"
        assert blocks.attention == attention.CHUNKED_ATTENTION
        rankers += [sdpa, blocks]
        rows += [("compiled whole, sdpa attention (`RECSYS_COMPILE` before)", sdpa_s),
                 ("compiled whole, query blocks (`recsys.attention`, `RECSYS_COMPILE` now)", blocks_s)]

    # the floor the matrix products alone set: this CPU's bf16 GEMM rate (a prompt's rows by the MLP's up projection)
    # against 2 FLOP per weight of the decoder layers' Linear modules per token read
    lengths = [len(llm.prompt_ids(tokenizer, b)) for b in eager.prompts_for(likes, dislikes, candidates).values()]
    x, w = torch.randn(max(lengths), 576, dtype=model.dtype), torch.randn(1536, 576, dtype=model.dtype)
    gemm_ms = np.median(interleaved_ms([lambda: x @ w.T], 50)[0])
    gflops = 2 * max(lengths) * 576 * 1536 / gemm_ms / 1e6
    weights = sum(m.weight.numel() for name, m in llm.base_decoder(model).layers.named_modules()
                  if isinstance(m, torch.nn.Linear) and "lora_" not in name)  # the base weights, not the adapters
    floor_ms = 2 * weights * sum(lengths) / gflops / 1e6

    times = interleaved_ms([lambda r=r: r.score(likes, dislikes, candidates) for r in rankers], args.runs)
    people = other_people(split, args.people, args.seed)
    reference = [eager.score(*p) for p in people]

    print_provenance(f", dtype {model.dtype}")
    print(f"prompts (pos, neg): {lengths} tokens, template {eager.template}; adapters {args.adapters_dir}; "  # noqa: T201
          f"{args.runs} timed runs each, in turn; agreement with eager over {len(people)} people "
          f"(ml-latest-small, 20 random candidates, seed {args.seed})\n")
    print("| ranking pass (`LetterRanker.score`, both adapters) | p50 ms | p95 ms | built (compiled) in s "  # noqa: T201
          "| vs eager: Spearman per prompt (median, min) | same top candidate |")
    print("|---|---|---|---|---|---|")  # noqa: T201
    for (label, built), ranker, ms in zip(rows, rankers, times, strict=True):
        if ranker is eager:
            agree = "(reference) | (reference)"
        else:
            rho, top1 = agreement(ranker, reference, people)
            agree = f"{np.median(rho):.3f}, {np.min(rho):.3f} | {sum(top1)} of {len(top1)}"
        print(f"| {label} | {np.percentile(ms, 50):.0f} | {np.percentile(ms, 95):.0f} | "  # noqa: T201
              f"{'' if built is None else f'{built:.0f}'} | {agree} |")
    print(f"\nbf16 GEMM ({max(lengths)}×576 by 576×1536): {gflops:.0f} GFLOP/s; the decoder layers' Linear weights: "  # noqa: T201
          f"{weights / 1e6:.1f} M, so the {sum(lengths)} tokens read need {2 * weights * sum(lengths) / 1e9:.0f} GFLOP of "
          f"matrix products alone: **{floor_ms:.0f} ms** at that rate.")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--people", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-whole", action="store_true",
                   help="only the two eager rankers: no model compiled whole in the same process")
    return add_model_args(p)


if __name__ == "__main__":
    main(make_parser().parse_args())
