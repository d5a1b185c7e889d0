"""How much each decoder layer of the base model changes the ranking prompts' hidden states (ShortGPT's Block
Influence, Men et al. 2024): BI_l = 1 - cos(h_l, h_{l+1}), averaged over tokens, for real prompts.

Layers with the lowest BI change their input least and are the first candidates to drop from the ranking pass
(``finetune --base-layers``, ``llm.keep_layers``; docs/BENCHMARKS.md §2, "Session 16"). The prompts are the
shipped adapters' (each adapter's template) for ``--people`` ml-latest-small people with 20 random catalog
candidates each (``probe_cpu_speed.other_people``), read by the base model alone (no adapter), in float32.
Reports BI over all tokens and at the answer position (the last token, where the letters are scored).

    python scripts/probe_layer_influence.py --people 8 --threads 2
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_llm_latency import add_model_args  # noqa: E402
from probe_cpu_speed import other_people  # noqa: E402

from recsys import llm  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import mean_ratings, prepare  # noqa: E402


def block_influence(hidden_states: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(BI per layer over all tokens, BI per layer at the last token) from a model's ``hidden_states`` (embeddings,
    then each layer's output; batch of one)."""
    cos = [torch.nn.functional.cosine_similarity(a[0].float(), b[0].float(), dim=-1)
           for a, b in zip(hidden_states[:-1], hidden_states[1:], strict=True)]
    return np.array([1 - c.mean().item() for c in cos]), np.array([1 - c[-1].item() for c in cos])


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    ds, split = prepare("ml-latest-small")
    catalog = Catalog(ds.items).with_ratings(mean_ratings(split))  # as the app: training parts only
    model, tokenizer = llm.load_base(args.base_model, args.cache_dir, "cpu", torch.float32)
    ranker = llm.LetterRanker(model, tokenizer, {n: args.adapters_dir / n for n in llm.ADAPTER_NAMES}, catalog)
    every, last = [], []
    with torch.inference_mode(), llm.adapters_off(ranker.model):
        for likes, dislikes, candidates in other_people(split, args.people, args.seed):
            for prompt in ranker.prompts_for(likes, dislikes, candidates).values():
                ids = torch.tensor([llm.prompt_ids(tokenizer, prompt)])
                out = llm.base_decoder(ranker.model)(input_ids=ids, output_hidden_states=True)
                a, b = block_influence(out.hidden_states)
                every.append(a)
                last.append(b)
    every_mean, last_mean = np.mean(every, axis=0), np.mean(last, axis=0)
    print(f"command: `{' '.join(shlex.quote(a) for a in sys.argv)}`")  # noqa: T201
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "  # noqa: T201
          f"torch {torch.__version__}, float32; date {datetime.now(UTC).isoformat(timespec='seconds')}; "
          f"{len(every)} prompts (template {ranker.template}), base model without adapters\n")
    print("| layer | BI, all tokens | BI, answer position |")  # noqa: T201
    print("|---|---|---|")  # noqa: T201
    for i, (a, b) in enumerate(zip(every_mean, last_mean, strict=True)):
        print(f"| {i} | {a:.4f} | {b:.4f} |")  # noqa: T201
    for name, values in (("all tokens", every_mean), ("answer position", last_mean)):
        print(f"\nlowest {args.lowest} by BI, {name}: {sorted(np.argsort(values)[: args.lowest].tolist())}")  # noqa: T201


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--people", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lowest", type=int, default=6)
    p.add_argument("--threads", type=int, default=None)
    return add_model_args(p)  # --adapters-dir: whose templates the prompts use (--sasrec-dir unused)


if __name__ == "__main__":
    main(make_parser().parse_args())
