"""A user study as a YAML file, validated with pydantic: conditions, tasks, questions, consent, codes.

``load_study(path)`` returns a ``StudyConfig`` or raises ``StudyFileError`` whose message names the file
and every wrong field (``conditions.1.alpha: Input should be less than or equal to 1``).
``load_studies(folder)`` loads every ``*.yaml`` in a folder. Run ``python -m study.config FILE`` to check a file.
Not for: running the study (study/flow.py) or anything gradio.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger(__name__)

SLUG = r"^[a-z][a-z0-9_-]{0,47}$"
MAX_CARDS = 10  # card slots on the study page
MAX_ITEM_QUESTIONS = 3  # questions under each card
MAX_QUESTIONS = 12  # questions on one questionnaire page
QuestionGroup = Literal["demographics", "item", "list", "block", "end"]


class StudyFileError(ValueError):
    """A study file that cannot be used; the message says which file and what is wrong."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Question(Strict):
    """One questionnaire item. Answers are stored as integers: the scale point, 1/0 for yes/no, or the
    1-based option number for a choice."""

    id: str = Field(pattern=SLUG)
    text: str = Field(min_length=1, max_length=500)
    kind: Literal["scale", "yesno", "choice"] = "scale"
    scale: tuple[int, int] = (1, 5)
    anchors: dict[int, str] = Field(default_factory=dict)  # e.g. {1: "not at all", 5: "very"}
    options: list[str] = Field(default_factory=list)
    required: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Question:
        low, high = self.scale
        if self.kind == "scale" and not 0 <= low < high <= 10:
            raise ValueError(f"scale must be (low, high) with 0 <= low < high <= 10, got {self.scale}")
        if self.kind == "choice" and len(self.options) < 2:
            raise ValueError("a choice question needs at least two options")
        if self.kind != "choice" and self.options:
            raise ValueError(f"options are only for kind: choice (this is kind: {self.kind})")
        return self

    def choices(self) -> list[tuple[str, int]]:
        """(label, stored value) pairs, in display order."""
        if self.kind == "yesno":
            return [("Yes", 1), ("No", 0)]
        if self.kind == "choice":
            return [(text, n) for n, text in enumerate(self.options, start=1)]
        low, high = self.scale
        return [(f"{v} — {self.anchors[v]}" if v in self.anchors else str(v), v) for v in range(low, high + 1)]

    def label_of(self, value: int) -> str:
        """The option text for a stored value ('' for a scale point without an anchor)."""
        if self.kind == "scale":
            return self.anchors.get(value, "")
        return dict((v, label) for label, v in self.choices()).get(value, "")

    @property
    def numeric(self) -> bool:
        """Whether a mean of the answers means something (scales and yes/no, not choices)."""
        return self.kind != "choice"


class Condition(Strict):
    """One arm of the study: the fusion weight and which preference models run.

    ``models: []`` is the retriever alone, ``[pos]`` adds the likes model, ``[pos, neg]`` both.
    """

    name: str = Field(pattern=SLUG)
    alpha: float = Field(ge=0.0, le=1.0)
    models: list[Literal["pos", "neg"]] = Field(default_factory=list)

    @property
    def use_llm(self) -> bool:
        return bool(self.models)


class FeedbackRule(Strict):
    """How a card's rating becomes a 👍/👎 for the next round of the same condition."""

    question: str = Field(pattern=SLUG)
    like_at_least: int = 4
    dislike_at_most: int = 2


class StudyConfig(Strict):
    id: str = Field(pattern=SLUG)
    title: str = Field(min_length=1, max_length=200)
    join_code: str = Field(pattern=r"^[A-Za-z0-9-]{4,32}$")
    consent: str = Field(min_length=1)
    conditions: list[Condition] = Field(min_length=2, max_length=6)
    rounds: int = Field(2, ge=1, le=10)
    list_length: int = Field(MAX_CARDS, ge=1, le=MAX_CARDS)
    tasks: list[str] = Field(min_length=1)
    demographics: list[Question] = Field(default_factory=list, max_length=MAX_QUESTIONS)
    item_questions: list[Question] = Field(min_length=1, max_length=MAX_ITEM_QUESTIONS)
    list_questions: list[Question] = Field(default_factory=list, max_length=MAX_QUESTIONS)
    block_questions: list[Question] = Field(default_factory=list, max_length=MAX_QUESTIONS)
    end_questions: list[Question] = Field(default_factory=list, max_length=MAX_QUESTIONS)
    feedback: FeedbackRule | None = None
    completion_code: str = Field(pattern=r"^[A-Za-z0-9-]{4,64}$")
    export_free_text: bool = False
    version: str = ""  # filled by load_study: a digest of the file

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ValueError(f"condition names must be unique, got {names}")
        ids = [q.id for _, q in self.questions()]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"question ids must be unique across the whole study, repeated: {duplicates}")
        if self.feedback is not None:
            self._check_feedback(self.feedback)
        return self

    def _check_feedback(self, rule: FeedbackRule) -> None:
        question = next((q for q in self.item_questions if q.id == rule.question), None)
        if question is None or question.kind != "scale":
            raise ValueError(f"feedback.question must name a scale question in item_questions, got {rule.question!r}")
        if not rule.dislike_at_most < rule.like_at_least:
            raise ValueError("feedback.dislike_at_most must be below feedback.like_at_least")

    def questions(self) -> Iterable[tuple[QuestionGroup, Question]]:
        """Every question with the group it belongs to."""
        groups: tuple[tuple[QuestionGroup, list[Question]], ...] = (
            ("demographics", self.demographics), ("item", self.item_questions), ("list", self.list_questions),
            ("block", self.block_questions), ("end", self.end_questions),
        )
        for group, questions in groups:
            for question in questions:
                yield group, question

    def question(self, question_id: str) -> tuple[QuestionGroup, Question] | None:
        return next(((g, q) for g, q in self.questions() if q.id == question_id), None)

    def condition(self, name: str) -> Condition:
        return next(c for c in self.conditions if c.name == name)

    @property
    def condition_names(self) -> list[str]:
        return [c.name for c in self.conditions]


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)


def parse_study(text: str, source: str = "<study>") -> StudyConfig:
    """A StudyConfig from YAML text; StudyFileError names ``source`` and every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyFileError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise StudyFileError(f"{source}: expected a mapping of study fields at the top level")
    data.pop("version", None)
    try:
        study = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise StudyFileError(f"{source}: {exc.error_count()} problem(s):\n{_describe(exc)}") from exc
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return study.model_copy(update={"version": digest})


def load_study(path: Path) -> StudyConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StudyFileError(f"{path}: cannot read: {exc}") from exc
    return parse_study(text, str(path))


def load_studies(folder: Path) -> dict[str, StudyConfig]:
    """Every ``*.yaml`` study in ``folder`` by id (none if the folder is missing). Ids and join codes must
    be unique across files; any bad file raises StudyFileError (a study should not start half-configured)."""
    studies: dict[str, StudyConfig] = {}
    codes: dict[str, str] = {}
    for path in sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else []:
        study = load_study(path)
        if study.id in studies:
            raise StudyFileError(f"{path}: study id {study.id!r} is used by another file")
        if study.join_code.lower() in codes:
            raise StudyFileError(f"{path}: join code is also used by study {codes[study.join_code.lower()]!r}")
        studies[study.id], codes[study.join_code.lower()] = study, study.id
        log.info("study %s loaded from %s (%d conditions)", study.id, path, len(study.conditions))
    return studies


def main(paths: list[str]) -> int:
    """Check study files; exit status 1 if any is wrong."""
    status = 0
    for path in paths:
        try:
            study = load_study(Path(path))
        except StudyFileError as exc:
            sys.stderr.write(f"{exc}\n")
            status = 1
            continue
        sys.stdout.write(f"{path}: ok — study {study.id!r}, conditions {study.condition_names}, "
                         f"{study.rounds} round(s) each, version {study.version}\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
