"""How much signal do simple movie facts carry for the adapters' training targets? (no model involved)

On the fine-tuning examples (``recsys.finetune.build_examples``: ml-latest-small, 20% of users, SASRec hard
negatives), rank each query's 20 candidates by one feature and report how often the target comes first
(top-1) and its MRR; then fit a softmax over beta * mean rating on the training examples and report its
cross-entropy on the validation examples: the loss an adapter that used the rating perfectly would reach,
against ln 20 for the uniform guess. Features use training data only; the mean rating leaves out the
adapters' own users, as the prompts do (``finetune.with_ratings``).

    python scripts/probe_signal.py --max-examples-per-user 10
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys import finetune  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import prepare  # noqa: E402


def features(catalog: Catalog, counts: Counter, query: finetune.Query, candidates: tuple[int, ...]) -> dict:
    seen = Counter(g for h in query.history for g in catalog[h].genres)
    overlap = [sum(seen[g] for g in catalog[c].genres) / max(1, len(catalog[c].genres)) for c in candidates]
    rating = [catalog[c].rating if catalog[c].rating is not None else 3.5 for c in candidates]
    return {"popularity": np.log1p([counts[c] for c in candidates]), "genre overlap with the history": np.array(overlap),
            "mean rating": np.array(rating)}


def softmax_ce(x: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, float]:
    z = beta * x
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean()), float((logp.argmax(1) == y).mean())


def main(args: argparse.Namespace) -> None:
    ds, split = prepare(args.dataset)
    cfg = finetune.FinetuneConfig(dataset=args.dataset, user_fraction=args.user_fraction,
                                  max_examples_per_user=args.max_examples_per_user)
    retriever, name = finetune.default_retriever(split, args.sasrec_dir, cfg.seed)
    train_users, val_users = finetune.split_users(split, cfg)
    catalog = finetune.with_ratings(Catalog(ds.items), split, [*train_users, *val_users])
    counts = Counter(int(split.item_ids[i]) for u in range(len(split.sequences)) for i in split.train(u))
    train = finetune.build_examples(split, train_users, cfg, retriever, cfg.seed)
    val = finetune.build_examples(split, val_users, cfg, retriever, cfg.seed + 1)[: args.max_val_examples]
    rng = np.random.default_rng(0)
    ranks: dict[tuple[str, str], list[int]] = {}
    for ex in train:
        for q in ex.queries:
            feats = features(catalog, counts, q, ex.candidates) | {"random": rng.random(len(ex.candidates))}
            for fname, v in feats.items():
                score = (-v if q.task == "neg" and fname != "genre overlap with the history" else v)
                score = score + 1e-9 * rng.random(len(v))  # random tie-break
                ranks.setdefault((q.task, fname), []).append(int((score > score[q.target]).sum()))
    print(f"{args.dataset}: {len(train)} training / {len(val)} validation examples; hard negatives: {name}")
    print("neg: lowest popularity / lowest mean rating first; pos: highest first\n")
    print("| feature | task | top-1 | MRR |\n|---|---|---|---|")
    for (task, fname), r in sorted(ranks.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        arr = np.array(r)
        print(f"| {fname} | {task} | {(arr == 0).mean():.3f} | {(1 / (arr + 1)).mean():.3f} |")
    print(f"\nsoftmax over beta * mean rating (beta fitted on training examples); uniform = ln 20 = {math.log(20):.3f}\n")
    print("| task | beta | train CE | validation CE | validation top-1 |\n|---|---|---|---|---|")
    def data(exs: list, task: str) -> tuple[np.ndarray, np.ndarray]:
        rows = [(features(catalog, counts, q, ex.candidates)["mean rating"], q.target)
                for ex in exs for q in ex.queries if q.task == task]
        return np.array([r for r, _ in rows]), np.array([t for _, t in rows])

    for task in ("pos", "neg"):
        x, y = data(train, task)
        xv, yv = data(val, task)
        beta = min(np.linspace(-10, 10, 81), key=lambda b: softmax_ce(x, y, b)[0])
        ce_val, acc_val = softmax_ce(xv, yv, beta)
        print(f"| {task} | {beta:.2f} | {softmax_ce(x, y, beta)[0]:.3f} | {ce_val:.3f} | {acc_val:.3f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--sasrec-dir", type=Path, default=None, help="default: assets/sasrec/<dataset> when there")
    p.add_argument("--user-fraction", type=float, default=0.2)
    p.add_argument("--max-examples-per-user", type=int, default=10)
    p.add_argument("--max-val-examples", type=int, default=100)
    main(p.parse_args())
