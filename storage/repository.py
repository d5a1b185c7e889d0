"""Reads and writes of the app's data, as plain functions over a SQLAlchemy Session.

Every function takes the Session first and keyword-only arguments after, and never commits: the caller
owns one transaction per UI event (``with Session.begin() as s: ...``). Functions flush when the caller
needs generated ids back. Not for: ranking logic, session lifecycle, or schema changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import (
    FEEDBACK_KINDS,
    ROLES,
    USER_KINDS,
    Base,
    ChatSession,
    FeedbackEvent,
    Impression,
    ImpressionItem,
    Message,
    ProfileSnapshot,
    StudyParticipant,
    StudyRating,
    User,
)

FeedbackKind = Literal["like", "dislike", "undo"]
Role = Literal["user", "assistant"]
UserKind = Literal["person", "participant", "persona"]


@dataclass(frozen=True)
class ImpressionRow:
    """One shown movie as the ranker produced it; ``rank`` is 1-based, sub-ranks None where not run."""

    rank: int
    item_id: int
    score: float
    base_rank: int | None = None
    pos_rank: float | None = None
    neg_rank: float | None = None
    explanation: str | None = None


@dataclass(frozen=True)
class Preferences:
    """A person's current likes and dislikes (item ids, most recent click first)."""

    likes: tuple[int, ...] = ()
    dislikes: tuple[int, ...] = ()


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")


# --- users and chat sessions -------------------------------------------------------------------


def create_user(s: Session, *, kind: UserKind = "person", display_name: str | None = None) -> User:
    """A new user with a random public id (no name required)."""
    _check(kind, USER_KINDS, "user kind")
    user = User(kind=kind, display_name=display_name)
    s.add(user)
    s.flush()
    return user


def get_user(s: Session, *, user_id: int) -> User | None:
    return s.get(User, user_id)


def get_user_by_public_id(s: Session, *, public_id: str) -> User | None:
    return s.scalar(select(User).where(User.public_id == public_id))


def start_session(s: Session, *, user_id: int, mode: str = "chat", condition: str | None = None) -> ChatSession:
    chat = ChatSession(user_id=user_id, mode=mode, condition=condition)
    s.add(chat)
    s.flush()
    return chat


def latest_session(s: Session, *, user_id: int) -> ChatSession | None:
    query = select(ChatSession).where(ChatSession.user_id == user_id).order_by(ChatSession.id.desc())
    return s.scalar(query.limit(1))


def add_message(s: Session, *, session_id: int, role: Role, text: str, intent: str | None = None) -> Message:
    _check(role, ROLES, "role")
    message = Message(session_id=session_id, role=role, text=text, intent=intent)
    s.add(message)
    s.flush()
    return message


def list_messages(s: Session, *, session_id: int, limit: int = 50) -> list[Message]:
    """The last ``limit`` messages of a chat session, oldest first."""
    query = select(Message).where(Message.session_id == session_id).order_by(Message.id.desc()).limit(limit)
    return list(reversed(s.scalars(query).all()))


# --- impressions -------------------------------------------------------------------------------


def _field(row: ImpressionRow | Mapping[str, Any], name: str) -> Any:
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)


def _item_from(row: ImpressionRow | Mapping[str, Any]) -> ImpressionItem:
    return ImpressionItem(
        rank=int(_field(row, "rank")),
        item_id=int(_field(row, "item_id")),
        score=float(_field(row, "score")),
        base_rank=_field(row, "base_rank"),
        pos_rank=_field(row, "pos_rank"),
        neg_rank=_field(row, "neg_rank"),
        explanation=_field(row, "explanation"),
    )


def record_impression(
    s: Session,
    *,
    session_id: int,
    user_id: int,
    items: Sequence[ImpressionRow | Mapping[str, Any]],
    alpha: float,
    model_version: str,
    adapters: Mapping[str, Any],
    query: str | None = None,
    condition: str | None = None,
    degraded: bool = False,
) -> Impression:
    """Save one shown list with every item's ranks and score; items may be ImpressionRows or mappings."""
    impression = Impression(
        session_id=session_id,
        user_id=user_id,
        items=[_item_from(row) for row in items],
        alpha=alpha,
        model_version=model_version,
        adapters=dict(adapters),
        query=query,
        condition=condition,
        degraded=degraded,
    )
    s.add(impression)
    s.flush()
    return impression


def get_impression(s: Session, *, impression_id: int) -> Impression | None:
    return s.get(Impression, impression_id)


def latest_impression(s: Session, *, user_id: int) -> Impression | None:
    query = select(Impression).where(Impression.user_id == user_id).order_by(Impression.id.desc())
    return s.scalar(query.limit(1))


def impression_items(s: Session, *, impression_id: int) -> list[ImpressionItem]:
    query = select(ImpressionItem).where(ImpressionItem.impression_id == impression_id)
    return list(s.scalars(query.order_by(ImpressionItem.rank)).all())


# --- feedback ----------------------------------------------------------------------------------


def _event_by_client_id(s: Session, client_event_id: str) -> FeedbackEvent | None:
    return s.scalar(select(FeedbackEvent).where(FeedbackEvent.client_event_id == client_event_id))


def _same_click(existing: FeedbackEvent, *, user_id: int) -> FeedbackEvent:
    if existing.user_id != user_id:
        raise ValueError(f"client_event_id {existing.client_event_id!r} belongs to another user")
    return existing


def record_feedback(
    s: Session,
    *,
    user_id: int,
    item_id: int,
    kind: FeedbackKind,
    session_id: int | None = None,
    impression_id: int | None = None,
    client_event_id: str | None = None,
) -> FeedbackEvent:
    """Append one click. A repeated ``client_event_id`` returns the stored event instead of a second one."""
    _check(kind, FEEDBACK_KINDS, "feedback kind")
    if client_event_id is not None and (existing := _event_by_client_id(s, client_event_id)):
        return _same_click(existing, user_id=user_id)
    event = FeedbackEvent(
        user_id=user_id,
        item_id=item_id,
        kind=kind,
        session_id=session_id,
        impression_id=impression_id,
        client_event_id=client_event_id,
    )
    try:
        # The savepoint keeps the caller's transaction usable if a concurrent duplicate won the race.
        with s.begin_nested():
            s.add(event)
    except IntegrityError:
        existing = _event_by_client_id(s, client_event_id) if client_event_id is not None else None
        if existing is None:
            raise
        return _same_click(existing, user_id=user_id)
    return event


def _effective_events(user_id: int) -> Select[tuple[FeedbackEvent]]:
    """Each item's newest event for a user (the one not superseded), newest first."""
    newest_ids = (
        select(func.max(FeedbackEvent.id)).where(FeedbackEvent.user_id == user_id).group_by(FeedbackEvent.item_id)
    )
    return select(FeedbackEvent).where(FeedbackEvent.id.in_(newest_ids)).order_by(FeedbackEvent.id.desc())


def current_preferences(s: Session, *, user_id: int) -> Preferences:
    """Likes and dislikes from each item's newest event; an item whose newest event is an undo is neither."""
    events = s.scalars(_effective_events(user_id)).all()
    return Preferences(
        likes=tuple(e.item_id for e in events if e.kind == "like"),
        dislikes=tuple(e.item_id for e in events if e.kind == "dislike"),
    )


def last_feedback(s: Session, *, user_id: int) -> FeedbackEvent | None:
    """The newest like/dislike still in effect: what an undo button should undo next, or None."""
    query = _effective_events(user_id).where(FeedbackEvent.kind != "undo").limit(1)
    return s.scalar(query)


def list_feedback(s: Session, *, user_id: int) -> list[FeedbackEvent]:
    """Every event of a user, oldest first (the full append-only log)."""
    query = select(FeedbackEvent).where(FeedbackEvent.user_id == user_id).order_by(FeedbackEvent.id)
    return list(s.scalars(query).all())


# --- profiles and study ratings ----------------------------------------------------------------


def save_profile(s: Session, *, user_id: int, profile: Mapping[str, Any]) -> ProfileSnapshot:
    snapshot = ProfileSnapshot(user_id=user_id, profile=dict(profile))
    s.add(snapshot)
    s.flush()
    return snapshot


def latest_profile(s: Session, *, user_id: int) -> ProfileSnapshot | None:
    query = select(ProfileSnapshot).where(ProfileSnapshot.user_id == user_id).order_by(ProfileSnapshot.id.desc())
    return s.scalar(query.limit(1))


def record_study_rating(
    s: Session,
    *,
    user_id: int,
    question: str,
    value: int,
    session_id: int | None = None,
    impression_id: int | None = None,
    study_id: str | None = None,
    round: int | None = None,
    rank: int | None = None,
    item_id: int | None = None,
) -> StudyRating:
    """One answer. A rating of a card names its impression and rank; the item must be the one shown there."""
    if rank is not None:
        _check_card(s, impression_id=impression_id, rank=rank, item_id=item_id)
    rating = StudyRating(
        user_id=user_id, question=question, value=value, session_id=session_id, impression_id=impression_id,
        study_id=study_id, round=round, rank=rank, item_id=item_id,
    )
    s.add(rating)
    s.flush()
    return rating


def _check_card(s: Session, *, impression_id: int | None, rank: int, item_id: int | None) -> None:
    query = select(ImpressionItem.item_id).where(
        ImpressionItem.impression_id == impression_id, ImpressionItem.rank == rank
    )
    shown = s.scalar(query) if impression_id is not None else None
    if shown is None or (item_id is not None and shown != item_id):
        raise ValueError(f"impression {impression_id} shows no item {item_id} at rank {rank}")


def impression_is_rated(s: Session, *, impression_id: int) -> bool:
    """Whether any study rating points to this impression."""
    query = select(StudyRating.id).where(StudyRating.impression_id == impression_id).limit(1)
    return s.scalar(query) is not None


# --- study participants ------------------------------------------------------------------------


def next_study_position(s: Session, *, study_id: str) -> int:
    """The next free 0-based position (Latin-square row) in a study; deleted participants leave gaps."""
    highest = s.scalar(select(func.max(StudyParticipant.position)).where(StudyParticipant.study_id == study_id))
    return 0 if highest is None else highest + 1


def add_study_participant(
    s: Session, *, user_id: int, study_id: str, study_version: str, position: int, conditions: Sequence[str]
) -> StudyParticipant:
    """Enrol a user at ``position``; IntegrityError (inside a savepoint, so the caller's transaction stays
    usable) if a concurrent join took that position first."""
    participant = StudyParticipant(
        user_id=user_id, study_id=study_id, study_version=study_version, position=position,
        conditions=list(conditions), step=0,
    )
    with s.begin_nested():
        s.add(participant)
    return participant


def get_study_participant(s: Session, *, user_id: int) -> StudyParticipant | None:
    return s.scalar(select(StudyParticipant).where(StudyParticipant.user_id == user_id))


def list_study_participants(s: Session, *, study_id: str) -> list[StudyParticipant]:
    query = select(StudyParticipant).where(StudyParticipant.study_id == study_id)
    return list(s.scalars(query.order_by(StudyParticipant.position)).all())


def find_session(s: Session, *, user_id: int, mode: str, condition: str | None) -> ChatSession | None:
    """The user's newest chat session of ``mode`` with ``condition`` (None matches a NULL condition)."""
    where = ChatSession.condition.is_(None) if condition is None else ChatSession.condition == condition
    query = select(ChatSession).where(ChatSession.user_id == user_id, ChatSession.mode == mode, where)
    return s.scalar(query.order_by(ChatSession.id.desc()).limit(1))


def session_preferences(s: Session, *, user_id: int, session_ids: Sequence[int]) -> Preferences:
    """Like ``current_preferences`` but counting only clicks made in the given chat sessions
    (a study condition's likes and dislikes do not leak into another condition)."""
    newest_ids = (
        select(func.max(FeedbackEvent.id))
        .where(FeedbackEvent.user_id == user_id, FeedbackEvent.session_id.in_(list(session_ids)))
        .group_by(FeedbackEvent.item_id)
    )
    query = select(FeedbackEvent).where(FeedbackEvent.id.in_(newest_ids)).order_by(FeedbackEvent.id.desc())
    events = s.scalars(query).all()
    return Preferences(
        likes=tuple(e.item_id for e in events if e.kind == "like"),
        dislikes=tuple(e.item_id for e in events if e.kind == "dislike"),
    )


def session_impressions(s: Session, *, session_id: int) -> list[Impression]:
    """Every list shown in a chat session, oldest first."""
    query = select(Impression).where(Impression.session_id == session_id).order_by(Impression.id)
    return list(s.scalars(query).all())


def rated_items(s: Session, *, session_id: int) -> set[int]:
    """Item ids that already have a study rating in this chat session."""
    query = select(StudyRating.item_id).where(StudyRating.session_id == session_id, StudyRating.item_id.is_not(None))
    return {int(i) for i in s.scalars(query).all()}


@dataclass(frozen=True)
class RatingRecord:
    """One study rating with everything it points to (for exports); missing parts are None."""

    rating: StudyRating
    participant: StudyParticipant
    public_id: str
    session: ChatSession | None
    impression: Impression | None
    item: ImpressionItem | None


def study_rating_records(s: Session, *, study_id: str) -> list[RatingRecord]:
    """Every rating of a study's participants, in the order they were given."""
    query = (
        select(StudyRating, StudyParticipant, User.public_id, ChatSession, Impression, ImpressionItem)
        .join(StudyParticipant, StudyParticipant.user_id == StudyRating.user_id)
        .join(User, User.id == StudyRating.user_id)
        .outerjoin(ChatSession, ChatSession.id == StudyRating.session_id)
        .outerjoin(Impression, Impression.id == StudyRating.impression_id)
        .outerjoin(
            ImpressionItem,
            (ImpressionItem.impression_id == StudyRating.impression_id) & (ImpressionItem.rank == StudyRating.rank),
        )
        .where(StudyRating.study_id == study_id, StudyParticipant.study_id == study_id)
        .order_by(StudyRating.id)
    )
    return [RatingRecord(*row) for row in s.execute(query).all()]


def study_impressions(s: Session, *, study_id: str) -> list[Impression]:
    """Every list shown to the study's participants (to count degraded lists per condition)."""
    query = (
        select(Impression)
        .join(StudyParticipant, StudyParticipant.user_id == Impression.user_id)
        .where(StudyParticipant.study_id == study_id)
        .order_by(Impression.id)
    )
    return list(s.scalars(query).all())


# --- a person's data: export and erase ---------------------------------------------------------


def _to_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def row_dict(row: Base) -> dict[str, Any]:
    """A row's columns as a JSON-serialisable dict (datetimes as ISO 8601 strings)."""
    return {column.key: _to_json(getattr(row, column.key)) for column in row.__table__.columns}


def _rows_of(s: Session, model: type[Base], column: Any, value: int) -> list[dict[str, Any]]:
    query = select(model).where(column == value).order_by(model.id)  # type: ignore[attr-defined]
    return [row_dict(row) for row in s.scalars(query).all()]


def export_user_data(s: Session, *, user_id: int) -> dict[str, Any]:
    """Everything stored about one user, JSON-serialisable; raises LookupError for an unknown user."""
    user = s.get(User, user_id)
    if user is None:
        raise LookupError(f"no user {user_id}")
    messages = select(Message).join(ChatSession).where(ChatSession.user_id == user_id)
    impressions = s.scalars(select(Impression).where(Impression.user_id == user_id).order_by(Impression.id))
    return {
        "user": row_dict(user),
        "sessions": _rows_of(s, ChatSession, ChatSession.user_id, user_id),
        "messages": [row_dict(m) for m in s.scalars(messages.order_by(Message.id))],
        "impressions": [row_dict(i) | {"items": [row_dict(it) for it in i.items]} for i in impressions],
        "feedback": _rows_of(s, FeedbackEvent, FeedbackEvent.user_id, user_id),
        "profiles": _rows_of(s, ProfileSnapshot, ProfileSnapshot.user_id, user_id),
        "study_ratings": _rows_of(s, StudyRating, StudyRating.user_id, user_id),
        "study_participation": _rows_of(s, StudyParticipant, StudyParticipant.user_id, user_id),
    }


def delete_user(s: Session, *, user_id: int) -> bool:
    """Erase a user and, through ON DELETE CASCADE, everything of theirs; False if there was no such user."""
    if s.get(User, user_id) is None:
        return False
    s.execute(delete(User).where(User.id == user_id))
    return True
