"""The database tables: who used the app, what they said, every list they saw, and every click.

Thin typed SQLAlchemy 2.0 models with portable column types only (SQLite and PostgreSQL).
Every row belongs to a user and goes with them: all foreign keys to users cascade on delete.
Feedback events are append-only: a newer event on the same (user, item) supersedes an older one.
Not for: queries or business rules (storage/repository.py), schema creation (storage/db.py + migrations).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

USER_KINDS = ("person", "participant", "persona")
ROLES = ("user", "assistant")
FEEDBACK_KINDS = ("like", "dislike", "undo")

# Deterministic constraint names, so later migrations (batch mode on SQLite) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_public_id() -> str:
    return uuid4().hex


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK that ``column`` holds one of ``values`` (module constants, never user input)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime(timezone=True) that stores and hands back aware UTC datetimes, whatever the backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one, e.g. datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite hands back naive UTC; PostgreSQL an aware value in the connection's time zone.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def user_fk() -> Any:
    return ForeignKey("users.id", ondelete="CASCADE")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(one_of("kind", USER_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    kind: Mapped[str] = mapped_column(String(16), default="person")
    display_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ChatSession(Base):
    __tablename__ = "chat_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(user_fk(), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    mode: Mapped[str] = mapped_column(String(32), default="chat")
    condition: Mapped[str | None] = mapped_column(String(64))


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (CheckConstraint(one_of("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Impression(Base):
    """One list of movies shown to a person, with how it was ranked."""

    __tablename__ = "impressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(user_fk(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    query: Mapped[str | None] = mapped_column(Text)
    alpha: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(200))
    # e.g. {"pos": "<sha>/<version>", "neg": "<sha>/<version>"}; empty when no adapters ran.
    adapters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    condition: Mapped[str | None] = mapped_column(String(64))
    # True when the LLM was unavailable and the retriever-only ranking was shown.
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)

    items: Mapped[list[ImpressionItem]] = relationship(
        order_by="ImpressionItem.rank", cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )


class ImpressionItem(Base):
    """One movie card in an impression; ranks are 1-based, None where that ranker did not run."""

    __tablename__ = "impression_items"
    __table_args__ = (UniqueConstraint("impression_id", "rank"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    impression_id: Mapped[int] = mapped_column(ForeignKey("impressions.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(Integer)
    base_rank: Mapped[int | None] = mapped_column(Integer)
    pos_rank: Mapped[float | None] = mapped_column(Float)  # fractional: tied model scores share a rank
    neg_rank: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    explanation: Mapped[str | None] = mapped_column(Text)


class FeedbackEvent(Base):
    """One 👍/👎/undo click. Append-only: never updated, deleted only with its user."""

    __tablename__ = "feedback_events"
    __table_args__ = (
        CheckConstraint(one_of("kind", FEEDBACK_KINDS), name="kind"),
        Index("ix_feedback_events_user_id_item_id", "user_id", "item_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(user_fk())
    session_id: Mapped[int | None] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    impression_id: Mapped[int | None] = mapped_column(ForeignKey("impressions.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    # Sent by the UI once per click, so a double-submitted click is stored once.
    client_event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


@event.listens_for(FeedbackEvent, "before_update")
def _refuse_update(_mapper: Any, _connection: Any, target: FeedbackEvent) -> None:
    raise ValueError(f"feedback events are append-only; record a new event instead of changing {target.id}")


class ProfileSnapshot(Base):
    """The natural-language profile (keywords with supporting movies) as it was at one moment."""

    __tablename__ = "profile_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(user_fk(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)


class StudyRating(Base):
    """A study participant's answer to one questionnaire item, tied to the list they were rating."""

    __tablename__ = "study_ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(user_fk(), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    impression_id: Mapped[int | None] = mapped_column(ForeignKey("impressions.id", ondelete="CASCADE"))
    question: Mapped[str] = mapped_column(String(64))
    value: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Study mode (revision 0003): which study, which round of a condition, and which card of the impression.
    study_id: Mapped[str | None] = mapped_column(String(64), index=True)
    round: Mapped[int | None] = mapped_column(Integer)
    rank: Mapped[int | None] = mapped_column(Integer)  # 1-based rank of the rated card in ``impression_id``
    item_id: Mapped[int | None] = mapped_column(Integer)


class StudyParticipant(Base):
    """One person's place in one study: their Latin-square row, their condition order and how far they got.

    Created when the participant accepts the consent text; ``step`` indexes the study's schedule
    (study/flow.py). ``study_version`` is a digest of the study file they were run with.
    """

    __tablename__ = "study_participants"
    __table_args__ = (UniqueConstraint("study_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(user_fk(), unique=True)
    study_id: Mapped[str] = mapped_column(String(64))
    study_version: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)  # 0-based join order: the Latin-square row
    conditions: Mapped[list[str]] = mapped_column(JSON)  # condition names in the order this person sees them
    step: Mapped[int] = mapped_column(Integer, default=0)
    consented_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
