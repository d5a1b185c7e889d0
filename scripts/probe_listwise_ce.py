"""How many nats below the uniform guess can candidate facts take the next-item cross-entropy over SASRec's 20?

The adapters are trained and validated by the cross-entropy of the 20 letter logits against the next movie
(``recsys.finetune``, ``--labels next``); a validation loss at ln 20 reads as "learned nothing". This probe
asks what a perfect user of each set of facts would reach on the same kind of lists: a listwise logit
(``recsys.listwise.fit_listwise``) fitted on one half of the users whose target is in SASRec's top 20 and
scored on the other half (and in-sample, an optimistic bound), for feature sets with and without SASRec's
own score (the LLM never sees that score: its prompt shows titles, genre tags and mean ratings).

Command: ``python scripts/probe_listwise_ce.py --dataset ml-latest-small --seeds 42 43 44``
(needs runs/models from ``python -m recsys.evaluate``, as ``recsys.rerank_eval`` does).
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.catalog import Catalog  # noqa: E402
from recsys.data import mean_ratings, prepare  # noqa: E402
from recsys.evaluate import holdout  # noqa: E402
from recsys.listwise import (  # noqa: E402
    RETRIEVAL,
    SHOWN,
    WITH_POPULARITY,
    CandidateFeatures,
    cross_fit_listwise,
    fit_listwise,
    user_folds,
)
from recsys.rerank_eval import user_cases  # noqa: E402
from recsys.sasrec import SASRecRetriever  # noqa: E402
from recsys.training import score_all  # noqa: E402

FACTS = SHOWN[len(RETRIEVAL):]  # mean rating, genre match with the likes and with the dislikes
SETS = {
    "SASRec score and rank": RETRIEVAL,
    "prompt facts only (what the adapter sees)": FACTS,
    "prompt facts + popularity": (*FACTS, "log popularity z"),
    "SASRec + prompt facts": SHOWN,
    "SASRec + prompt facts + popularity": WITH_POPULARITY,
}


def cross_entropy(features: list[np.ndarray], targets: list[int], w: np.ndarray) -> float:
    s = np.stack([x @ w for x in features])
    s = s - s.max(axis=1, keepdims=True)
    return float(-np.mean(s[np.arange(len(targets)), targets] - np.log(np.exp(s).sum(axis=1))))


def probe(dataset: str, seed: int, models_dir: Path, protocols: list[str]) -> dict[str, dict[str, tuple]]:
    """Per protocol and feature set: (cross-fitted CE, in-sample CE, number of lists)."""
    ds, split = prepare(dataset)
    means = mean_ratings(split)
    retriever = SASRecRetriever.load(models_dir / f"{dataset}-sasrec-{seed}")
    ho = holdout(split, seed)
    scores = score_all(retriever.model, ho.histories, retriever.model.cfg.max_len)
    featurize = CandidateFeatures(split, Catalog(ds.items), means)
    out: dict[str, dict[str, tuple]] = {}
    for protocol in protocols:
        cases = [c for c in user_cases(split, scores, ho, protocol) if c.target_pos >= 0]
        targets = [c.target_pos for c in cases]
        fold = user_folds(len(cases), seed)
        out[protocol] = {}
        for name, cols in SETS.items():
            X = [featurize(c, cols) for c in cases]
            _, weights = cross_fit_listwise(cases, X, seed)  # weights[f]: fitted on the users outside fold f
            crossed = 0.0
            for f, w in enumerate(weights):
                held = np.flatnonzero(fold == f)
                crossed += cross_entropy([X[i] for i in held], [targets[i] for i in held], w) * len(held)
            out[protocol][name] = (crossed / len(cases), cross_entropy(X, targets, fit_listwise(X, targets)), len(cases))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--seeds", nargs="+", type=int, default=[42])
    p.add_argument("--models-dir", type=Path, default=Path("runs/models"))
    p.add_argument("--protocols", nargs="+", default=["full", "sampled-100"])
    args = p.parse_args()
    results = {(s, pr): r for s in args.seeds for pr, r in probe(args.dataset, s, args.models_dir, args.protocols).items()}
    print(f"_{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, torch {torch.__version__}; {args.dataset}, "  # noqa: T201
          f"leave-one-out, users whose target is in SASRec's 20; uniform guess ln 20 = {np.log(20):.3f}_\n")
    cols = list(results)
    print("| features (listwise logit) | " + " | ".join(  # noqa: T201
        f"seed {s} {pr} (n = {next(iter(results[(s, pr)].values()))[2]}): cross-fitted / in-sample CE" for s, pr in cols)
        + " |")
    print("|" + "---|" * (1 + len(cols)))  # noqa: T201
    for name in SETS:
        print(f"| {name} | " + " | ".join(f"{results[c][name][0]:.3f} / {results[c][name][1]:.3f}" for c in cols) + " |")  # noqa: T201


if __name__ == "__main__":
    main()
