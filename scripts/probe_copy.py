"""Mechanism probes for the preference adapters: can they learn to point at a movie at all?

``--probe copy``: a positive-task example whose liked list CONTAINS the right answer (inserted at a
random place). Any adapter that can read its prompt must learn this in a few dozen steps; one that
cannot will never learn the real task.
``--probe rating``: a negative-task example whose answer is the candidate with the LOWEST mean rating
shown in the prompt (letters-v5): can an adapter read the number next to each title and point at the
smallest? Same data builder, trainer and fast path as recsys.finetune.

    python scripts/probe_copy.py --probe copy --lora-layers 24 25 26 27 28 29 --lr 3e-3

Prints the validation loss/accuracy per evaluation (uniform guess: ln 20 = 3.00, accuracy 0.05).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys import finetune, llm  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import prepare  # noqa: E402


def with_answer_in_history(examples: list[finetune.Example], seed: int) -> list[finetune.Example]:
    rng = np.random.default_rng(seed)
    out = []
    for ex in examples:
        q = ex.queries[0]
        history = list(q.history[: finetune.MAX_HISTORY["pos"] - 1])
        history.insert(int(rng.integers(0, len(history) + 1)), ex.candidates[q.target])
        out.append(finetune.Example(ex.candidates, (replace(q, history=tuple(history)),)))
    return out


def with_lowest_rated_target(examples: list[finetune.Example], catalog: Catalog) -> list[finetune.Example]:
    out = []
    for ex in examples:
        q = ex.queries[0]
        target = int(np.argmin([catalog[c].rating if catalog[c].rating is not None else 5.0 for c in ex.candidates]))
        out.append(finetune.Example(ex.candidates, (replace(q, target=target),)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probe", choices=["copy", "rating"], default="copy")
    p.add_argument("--lora-layers", type=int, nargs="+", default=[24, 25, 26, 27, 28, 29])
    p.add_argument("--target-modules", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"])
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--user-fraction", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    task = "pos" if args.probe == "copy" else "neg"
    cfg = replace(finetune.FinetuneConfig(), task=task, user_fraction=args.user_fraction, max_examples_per_user=10,
                  val_users=30, max_val_examples=60, epochs=args.epochs, batch_size=16, lr=args.lr, warmup_steps=5,
                  eval_every=10, lora_layers=tuple(args.lora_layers), target_modules=tuple(args.target_modules))
    ds, split = prepare(cfg.dataset)
    retriever, _ = finetune.default_retriever(split, Path("assets/sasrec/ml-latest-small"), cfg.seed)
    train_users, val_users = finetune.split_users(split, cfg)
    catalog = finetune.with_ratings(Catalog(ds.items), split, [*train_users, *val_users])  # as finetune.run
    train = finetune.build_examples(split, train_users, cfg, retriever, 0)
    val = finetune.build_examples(split, val_users, cfg, retriever, 1)[:60]
    if args.probe == "copy":
        train, val = with_answer_in_history(train, 0), with_answer_in_history(val, 1)
    else:
        train, val = with_lowest_rated_target(train, catalog), with_lowest_rated_target(val, catalog)
    model, tokenizer = llm.load_base(cfg.base_model, cfg.cache_dir, "cpu")
    started = time.time()
    _, state = finetune.train_adapter(model, tokenizer, catalog, train, val, cfg)
    print(json.dumps({"probe": args.probe, "template": llm.prompts.TEMPLATE_VERSION, "train_examples": len(train),
                      "wall_s": round(time.time() - started), "evals": state.evals}))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
