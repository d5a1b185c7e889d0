"""A listwise linear re-ranker over the retriever's 20, fitted on other users: how far can plain candidate
features move next-item NDCG?

Table 2's LLM rows ask a 135M model to re-order SASRec's top 20 from what the prompt shows: titles, genre
tags, the catalog's mean rating, and the person's liked / disliked movies. This module fits the same job
without a language model: each candidate gets a few numbers (SASRec's score and rank, the mean rating, its
genre match with the likes and with the dislikes, optionally its popularity), and a conditional logit
(softmax over the 20, one weight per feature, L2-penalised, L-BFGS from scipy) is trained to put the next
item first: the letter-logit objective of ``recsys.finetune`` with features instead of a transformer.
Fitted on one half of the users and applied to the other (``cross_fit_listwise``, the same folds as
``rerank_eval.cross_fit``), it is an honest estimate of what these facts are worth in the fusion; an
adapter that reads only these facts is unlikely to beat it by much.

Not for: the app (the pipeline fuses the LLM ranks, recsys/fusion.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize

from recsys.fusion import standardised

if TYPE_CHECKING:
    from recsys.catalog import Catalog
    from recsys.data import Split
    from recsys.rerank_eval import UserCase

RETRIEVAL = ("SASRec z-score", "SASRec log rank")
SHOWN = (*RETRIEVAL, "mean rating z", "genre match with likes", "genre match with dislikes")
WITH_POPULARITY = (*SHOWN, "log popularity z")


class CandidateFeatures:
    """Per-candidate feature rows for a ``UserCase``, from the training parts only (counts, mean ratings)
    and the catalog's genres as the prompts show them (``prompts.shown_genres``)."""

    def __init__(self, split: Split, catalog: Catalog, means: dict[int, float]):
        from recsys import prompts
        from recsys.data import training_counts

        self.counts = training_counts(split)
        self.means = means
        self.default_mean = float(np.mean(list(means.values()))) if means else 0.0
        self.genres = {m.item_id: frozenset(prompts.shown_genres(m)) for m in catalog}

    def match(self, history: Sequence[int], candidate: int) -> float:
        """Share of ``history`` sharing a shown genre tag with ``candidate`` (as finetune.genre_match)."""
        tags = self.genres.get(candidate, frozenset())
        return sum(bool(tags & self.genres.get(h, frozenset())) for h in history) / max(1, len(history))

    def __call__(self, case: UserCase, names: Sequence[str] = WITH_POPULARITY) -> np.ndarray:
        retrieval = retrieval_columns(case)
        cols = {
            "SASRec z-score": retrieval[:, 0],
            "SASRec log rank": retrieval[:, 1],
            "mean rating z": standardised(np.array([self.means.get(c, self.default_mean) for c in case.candidates])),
            "genre match with likes": np.array([self.match(case.likes, c) for c in case.candidates]),
            "genre match with dislikes": np.array([self.match(case.dislikes, c) for c in case.candidates]),
            "log popularity z": standardised(np.log1p([self.counts[c] for c in case.candidates])),
        }
        return np.stack([cols[name] for name in names], axis=1)


def retrieval_columns(case: UserCase) -> np.ndarray:
    """(n, 2): SASRec's score standardised over the list (non-finite -> the lowest finite; no scores: the
    order) and -log(1 + rank), the ``RETRIEVAL`` features every listwise row starts from."""
    n = len(case.candidates)
    base = np.asarray(case.base_scores, dtype=np.float64) if case.base_scores else -np.arange(n, dtype=np.float64)
    base = np.where(np.isfinite(base), base, np.min(base[np.isfinite(base)], initial=0.0))
    return np.stack([standardised(base), -np.log1p(np.arange(n, dtype=np.float64))], axis=1)


def user_folds(n: int, seed: int, folds: int = 2) -> np.ndarray:
    """The fold of each of ``n`` users: a seeded, balanced split (shared by every cross-fitted row)."""
    return np.random.default_rng(seed).permutation(n) % folds


def fit_listwise(features: Sequence[np.ndarray], targets: Sequence[int], l2: float = 1e-2) -> np.ndarray:
    """Weights w minimising the mean of -log softmax(X w)[target] over the lists, + l2 * |w|^2.

    ``features``: one (n_i, d) matrix per list; ``targets``: the index of the right candidate in each."""
    if not features:
        raise ValueError("no lists to fit on")
    d = features[0].shape[1]
    width = max(x.shape[0] for x in features)
    X = np.zeros((len(features), width, d))
    mask = np.full((len(features), width), -np.inf)
    for i, x in enumerate(features):
        X[i, : len(x)], mask[i, : len(x)] = x, 0.0
    t = np.asarray(targets)
    rows = np.arange(len(t))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = X @ w + mask
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        value = -np.mean(np.log(p[rows, t])) + l2 * w @ w
        grad = np.einsum("ij,ijk->k", p, X) / len(t) - X[rows, t].mean(axis=0) + 2 * l2 * w
        return float(value), grad

    return minimize(loss, np.zeros(d), jac=True, method="L-BFGS-B").x


def cross_fit_listwise(cases: Sequence[UserCase], features: Sequence[np.ndarray], seed: int, folds: int = 2,
                       l2: float = 1e-2, guard: float | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Target ranks when each fold's lists are ordered by weights fitted on the other folds' lists (only
    those whose target is among the candidates teach anything; with none, zero weights keep the retriever's
    order). Same fold draw as ``rerank_eval.cross_fit``. Returns the ranks and each fold's weights.

    ``guard`` (a one-sided level): a fold uses its fitted weights only if they earn their place on the other
    folds' users themselves, out of sample (``earns_its_place``); otherwise zero weights, the retriever's order."""
    from recsys.rerank_eval import reranked_rank

    fold = user_folds(len(cases), seed, folds)
    ranks, weights = np.empty(len(cases), dtype=np.int64), []
    for f in range(folds):
        rest = np.flatnonzero(fold != f)
        w = _fit_on(cases, features, rest, l2)
        if guard is not None and not earns_its_place(cases, features, rest, seed, l2, guard):
            w = np.zeros_like(w)
        weights.append(w)
        for i in np.flatnonzero(fold == f):
            order = np.argsort(-(features[i] @ w), kind="stable")
            ranks[i] = reranked_rank(cases[i], order)
    return ranks, weights


def _fit_on(cases: Sequence[UserCase], features: Sequence[np.ndarray], users: np.ndarray, l2: float) -> np.ndarray:
    """``fit_listwise`` on ``users``' lists whose target is among the candidates; with none (a handful of users),
    zero weights: the retriever's order."""
    teach = [i for i in users if cases[i].target_pos >= 0]
    return fit_listwise([features[i] for i in teach], [cases[i].target_pos for i in teach], l2) if teach \
        else np.zeros(features[0].shape[1])


def earns_its_place(cases: Sequence[UserCase], features: Sequence[np.ndarray], users: np.ndarray, seed: int,
                    l2: float, level: float) -> bool:
    """Whether a listwise logit fitted on ``users`` beats the retriever's order on them, judged out of sample:
    ``users`` are split in two (seeded), each half is ranked by weights fitted on the other, and the pooled
    per-user NDCG@10 gains over the retriever's order must be significantly positive
    (``rerank_eval.beats_incumbent`` at ``level``). In-sample gains would always look positive."""
    from recsys.metrics import ndcg_per_user
    from recsys.rerank_eval import beats_incumbent, reranked_rank

    inner = user_folds(len(users), seed + 1, 2)
    gains = []
    for g in range(2):
        w = _fit_on(cases, features, users[inner != g], l2)
        held = users[inner == g]
        fitted = np.array([reranked_rank(cases[i], np.argsort(-(features[i] @ w), kind="stable")) for i in held])
        kept = np.array([reranked_rank(cases[i], np.arange(len(features[i]))) for i in held])
        gains.append(ndcg_per_user(fitted, 10) - ndcg_per_user(kept, 10))
    return beats_incumbent(np.concatenate(gains), level)

