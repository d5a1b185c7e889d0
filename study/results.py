"""A study's progress (who joined, how far each condition got) and results (per-condition means with 95%
confidence intervals, and a bar chart as PNG).

Means are over participants, not ratings: each participant's answers to a question in a condition are
averaged first, so a participant who rated more cards does not weigh more, and the interval is the
t-interval over those per-participant means (within-subject designs have one mean per participant and
condition). Only numeric questions asked inside a condition (card, list and block questions) are summarised.
Not for: exports (study/export.py) or access control (study/access.py).
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from storage.repository import list_study_participants, study_impressions
from study.config import StudyConfig
from study.latin import balanced_latin_square
from study.schedule import block_end, schedule

# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)
Z975 = 1.959964


def t_critical(df: int) -> float:
    """t_{0.975, df}: the table up to 30, then the Cornish-Fisher expansion (error < 1e-3)."""
    if df < 1:
        raise ValueError(f"need at least 1 degree of freedom, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


# ------------------------------------------------------------------------------------------ progress


@dataclass(frozen=True)
class ConditionProgress:
    condition: str
    started: int  # participants who reached this condition's block
    completed: int  # participants who finished it
    lists: int  # lists shown under this condition
    degraded: int  # of which the preference models did not run although the condition asks for them


@dataclass(frozen=True)
class Progress:
    study_id: str
    participants: int
    completed: int
    rows: dict[int, int]  # Latin-square row -> participants in it
    conditions: tuple[ConditionProgress, ...]


def progress(s: Session, study: StudyConfig) -> Progress:
    participants = list_study_participants(s, study_id=study.id)
    n_rows = len(balanced_latin_square(len(study.conditions)))
    steps = schedule(study)
    starts = {b: min(i for i, st in enumerate(steps) if st.block == b) for b in range(len(study.conditions))}
    started: dict[str, int] = defaultdict(int)
    completed: dict[str, int] = defaultdict(int)
    rows: dict[int, int] = defaultdict(int)
    for p in participants:
        rows[p.position % n_rows] += 1
        for block, condition in enumerate(p.conditions):
            started[condition] += p.step >= starts[block]
            completed[condition] += p.step > block_end(study, block)
    lists: dict[str, int] = defaultdict(int)
    degraded: dict[str, int] = defaultdict(int)
    for impression in study_impressions(s, study_id=study.id):
        lists[impression.condition or ""] += 1
        degraded[impression.condition or ""] += bool(impression.degraded)
    per_condition = tuple(
        ConditionProgress(c, started[c], completed[c], lists[c], degraded[c]) for c in study.condition_names
    )
    done = sum(p.completed_at is not None for p in participants)
    return Progress(study.id, len(participants), done, dict(sorted(rows.items())), per_condition)


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Summary:
    question: str
    condition: str
    participants: int
    ratings: int
    mean: float
    low: float  # 95% CI; NaN with fewer than two participants
    high: float


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% t-interval; low/high NaN for fewer than two values."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_critical(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def summarise(study: StudyConfig, rows: Sequence[dict[str, Any]]) -> list[Summary]:
    """Per-condition means of every numeric card/list/block question, in study order."""
    per_person: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        found = study.question(row["question"])
        if found is None or found[0] not in ("item", "list", "block") or not found[1].numeric or not row["condition"]:
            continue
        per_person[(row["question"], row["condition"])][row["participant"]].append(float(row["value"]))
    out = []
    for group, question in study.questions():
        for condition in study.condition_names:
            people = per_person.get((question.id, condition))
            if group not in ("item", "list", "block") or not people:
                continue
            means = [sum(v) / len(v) for v in people.values()]
            mean, low, high = mean_ci(means)
            out.append(Summary(question.id, condition, len(means), sum(len(v) for v in people.values()),
                               mean, low, high))
    return out


def plot_png(study: StudyConfig, summaries: Sequence[Summary]) -> bytes:
    """One panel per question: a bar per condition with its 95% CI; PNG bytes (no pyplot global state)."""
    questions = list(dict.fromkeys(s.question for s in summaries))
    figure = Figure(figsize=(max(4.0, 3.2 * len(questions)), 3.4), dpi=110, layout="constrained")
    axes = figure.subplots(1, max(1, len(questions)), squeeze=False)[0]
    colours = ("#64748b", "#16a34a", "#2563eb", "#dc2626", "#9333ea", "#d97706")
    for ax, question_id in zip(axes, questions, strict=False):
        shown = [s for s in summaries if s.question == question_id]
        errors = [[0.0 if math.isnan(s.low) else s.mean - s.low for s in shown],
                  [0.0 if math.isnan(s.high) else s.high - s.mean for s in shown]]
        ax.bar([s.condition for s in shown], [s.mean for s in shown], yerr=errors, capsize=4,
               color=[colours[study.condition_names.index(s.condition) % len(colours)] for s in shown])
        found = study.question(question_id)
        if found and found[1].kind == "scale":
            ax.set_ylim(found[1].scale[0] - 0.5 if found[1].scale[0] > 0 else 0, found[1].scale[1])
        ax.set_title(question_id, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    if not questions:
        axes[0].text(0.5, 0.5, "no ratings yet", ha="center", va="center")
        axes[0].set_axis_off()
    figure.suptitle(f"{study.title}: mean per condition, 95% CI over participants", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
