"""Mechanism probes for the preference adapters: can they learn to point at a movie at all?

``--probe copy``: a positive-task example whose liked list CONTAINS the right answer (inserted at a
random place). Any adapter that can read its prompt must learn this in a few dozen steps; one that
cannot will never learn the real task.
``--probe rating``: a negative-task example whose answer is the candidate with the LOWEST mean rating
shown in the prompt (letters-v5): can an adapter read the number next to each title and point at the
smallest? Same data builder, trainer and fast path as recsys.finetune.
``--probe printed``: the graded data of ``recsys.finetune --labels rated`` (both tasks, the same prompts),
but every candidate is labelled with the mean rating PRINTED beside it instead of the person's own
rating: a listwise copy of numbers the prompt shows.
``--probe genres``: the same prompts, every candidate labelled with the share of the person's listed movies
that share one of its shown genre tags (for both tasks; session 5 used their count): can the answer match
candidates to the history, as the horror case (tests/test_real_smollm.py) needs?
Both relabel with ``finetune.mixed_labels``, which ``recsys.finetune --printed-weight/--genre-weight`` trains on.
For both, ``--run-dir`` of a graded run reuses its stored base pass (answer-scoped adapters), e.g.

    python scripts/probe_copy.py --probe printed --adapter-scope answer --lora-layers 12 ... 29 \
        --target-modules q_proj --run-dir runs/v8/run --epochs 10 --lr 2e-3

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
    p.add_argument("--probe", choices=["copy", "rating", "printed", "genres"], default="copy")
    p.add_argument("--lora-layers", type=int, nargs="+", default=[24, 25, 26, 27, 28, 29])
    p.add_argument("--target-modules", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"])
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--user-fraction", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--adapter-scope", choices=list(llm.SCOPES), default="all")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--person-weight", type=float, default=0.0,
                   help="printed: train on w * the person's rating + (1 - w) * the printed one; with w > 0 the "
                        "validation labels stay the person's own ratings")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--run-dir", type=Path, default=Path("runs/probe"), help="where a stored base pass is looked for")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    task = {"copy": "pos", "rating": "neg", "printed": "both", "genres": "both"}[args.probe]
    cfg = replace(finetune.FinetuneConfig(), task=task, user_fraction=args.user_fraction, max_examples_per_user=10,
                  val_users=30, max_val_examples=60, epochs=args.epochs, batch_size=16, lr=args.lr, warmup_steps=5,
                  eval_every=args.eval_every, lora_layers=tuple(args.lora_layers),
                  target_modules=tuple(args.target_modules), adapter_scope=args.adapter_scope, lora_r=args.lora_r,
                  run_dir=args.run_dir)
    if args.probe in ("printed", "genres"):  # the graded runs' data (docs/BENCHMARKS.md §2)
        cfg = replace(cfg, **{**finetune.GRADED_DATA, "user_fraction": args.user_fraction})
    ds, split = prepare(cfg.dataset)
    retriever, _ = finetune.default_retriever(split, Path("assets/sasrec/ml-latest-small"), cfg.seed)
    train_users, val_users = finetune.split_users(split, cfg)
    catalog = finetune.with_ratings(Catalog(ds.items), split, [*train_users, *val_users])  # as finetune.run
    train = finetune.build_examples(split, train_users, cfg, retriever, cfg.seed if cfg.labels == "rated" else 0)
    val = finetune.build_examples(split, val_users, cfg, retriever, cfg.seed + 1 if cfg.labels == "rated" else 1
                                  )[: cfg.max_val_examples]
    if args.probe == "genres":  # 5 stars for a candidate sharing a tag with every listed movie
        train, val = (finetune.mixed_labels(x, catalog, person=0.0, genre=5.0) for x in (train, val))
    elif args.probe == "printed":
        train = finetune.mixed_labels(train, catalog, args.person_weight, 1 - args.person_weight)
        val = val if args.person_weight > 0 else finetune.mixed_labels(val, catalog, person=0.0, printed=1.0)
    elif args.probe == "copy":
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
