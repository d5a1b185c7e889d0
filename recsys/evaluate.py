"""Offline benchmark: leave-one-out next-item ranking under two protocols, one table per dataset.

- full: every catalog item is a candidate; items in the person's history are masked (-inf).
- sampled-100: the test item against 100 random items the person never interacted with (fixed seed).
  Shown only beside full ranking (Krichene & Rendle, 2020: sampled metrics can reorder models).

Command: ``python -m recsys.evaluate --datasets ml-100k ml-latest-small --seeds 42 43 44``.
Not for: training code (training.py) or the LLM rows (fusion_bench.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from recsys.baselines import GRU4Rec, GRU4RecConfig, MostPopular
from recsys.data import Split, prepare
from recsys.metrics import summarize, target_rank
from recsys.sasrec import SASRec, SASRecConfig, SASRecRetriever, popularity_order
from recsys.training import TrainConfig, mask_seen, score_all, train_model

log = logging.getLogger(__name__)
PROTOCOLS = ("full", "sampled-100")
ScoreFn = Callable[[list[np.ndarray]], np.ndarray]  # histories -> (n, n_items + 1) scores


@dataclass(frozen=True)
class Holdout:
    histories: list[np.ndarray]  # train + validation item: the model input at test time
    targets: np.ndarray  # the last item of each sequence
    negatives: np.ndarray  # (n, 100) sampled unseen items, fixed seed


def holdout(split: Split, seed: int = 0, n_negatives: int = 100) -> Holdout:
    rng = np.random.default_rng(seed)
    histories = [s[:-1] for s in split.sequences]
    negatives = np.zeros((len(histories), n_negatives), dtype=np.int64)
    for u, seq in enumerate(split.sequences):
        pool = np.setdiff1d(np.arange(1, split.n_items + 1), seq, assume_unique=False)
        negatives[u] = rng.choice(pool, size=n_negatives, replace=len(pool) < n_negatives)
    return Holdout(histories, np.array([s[-1] for s in split.sequences]), negatives)


def protocol_ranks(scores: np.ndarray, ts: Holdout) -> dict[str, np.ndarray]:
    """Target ranks under both protocols from full score rows (n, n_items + 1)."""
    full = target_rank(mask_seen(scores.copy(), ts.histories), ts.targets)
    cols = np.concatenate([ts.targets[:, None], ts.negatives], axis=1)  # target in column 0
    sampled = target_rank(np.take_along_axis(scores, cols, axis=1), 0)
    return {"full": full, "sampled-100": sampled}


def evaluate_scores(score_fn: ScoreFn, split: Split, seed: int = 0) -> dict[str, dict[str, float]]:
    ts = holdout(split, seed)
    return {p: summarize(r) for p, r in protocol_ranks(score_fn(ts.histories), ts).items()}


def run_model(name: str, split: Split, seed: int, device: str, save: Path | None = None) -> tuple[dict, float]:
    """Train (if needed) and evaluate one model; returns metrics per protocol and training seconds.
    A trained SASRec is saved to ``save`` so the LLM benchmark re-ranks the very same retriever."""
    if name == "pop":
        pop = MostPopular(split)
        return evaluate_scores(pop.score_all, split, seed), 0.0
    cfg = TrainConfig(seed=seed, device=device)
    model = SASRec(split.n_items, SASRecConfig()) if name == "sasrec" else GRU4Rec(split.n_items, GRU4RecConfig())
    stats = train_model(model, split, cfg)
    model.cpu()
    if save is not None and isinstance(model, SASRec):
        SASRecRetriever(model, split.item_ids, popularity_order(split), {"seed": seed, "stats": stats}).save(save)
    return evaluate_scores(lambda h: score_all(model, h, cfg.max_len), split, seed), stats["seconds"]


def markdown(results: dict, dataset: str) -> str:
    """One table: a row per model, columns per protocol; mean ± sd over seeds."""
    cols = list(next(iter(results.values()))["runs"][0]["metrics"]["full"])
    head = "| model | train s | " + " | ".join(f"{p} {c}" for p in PROTOCOLS for c in cols) + " |"
    lines = [f"**{dataset}** (5-core, leave-one-out, seen items masked; mean ± sd over seeds)", "", head,
             "|" + "---|" * (2 + len(cols) * len(PROTOCOLS))]
    for model, res in results.items():
        cells = [model, f"{np.mean([r['seconds'] for r in res['runs']]):.0f}"]
        for p in PROTOCOLS:
            for c in cols:
                vals = [r["metrics"][p][c] for r in res["runs"]]
                cells.append(f"{np.mean(vals):.4f} ± {np.std(vals):.4f}" if len(vals) > 1 else f"{vals[0]:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark most-popular, GRU4Rec and SASRec.")
    p.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small"])
    p.add_argument("--models", nargs="+", default=["pop", "gru4rec", "sasrec"])
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs/benchmark.json"))
    return p


def main(datasets: list[str], models: list[str], seeds: list[int], device: str, out: Path) -> str:
    all_results, tables = {}, []
    for dataset in datasets:
        _, split = prepare(dataset)
        results = {m: {"runs": []} for m in models}
        for seed in seeds:
            for m in models:
                save = out.parent / "models" / f"{dataset}-{m}-{seed}"
                metrics, seconds = run_model(m, split, seed, device, save)
                results[m]["runs"].append({"seed": seed, "metrics": metrics, "seconds": seconds})
                log.info("%s %s seed %d: %s", dataset, m, seed, json.dumps(metrics["full"]))
        all_results[dataset] = results
        tables.append(markdown(results, dataset))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(all_results, indent=1))
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    stamp = f"_{datetime.now(UTC):%Y-%m-%d}, {machine}, seeds {seeds}_"
    return "\n\n".join([stamp, *tables])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    print(main(**vars(make_parser().parse_args())))  # noqa: T201
    log.info("total %.0f s", time.perf_counter() - t0)
