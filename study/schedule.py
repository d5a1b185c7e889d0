"""The steps every participant of a study goes through, in order, and the neutral names they see.

consent → demographics (if any) → for each condition in the participant's order: ``rounds`` task steps
(a list to rate) then the block questions (if any) → end questions (if any) → done (completion code).
A step's ``block`` is a position in the participant's own order, never a condition name, so what a
participant sees ("List B, round 2") says nothing about the condition behind it.
Not for: storing progress (storage.StudyParticipant.step indexes this list) or showing it (webapp/study_ui.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_uppercase
from typing import Literal

from study.config import StudyConfig

StepKind = Literal["consent", "demographics", "task", "block", "end", "done"]


@dataclass(frozen=True)
class Step:
    kind: StepKind
    block: int = -1  # 0-based position in the participant's condition order; -1 outside blocks
    round: int = 0  # 1-based round within the block; 0 outside task steps


def schedule(study: StudyConfig) -> list[Step]:
    steps = [Step("consent")]
    if study.demographics:
        steps.append(Step("demographics"))
    for block in range(len(study.conditions)):
        steps += [Step("task", block, r) for r in range(1, study.rounds + 1)]
        if study.block_questions:
            steps.append(Step("block", block))
    if study.end_questions:
        steps.append(Step("end"))
    steps.append(Step("done"))
    return steps


def list_label(block: int) -> str:
    """The blinded name of a block: 'List A', 'List B', ... by position, whatever the condition."""
    return f"List {ascii_uppercase[block]}"


def task_text(study: StudyConfig, block: int) -> str:
    """Block b gets task b (cycling): tasks vary with position, which the Latin square balances."""
    return study.tasks[block % len(study.tasks)]


def block_end(study: StudyConfig, block: int) -> int:
    """Index of the last step of a block (its block questions, else its last round)."""
    steps = schedule(study)
    return max(i for i, step in enumerate(steps) if step.block == block)
