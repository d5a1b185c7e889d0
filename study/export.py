"""A study's ratings as flat rows (one per rating) and as CSV / JSONL text, for analysis elsewhere.

Each row carries the participant's random public id (never a name), their condition order (to decode
answers that name a blinded list, e.g. "List B"), the condition, the blinded list label, the impression and card it rated (rank, item, the card's base/pos/neg ranks and fused score, α),
the question and its value, and timestamps. Free text (what participants typed as their request) is
left out unless the study file says ``export_free_text: true``; display names never appear.
Not for: deciding who may export (study/access.py) or gradio (webapp/study_ui.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from storage.repository import RatingRecord, study_rating_records
from study.config import StudyConfig
from study.schedule import list_label

COLUMNS = (
    "study_id", "study_version", "participant", "position", "order", "condition", "list_label", "block", "round",
    "question_group", "question", "value", "answer", "impression_id", "rank", "item_id", "base_rank",
    "pos_rank", "neg_rank", "score", "alpha", "degraded", "shown_at", "rated_at",
)
FREE_TEXT_COLUMNS = ("request",)


def columns(study: StudyConfig) -> tuple[str, ...]:
    return COLUMNS + (FREE_TEXT_COLUMNS if study.export_free_text else ())


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _condition(record: RatingRecord) -> str | None:
    if record.impression is not None and record.impression.condition:
        return record.impression.condition
    return record.session.condition if record.session is not None else None


def row_of(study: StudyConfig, record: RatingRecord) -> dict[str, Any]:
    rating, item, impression = record.rating, record.item, record.impression
    found = study.question(rating.question)
    group, question = found if found else ("", None)
    condition = _condition(record)
    order = list(record.participant.conditions)
    block = order.index(condition) if condition in order else None
    row: dict[str, Any] = {
        "study_id": study.id, "study_version": record.participant.study_version,
        "participant": record.public_id, "position": record.participant.position, "order": ">".join(order),
        "condition": condition, "list_label": list_label(block) if block is not None else None,
        "block": block + 1 if block is not None else None, "round": rating.round,
        "question_group": group, "question": rating.question, "value": rating.value,
        "answer": question.label_of(rating.value) if question else "",
        "impression_id": rating.impression_id, "rank": rating.rank, "item_id": rating.item_id,
        "base_rank": item.base_rank if item else None, "pos_rank": item.pos_rank if item else None,
        "neg_rank": item.neg_rank if item else None, "score": item.score if item else None,
        "alpha": impression.alpha if impression else None,
        "degraded": impression.degraded if impression else None,
        "shown_at": _iso(impression.created_at) if impression else None, "rated_at": _iso(rating.created_at),
    }
    if study.export_free_text:
        row["request"] = impression.query if impression else None
    return row


def rating_rows(s: Session, study: StudyConfig) -> list[dict[str, Any]]:
    """One dict per rating of the study, in the order given, with exactly ``columns(study)`` as keys."""
    return [row_of(study, record) for record in study_rating_records(s, study_id=study.id)]


def to_csv(rows: Sequence[dict[str, Any]], header: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(header), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return out.getvalue()


def to_jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
