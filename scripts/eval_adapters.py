"""Each preference adapter on its own: does it rank the held-out target above chance, calibrated or not?

On the fine-tuning validation examples (users disjoint from the training users, built exactly as
``recsys.finetune`` builds them), score every query's 20 candidates through ``LetterRanker`` (the app's
code path) and report per task: cross-entropy of the letter softmax (uniform = ln 20), top-1 and MRR of
the target; the same after letter-bias calibration (each letter's logit on content-free prompts
subtracted, Zhao et al. 2021), for the fine-tuned adapters and for the base model (zero-shot); and the
same 20 candidates ordered at random, by popularity, by mean rating and by genre match with the query's listed
movies (the clear case's heuristic). Issue 8, item 6.

``--labels rated``: the graded validation examples instead (every candidate is a movie the person rated
soon after, ``recsys.finetune --labels rated``), with one more column per task: the mean Spearman
correlation of each scorer's order with the person's own ratings (pos: high first, neg: low first);
the mean rating's column is the bar an adapter trained on these labels must clear. The fine-tuned
Spearman carries its 95% t-interval over queries; ``--rho-out`` stores each query's correlation, and
``--paired-with`` (another run's ``--rho-out``, same validation queries) prints this run − that one per
query with a 95% t-interval: two adapter pairs compared on the same people.

``--labels session``: the candidates are the retriever's (what a session shows), each labelled with the person's
later rating or "unknown" (``recsys.finetune --labels session``); graded the same way. ``--task neg`` (or pos) keeps
the examples a one-task adapter trained on were built from (``both``: only lists with a liked and a disliked movie).

    python scripts/eval_adapters.py --adapters assets/adapters
    python scripts/eval_adapters.py --adapters runs/new --labels rated --rho-out runs/new.json \\
        --paired-with runs/shipped.json
    python scripts/eval_adapters.py --checkpoint runs/fast/v5/both/checkpoint.pt \\
        --lora-layers 24 25 26 27 28 29 --target-modules q_proj k_proj v_proj o_proj
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys import finetune, llm  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import prepare  # noqa: E402
from recsys.sim.metrics import mean_ci  # noqa: E402


def adapters_from_checkpoint(model, cfg: finetune.FinetuneConfig, checkpoint: Path, folder: Path) -> dict[str, Path]:
    """Write the adapters a training checkpoint holds as peft folders (the base ``model`` is left unwrapped)."""
    from peft import set_peft_model_state_dict

    peft_model = finetune.add_lora(model, cfg)
    blob = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for name, state in blob["adapters"].items():
        set_peft_model_state_dict(peft_model, state, adapter_name=name)
    peft_model.save_pretrained(str(folder), selected_adapters=list(blob["adapters"]))
    peft_model.unload()
    print(f"checkpoint {checkpoint}: step {blob['state']['step']}")
    return {name: folder / name for name in blob["adapters"]}


def metrics(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """(n, 20) scores, (n,) target indices -> cross-entropy of softmax(scores), top-1, MRR.

    A target tied with other candidates gets the mean of the places they share (top-1: its share of the first
    place), so a coarse scorer (a genre match in fifths) is not credited with every tie broken its way."""
    z = scores - scores.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    target = scores[np.arange(len(targets)), targets][:, None]
    above, tied = (scores > target).sum(1), (scores == target).sum(1)  # tied counts the target itself
    places = [np.arange(a, a + t) for a, t in zip(above, tied, strict=True)]  # 0-based places the ties share
    return {"ce": float(-logp[np.arange(len(targets)), targets].mean()),
            "top1": float(np.mean([np.mean(p == 0) for p in places])),
            "mrr": float(np.mean([np.mean(1 / (p + 1)) for p in places]))}


TUNED = "fine-tuned"  # the adapters' own row of the table


def query_key(q: finetune.Query, candidates: Sequence[int]) -> str:
    """Names one validation query (task, history, candidates, target), so two runs can be paired safely."""
    return f"{q.task}|{','.join(map(str, q.history))}|{','.join(map(str, candidates))}|{q.target}"


def paired_rows(this: dict, other: dict) -> list[str]:
    """Markdown rows: per task, this − other in per-query Spearman (mean, 95% t-interval), on shared queries.

    ``this``/``other`` are ``--rho-out`` records: {"adapters", "keys": {task: [...]}, "rho": {task: [...]}}
    (a rho is None where a query's ratings tie throughout). The two must hold the same queries in the
    same order: another validation set would pair unrelated people.
    """
    rows = [f"| task | queries | {this['adapters']} | {other['adapters']} | difference [95% CI] |", "|---|---|---|---|---|"]
    for task in this["rho"]:  # the tasks this run scored (--task neg: "neg" only)
        if this["keys"][task] != other["keys"].get(task):
            raise ValueError(f"{task}: the two runs scored different validation queries; rerun with the same "
                             "--dataset, --user-fraction, --max-examples-per-user, --val-users, --max-val-examples")
        pairs = [(a, b) for a, b in zip(this["rho"][task], other["rho"][task], strict=True)
                 if a is not None and b is not None]
        if not pairs:
            continue
        a, b = (np.array(v, dtype=np.float64) for v in zip(*pairs, strict=True))
        mean, lo, hi, n = mean_ci(a - b)
        rows.append(f"| {task} | {n} | {a.mean():.3f} | {b.mean():.3f} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] |")
    return rows


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cfg = finetune.FinetuneConfig(
        dataset=args.dataset, user_fraction=args.user_fraction, max_examples_per_user=args.max_examples_per_user,
        val_users=args.val_users, lora_layers=tuple(args.lora_layers) if args.lora_layers else None,
        target_modules=tuple(args.target_modules), labels=args.labels, task=args.task, base_model=args.base_model,
    )
    ds, split = prepare(cfg.dataset)
    retriever, _ = finetune.default_retriever(split, args.sasrec_dir, cfg.seed)
    train_users, val_users = finetune.split_users(split, cfg)
    catalog = finetune.with_ratings(Catalog(ds.items), split, [*train_users, *val_users])
    val = finetune.build_examples(split, val_users, cfg, retriever, cfg.seed + 1)[: args.max_val_examples]
    model, tokenizer = llm.load_base(cfg.base_model, args.cache_dir, "cpu")
    folder = Path(tempfile.mkdtemp())
    adapters = (adapters_from_checkpoint(model, cfg, args.checkpoint, folder) if args.checkpoint
                else {n: args.adapters / n for n in llm.ADAPTER_NAMES})
    ranker = llm.LetterRanker(model, tokenizer, adapters, catalog, llm.RankerConfig(orders=args.orders))
    counts = Counter(int(split.item_ids[i]) for u in range(len(split.sequences)) for i in split.train(u))
    rng = np.random.default_rng(0)

    rows: dict[str, dict[str, list]] = {}
    targets: dict[str, list[int]] = {"pos": [], "neg": []}
    queries: dict[str, list[finetune.Query]] = {"pos": [], "neg": []}
    keys: dict[str, list[str]] = {"pos": [], "neg": []}
    ranker.config = replace(ranker.config, calibrate=True)  # each letter's content-free logit, measured once
    names = (lambda task: (task,)) if args.no_zero_shot else (lambda task: (task, llm.BASE))
    bias = {(name, task): np.asarray(ranker.letter_bias(name, task, cfg.n_candidates))
            for task in llm.ADAPTER_NAMES for name in names(task)}
    ranker.config = replace(ranker.config, calibrate=False)  # raw scores below; calibration applied here
    for ex in tqdm(val, desc="validation examples", mininterval=10):
        cands = list(ex.candidates)
        hist = {q.task: list(q.history) for q in ex.queries}
        where = np.empty((args.orders, len(cands)), dtype=np.int64)  # order, candidate -> its letter's position
        for j in range(args.orders):
            where[j, ranker.prompt_order(cands, j)] = np.arange(len(cands))
        tuned = ranker.score(hist.get("pos", []), hist.get("neg", []), cands)
        zero = None if args.no_zero_shot else ranker.score_zero_shot(hist.get("pos", []), hist.get("neg", []), cands)
        rating = np.array([catalog[c].rating or 3.5 for c in cands])
        for q in ex.queries:
            side = 0 if q.task == "pos" else 1
            sign = 1.0 if q.task == "pos" else -1.0
            got = {
                TUNED: tuned[side], "fine-tuned, calibrated": tuned[side] - bias[(q.task, q.task)][where].mean(0),
                **({} if zero is None else {
                    "base model (zero-shot)": zero[side],
                    "base model, calibrated": zero[side] - bias[(llm.BASE, q.task)][where].mean(0)}),
                "random order": rng.random(len(cands)),
                "popularity (pos: most rated first; neg: least)": sign * np.log1p([counts[c] for c in cands]),
                "mean rating (pos: highest first; neg: lowest)": sign * 2.0 * rating,
                # what the clear case asks and the training labels' genre term pays for: like the listed movies
                "genre match with the listed movies (most first)": 2.0 * np.array(
                    [finetune.genre_match(catalog, q.history, c) for c in cands]),
            }
            for name, s in got.items():
                rows.setdefault(name, {"pos": [], "neg": []})[q.task].append(np.asarray(s, dtype=np.float64))
            targets[q.task].append(q.target)
            queries[q.task].append(q)
            keys[q.task].append(query_key(q, cands))

    source = args.checkpoint or args.adapters
    print(f"command: `{' '.join(shlex.quote(a) for a in sys.argv)}`; {datetime.now(UTC):%Y-%m-%d}; adapters: {source}")
    trained = {n: m["n_train_users"] for n, m in ranker.metadata.items() if "n_train_users" in m}  # e.g. --train-all
    people = ", ".join(f"{n} {k}" for n, k in trained.items()) if trained else len(train_users)
    print(f"{len(val)} validation examples from {len(val_users)} users disjoint from the adapters' training users "
          f"({people}); uniform: CE ln 20 = {math.log(20):.3f}, top-1 0.05, MRR 0.180. CE of the reference orders "
          "is the softmax of their score (not fitted), so read their top-1/MRR.\n")
    graded = args.labels in ("rated", "session")
    tasks = [t for t in ("pos", "neg") if targets[t]]
    cols = ["CE", "top-1", "MRR", *(["Spearman"] if graded else [])]
    print("| scorer | " + " | ".join(f"{t} {c}" for t in tasks for c in cols) + " |")
    print("|---" * (1 + len(tasks) * len(cols)) + "|")
    tuned_rho: dict[str, list[float | None]] = {}
    for name, by_task in rows.items():
        cells = []
        for task in tasks:
            m = metrics(np.stack(by_task[task]), np.asarray(targets[task]))
            cells += [f"{m['ce']:.3f}", f"{m['top1']:.3f}", f"{m['mrr']:.3f}"]
            if graded:
                rho = [finetune.graded_correlation(q, s) for q, s in zip(queries[task], by_task[task], strict=True)]
                mean, lo, hi, _ = mean_ci([r for r in rho if r is not None])
                if name == TUNED:  # the row two runs are compared on: its interval, and its values kept
                    cells.append(f"{mean:.3f} ± {(hi - lo) / 2:.3f}")
                    tuned_rho[task] = rho
                else:
                    cells.append(f"{mean:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if not graded:
        return
    record = {"adapters": str(source), "keys": {t: keys[t] for t in tasks}, "rho": tuned_rho}
    if args.rho_out:
        args.rho_out.parent.mkdir(parents=True, exist_ok=True)
        args.rho_out.write_text(json.dumps(record))
    if args.paired_with:
        print(f"\nFine-tuned Spearman per query, this run − {args.paired_with} (same queries):\n")
        print("\n".join(paired_rows(record, json.loads(args.paired_with.read_text()))))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapters", type=Path, default=Path("assets/adapters"))
    p.add_argument("--checkpoint", type=Path, default=None, help="a finetune checkpoint.pt instead of --adapters")
    p.add_argument("--lora-layers", type=int, nargs="+", default=None, help="as trained (checkpoint only)")
    p.add_argument("--target-modules", nargs="+", default=["q_proj", "v_proj"], help="as trained (checkpoint only)")
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--sasrec-dir", type=Path, default=None, help="default: assets/sasrec/<dataset> when there")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    p.add_argument("--base-model", default=finetune.FinetuneConfig().base_model, help="the adapters' base model")
    p.add_argument("--user-fraction", type=float, default=0.2)
    p.add_argument("--max-examples-per-user", type=int, default=10)
    p.add_argument("--val-users", type=int, default=60)
    p.add_argument("--max-val-examples", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--orders", type=int, default=1, choices=range(1, 17), metavar="K",
                   help="score under this many candidate orders and average (RankerConfig.orders)")
    p.add_argument("--no-zero-shot", action="store_true", help="skip the base-model rows (half the time)")
    p.add_argument("--labels", choices=["next", "rated", "session"], default="next",
                   help="next-item validation examples, graded ones (every candidate rated by the person), or the "
                        "retriever's candidates labelled with later ratings (session)")
    p.add_argument("--task", choices=["pos", "neg", "both"], default="both",
                   help="which queries the validation examples are built for (as the adapters' --task)")
    p.add_argument("--rho-out", type=Path, default=None,
                   help="with --labels rated or session: write each query's fine-tuned Spearman here (JSON)")
    p.add_argument("--paired-with", type=Path, default=None,
                   help="with --labels rated or session: another run's --rho-out; print this − that per query")
    args = p.parse_args()
    if (args.rho_out or args.paired_with) and args.labels == "next":
        p.error("--rho-out and --paired-with need graded labels (--labels rated or session)")
    main(args)
