"""Tables and the per-round plot of a feedback-loop simulation run (the dict ``recsys.simulate.run`` returns).

Paired comparisons: every condition sees the same people, so differences against SASRec are computed
per person first and given a 95% t-interval over people. Not for: running sessions (session.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recsys.sim.metrics import mean_ci

PROTOCOL = (
    "rating-aware split (per person, the chronologically last 20% of ratings, at least 5, are held out as "
    "future opinions; SASRec trained on the rest); 5-core data; each round shows k = 10 movies never shown "
    "before and never rated before; the person answers 👍 for a held-out rating >= 4, 👎 for <= 2, nothing "
    "for 3 or an unrated movie; answers feed back as the app's clicks (newest first, shown movies excluded); "
    "full ranking over the catalog (no sampled negatives); mean ± 95% t-interval half-width over people"
)
BASELINE = "SASRec"


def _cell(values: np.ndarray, digits: int = 3) -> str:
    mean, lo, hi, n = mean_ci(values)
    return "–" if n == 0 else f"{mean:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"


def _arrays(result: Mapping[str, Any], scenario: str, cond: str) -> dict[str, np.ndarray]:
    return {m: np.asarray(v, dtype=np.float64) for m, v in result["per_user"][scenario][cond].items()}


def paired_delta(a: np.ndarray, b: np.ndarray, unit: Literal["%", "pp", "count"]) -> str:
    """a − b per person, mean and 95% CI, in ``unit``: "%" of b's mean, percentage "pp" (a and b are shares), or
    "count", a's own units (e.g. movies per person)."""
    mean, lo, hi, n = mean_ci(a - b)
    base = float(np.nanmean(b)) if n else 0.0
    if n == 0 or (unit == "%" and base == 0):
        return "–"
    scale, shown, digits = {"%": (100.0 / base if base else 0.0, "%", 0), "pp": (100.0, " pp", 1),
                            "count": (1.0, "", 2)}[unit]
    return f"{mean * scale:+.{digits}f}{shown} [{lo * scale:+.{digits}f}, {hi * scale:+.{digits}f}]"


def _mean_delta(a: np.ndarray, b: np.ndarray, stop: int, unit: Literal["%", "pp"] = "pp") -> str:
    """Paired Δ of each person's mean over rounds 1..``stop`` (rows = people, columns = rounds)."""
    return paired_delta(a[:, :stop].mean(1), b[:, :stop].mean(1), unit)


def _dislike_like_deltas(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], r3: int) -> list[str]:
    """Disliked movies shown in ``r3`` rounds (relative to b's) and like share over rounds 1..r3 (pp)."""
    return [paired_delta(a["cum_disliked"][:, r3 - 1], b["cum_disliked"][:, r3 - 1], "%"),
            _mean_delta(a["like_share"], b["like_share"], r3)]


def rounds_table(result: Mapping[str, Any], scenario: str) -> list[str]:
    """One row per condition: liked/disliked share by round, NDCG, cumulative counts, deltas vs SASRec."""
    n_rounds = result["config"]["rounds"]
    shown = sorted({0, min(2, n_rounds - 1), n_rounds - 1})
    r3 = min(3, n_rounds)
    head = (["condition"] + [f"👍 share r{r + 1}" for r in shown] + [f"👎 share r{r + 1}" for r in shown]
            + ["graded NDCG@10 r1", f"liked found, {n_rounds} rounds", f"disliked shown, {r3} rounds",
               f"Δ disliked, {r3} rounds, vs SASRec", f"Δ 👍 share r1–{r3} vs SASRec", "Δ graded NDCG@10 r1 vs SASRec"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = _arrays(result, scenario, BASELINE)
    for cond in result["per_user"][scenario]:
        m = _arrays(result, scenario, cond)
        cells = [cond] + [_cell(m["like_share"][:, r]) for r in shown] + [_cell(m["dislike_share"][:, r]) for r in shown]
        cells += [_cell(m["ndcg"][:, 0]), _cell(m["cum_liked"][:, -1], 2), _cell(m["cum_disliked"][:, r3 - 1], 2)]
        if cond == BASELINE:
            cells += ["(reference)"] * 3
        else:
            cells += [*_dislike_like_deltas(m, base, r3), _mean_delta(m["ndcg"], base["ndcg"], 1, "%")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def burst_table(result: Mapping[str, Any]) -> list[str]:
    """Share of the burst genre by round, without (warm start) and with the 3 injected dislikes, the
    paired difference over the first three rounds, and, after the burst, the paired difference against
    SASRec (which only hides the 3 disliked movies): what the negative side adds to hiding. The genre was
    picked as the most frequent in the first SASRec list, so its share falls over rounds anyway
    (regression to the mean): compare columns. Without a warm run the no-burst columns are "–"."""
    n_rounds = result["config"]["rounds"]
    shown = sorted({0, min(2, n_rounds - 1), n_rounds - 1})
    r3 = min(3, n_rounds)
    head = (["condition"] + [f"no burst r{r + 1}" for r in shown] + [f"after burst r{r + 1}" for r in shown]
            + [f"Δ r1–{r3} (burst − no burst)", f"Δ r1–{r3} after burst vs SASRec"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = _arrays(result, "burst", BASELINE)["genre_share"] if BASELINE in result["per_user"]["burst"] else None
    for cond in result["per_user"]["burst"]:
        after = _arrays(result, "burst", cond)["genre_share"]
        keep = ~np.isnan(after[:, 0])
        warm = result["per_user"].get("warm", {})
        ref = cond if cond in warm else BASELINE  # burst-only conditions: against SASRec without the burst
        before = _arrays(result, "warm", ref)["genre_share"][keep] if ref in warm else None
        cells = [cond] + [("–" if before is None else _cell(before[:, r]) + ("" if ref == cond else " (SASRec)"))
                          for r in shown]
        cells += [_cell(after[keep, r]) for r in shown]
        cells.append("–" if before is None else _mean_delta(after[keep], before, r3))
        cells.append("(reference)" if cond == BASELINE else "–" if base is None else _mean_delta(after, base, r3))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# (what is measured, condition, reference): name prefixes; a reference prefix that matches two rows (α = 0.6 and
# the validation α) takes the validation row, or without one the row with the condition's α; every matching row
# is a condition
COMPARISONS = (
    ("the negative adapter, beside the same positive adapter", "SASRec + LLM pos+neg (", "SASRec + LLM pos ("),
    ("the negative adapter vs the embedding baseline, same positive adapter", "SASRec + LLM pos+neg (",
     "SASRec + LLM pos + emb-neg ("),
    ("LLM pos+neg vs the embedding baseline alone", "SASRec + LLM pos+neg (", "SASRec + emb-neg ("),
    ("LLM pos+neg vs the rating baseline", "SASRec + LLM pos+neg (", "SASRec + rating-neg ("),
    # simulate --blend-neg: what each half of the blended negative side adds, beside the same positive adapter
    ("the rating added to the negative adapter", "SASRec + LLM pos + LLM neg & rating-neg (", "SASRec + LLM pos+neg ("),
    ("the negative adapter added to the rating", "SASRec + LLM pos + LLM neg & rating-neg (",
     "SASRec + LLM pos + rating-neg ("),
    ("the blend vs the embedding baseline, same positive adapter", "SASRec + LLM pos + LLM neg & rating-neg (",
     "SASRec + LLM pos + emb-neg ("),
)


def comparisons_table(result: Mapping[str, Any], scenario: str) -> list[str]:
    """Paired differences between the LLM conditions and the rows they must beat (issue 8: the LLM must
    beat the non-LLM negative baseline): disliked movies shown in 3 rounds (relative to the reference) and
    like share over rounds 1–3; in the burst scenario the burst genre's share in list 1 and over rounds 1–3
    (people without a burst genre are NaN rows and drop out). Empty when the run has no LLM conditions."""
    conds = list(result["per_user"][scenario])
    r3 = min(3, result["config"]["rounds"])
    if scenario == "burst":
        head = ["Δ burst-genre share r1", f"Δ burst-genre share r1–{r3}"]
        cells = lambda a, b: [_mean_delta(a["genre_share"], b["genre_share"], 1),  # noqa: E731
                              _mean_delta(a["genre_share"], b["genre_share"], r3)]
    else:
        head = [f"Δ disliked, {r3} rounds", f"Δ 👍 share r1–{r3}"]
        cells = lambda a, b: _dislike_like_deltas(a, b, r3)  # noqa: E731
    lines = []
    for what, cond_prefix, ref_prefix in COMPARISONS:
        refs = [c for c in conds if c.startswith(ref_prefix)]
        for cond in (c for c in conds if c.startswith(cond_prefix)) if refs else ():
            ref = next((c for c in refs if c.endswith("val)")), None) or next(
                (c for c in refs if _alpha(c) == _alpha(cond)), refs[0])  # the tuned row, else the same α
            lines.append("| " + " | ".join([what, cond, ref, *cells(_arrays(result, scenario, cond),
                                                                     _arrays(result, scenario, ref))]) + " |")
    if not lines:
        return []
    head = ["what", "condition", "reference", *head]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *lines]


def runs_table(new: Mapping[str, Any], old: Mapping[str, Any], scenario: str) -> list[str]:
    """Two runs of the same people (e.g. two adapter pairs), each condition the runs share paired per person
    across them (``new`` − ``old``): in the burst scenario the burst genre's share in list 1 and over rounds 1–3,
    then, in every scenario, disliked movies shown in 3 rounds (relative to ``old``), like share over rounds
    1–3, list 1's graded NDCG@10 (relative) and liked movies found over all rounds (movies per person).
    Conditions that do not involve the LLM come out as 0 when both runs used the same SASRec, which checks the
    pairing. A row marked "val" in one run (its validation chose the default α) pairs with the same condition at
    the same α in the other ("(α=0.6, val)" with "(α=0.6)"). Raises ValueError unless both runs saw the same
    people, rounds and seed."""
    _check_paired(new, old)
    r3 = min(3, new["config"]["rounds"])
    head = ["condition"]
    if scenario == "burst":
        head += ["Δ burst-genre share r1", f"Δ burst-genre share r1–{r3}"]
    head += [f"Δ disliked, {r3} rounds", f"Δ 👍 share r1–{r3}", "Δ graded NDCG@10 r1",
             f"Δ liked found, {new['config']['rounds']} rounds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    olds = {_unmarked(c): c for c in old["per_user"][scenario]}
    for cond in (c for c in new["per_user"][scenario] if _unmarked(c) in olds):
        a, b = _arrays(new, scenario, cond), _arrays(old, scenario, olds[_unmarked(cond)])
        cells = [cond if cond == olds[_unmarked(cond)] else f"{cond} vs {olds[_unmarked(cond)]}"]
        if scenario == "burst":
            cells += [_mean_delta(a["genre_share"], b["genre_share"], 1),
                      _mean_delta(a["genre_share"], b["genre_share"], r3)]
        cells += [*_dislike_like_deltas(a, b, r3), paired_delta(a["ndcg"][:, 0], b["ndcg"][:, 0], "%"),
                  paired_delta(a["cum_liked"][:, -1], b["cum_liked"][:, -1], "count")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def restricted(result: Mapping[str, Any], people: Sequence[int]) -> dict[str, Any]:
    """``result`` with only ``people`` (some of its test people, in its order): every per-person list cut to them,
    so a run of the first 100 of another run's seeded sample pairs with that run (the same seed and exclusions draw
    the same order, ``simulate.choose_users``). Raises ValueError when one of them is not among its people."""
    test, wanted = list(result["users"]["test"]), set(people)
    missing = sorted(wanted - set(test))
    if missing:
        raise ValueError(f"{len(missing)} of these people are not in the run (e.g. {missing[:3]})")
    keep = [i for i, person in enumerate(test) if person in wanted]
    per_user = {scenario: {cond: {m: [values[i] for i in keep] for m, values in metrics.items()}
                           for cond, metrics in conds.items()}
                for scenario, conds in result["per_user"].items()}
    return {**result, "users": {**result["users"], "test": [test[i] for i in keep]}, "per_user": per_user}


_SETTINGS = ("rounds", "k", "seed", "p_unknown_dislike")  # what every run compared or pooled must share


def _check_paired(new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    for key in ("dataset", *_SETTINGS):
        if new["config"][key] != old["config"][key]:
            raise ValueError(f"the runs differ in {key}: {new['config'][key]!r} vs {old['config'][key]!r}")
    if new["users"]["test"] != old["users"]["test"]:
        raise ValueError("the runs simulated different people: a paired comparison needs the same ones")


def pooled_runs(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], scenario: str
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Several (new, old) pairs of runs, e.g. one pair per dataset, as ONE pair of runs over all their people, for
    ``runs_table``: each person keeps their own pairing, and a relative difference is relative to the pooled old
    mean. Keeps the conditions (without their "val" mark) and measures every run has. Raises ValueError unless
    each pair is paired as ``runs_table`` requires and all runs share rounds, list length, seed and P(👎 | unrated)."""
    runs = [run for pair in pairs for run in pair]
    for new, old in pairs:
        _check_paired(new, old)
    for key in _SETTINGS:
        if len({repr(run["config"][key]) for run in runs}) > 1:
            raise ValueError(f"the runs differ in {key}: pooling needs the same")
    names = [{_unmarked(c): c for c in run["per_user"][scenario]} for run in runs]
    conds = [c for c in names[0] if all(c in n for n in names)]
    if not conds:
        raise ValueError(f"no condition is in every run ({scenario})")
    measures = [m for m in runs[0]["per_user"][scenario][names[0][conds[0]]]
                if all(m in run["per_user"][scenario][n[c]] for run, n in zip(runs, names, strict=True) for c in conds)]

    def pooled(side: int) -> dict[str, Any]:
        own = [(pair[side], names[2 * i + side]) for i, pair in enumerate(pairs)]
        return {"config": {**pairs[0][side]["config"], "dataset": " + ".join(r["config"]["dataset"] for r, _ in own)},
                "users": {"test": [f"{r['config']['dataset']}:{u}" for r, _ in own for u in r["users"]["test"]]},
                "per_user": {scenario: {c: {m: [row for r, n in own for row in r["per_user"][scenario][n[c]][m]]
                                            for m in measures} for c in conds}}}

    return pooled(0), pooled(1)


def _unmarked(cond: str) -> str:
    """A condition's name without the "val" mark: "X (α=0.6, val)" -> "X (α=0.6)"."""
    return cond.replace(", val)", ")")


def _alpha(cond: str) -> str | None:
    found = re.search(r"α=([\d.]+)", cond)
    return found.group(1) if found else None


def header(result: Mapping[str, Any]) -> list[str]:
    cfg, users = result["config"], result["users"]
    stats = result["sasrec"].get("stats", {})
    llm = "LLM conditions included" if users["llm"] else "LLM conditions skipped (adapters absent or --no-llm)"
    grid = "; ".join(f"{k}: {', '.join(f'{a}→{v:.4f}' for a, v in g.items())}" for k, g in result["alpha_grid"].items() if g)
    return [
        f"### {cfg['dataset']}: feedback-loop simulation, {len(users['test'])} people × {cfg['rounds']} rounds of "
        f"{cfg['k']}",
        "",
        f"_Command: `{result['command']}`; machine: {result['machine']}; date: {result['date'][:10]}; "
        f"{result['seconds']:.0f} s; seed {cfg['seed']}; P(👎 | unrated) = {cfg['p_unknown_dislike']}._",
        "",
        f"Protocol: {result['protocol']}. SASRec (history only): best validation NDCG@10 "
        f"{stats.get('best_val_ndcg10', float('nan')):.4f}. "
        + ("α chosen" if tuned(result) else "α fixed (a one-value grid), run")
        + f" on {len(users['validation'])} other people "
        f"(warm start, mean graded NDCG@10 over rounds): emb-neg α = {result['alpha']['emb']}, "
        + (f"rating-neg α = {result['alpha']['rating']}, " if "rating" in result["alpha"] else "")
        + f"LLM pos+neg α = {result['alpha']['llm']}"
        + (f", LLM pos + LLM neg & rating-neg α = {result['alpha']['blend']}" if "blend" in result["alpha"] else "")
        + f" ({grid}). {llm}. People excluded as adapter-training users: "
        f"{users['excluded_adapter_users']} ({users['exclusion']}).",
    ]


def tuned(result: Mapping[str, Any]) -> bool:
    """Whether the run chose an α on its validation people (a grid with more than one value); a result
    without its grids (older or hand-made) counts as tuned, so that its names are left alone."""
    grids = result.get("alpha_grid")
    return grids is None or any(len(g) > 1 for g in grids.values())


def relabel(result: Mapping[str, Any]) -> Mapping[str, Any]:
    """The result with ", val" dropped from its condition names when nothing was tuned (``tuned``);
    otherwise the result itself."""
    if tuned(result):
        return result
    per_user = {s: {c.replace(", val)", ")"): v for c, v in conds.items()} for s, conds in result["per_user"].items()}
    return {**result, "per_user": per_user}


def markdown(result: Mapping[str, Any]) -> str:
    result = relabel(result)
    lines = header(result)
    titles = {"warm": "Warm start (newest 10 history likes, 5 dislikes)", "cold": "Cold start (3 likes, 2 dislikes)"}
    for scenario in ("warm", "cold"):
        if scenario in result["per_user"]:
            lines += ["", f"**{titles[scenario]}**", "", *rounds_table(result, scenario)]
            if paired := comparisons_table(result, scenario):
                lines += ["", f"Paired, the LLM conditions against the rows they must beat ({scenario}; "
                          "Δ disliked relative to the reference's count):", "", *paired]
    if "burst" in result["per_user"]:
        n = int((~np.isnan(np.asarray(next(iter(result["per_user"]["burst"].values()))["genre_share"])[:, 0])).sum())
        lines += ["", f"**Burst: warm start + 3 dislikes of one genre** ({n} people; the genre is the most frequent "
                  "non-Drama/Comedy genre of their first SASRec list, the dislikes its 3 most popular movies they "
                  "never rated); share of that genre in each list, without and with the burst", "", *burst_table(result)]
        lines += ["", "Liked and disliked shares of the same burst sessions (what the genre's removal costs):", "",
                  *rounds_table(result, "burst")]
        if paired := comparisons_table(result, "burst"):
            lines += ["", "Paired, the LLM conditions against the rows they must beat (burst; percentage points of the "
                      "burst genre's share):", "", *paired]
    return "\n".join(lines)


def plot_rounds(results: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Rows = runs; columns = liked share, disliked share (warm start, or cold start for a run without a
    warm one) and burst-genre share; CI bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [relabel(r) for r in results]
    panels = [("warm", "like_share", "liked share (held-out ≥ 4)"), ("warm", "dislike_share", "disliked share (held-out ≤ 2)"),
              ("burst", "genre_share", "burst-genre share")]
    panels = [p for p in panels if any(_start(r, p[0]) in r["per_user"] for r in results)]  # no empty column
    fig, axes = plt.subplots(len(results), len(panels), figsize=(max(5 * len(panels), 10), 4.2 * len(results)),
                             squeeze=False)  # at least 10 inches: room for the legend of a one-panel plot
    names = list(dict.fromkeys(family(c) for r in results for s in r["per_user"].values() for c in s))
    cmap = plt.cm.tab10 if len(names) <= 10 else plt.cm.tab20  # no two conditions in one colour
    colors = {c: cmap(i % cmap.N) for i, c in enumerate(names)}
    for row, result in zip(axes, results, strict=True):
        for ax, (scenario, metric, title) in zip(row, panels, strict=True):
            scenario = _start(result, scenario)
            _panel(ax, result, scenario, metric, colors)
            ax.set_title(f"{result['config']['dataset']}: {title}" + (" (cold start)" if scenario == "cold" else ""))
            ax.set_xlabel("round")
    handles, labels = [], []
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    ncol = min(len(panels) + 1, len(labels))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=9)
    legend_rows = -(-len(labels) // ncol)
    fig.tight_layout(rect=(0, min(0.5, 0.02 + 0.06 * legend_rows / len(results)), 1, 1))  # room for the legend
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _start(result: Mapping[str, Any], scenario: str) -> str:
    """The scenario a panel shows: a cold-start run without a warm one shows its cold start."""
    return "cold" if scenario == "warm" and "warm" not in result["per_user"] and "cold" in result["per_user"] else scenario


def family(cond: str) -> str:
    """A condition's name without its validation-chosen α (which differs between datasets)."""
    return re.sub(r"α=[\d.]+, val", "α from validation", cond)


def _panel(ax: Any, result: Mapping[str, Any], scenario: str, metric: str, colors: Mapping[str, Any]) -> None:
    if scenario not in result["per_user"]:
        ax.set_visible(False)
        return
    for cond, arrays in result["per_user"][scenario].items():
        a = np.asarray(arrays[metric], dtype=np.float64)
        stats = np.array([mean_ci(a[:, r])[:3] for r in range(a.shape[1])])
        x = np.arange(1, a.shape[1] + 1)
        color = colors[family(cond)]
        ax.plot(x, stats[:, 0], marker="o", ms=3, label=family(cond), color=color)
        ax.fill_between(x, stats[:, 1], stats[:, 2], alpha=0.12, color=color)
    if scenario == "burst" and "warm" in result["per_user"]:
        after = np.asarray(result["per_user"]["burst"][BASELINE][metric], dtype=np.float64)
        before = np.asarray(result["per_user"]["warm"][BASELINE][metric], dtype=np.float64)[~np.isnan(after[:, 0])]
        x = np.arange(1, before.shape[1] + 1)
        ax.plot(x, np.nanmean(before, axis=0), ls="--", color="0.4", label="SASRec, no burst (reference)")
    ax.set_xticks(np.arange(1, result["config"]["rounds"] + 1))
    ax.grid(alpha=0.3)
