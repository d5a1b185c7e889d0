"""storage/: schema and migrations, SQLite pragmas, the repository's rules, concurrency and durability.

Real SQLite in a fresh temp file per test (the db_url fixture); the ORM is never mocked.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage import repository as repo
from storage.db import alembic_config, init_db, make_engine, make_sessionmaker
from storage.models import (
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
from storage.repository import ImpressionRow, Preferences
from tests.conftest import sqlite_only

REPO_ROOT = Path(__file__).resolve().parents[1]
PER_USER_MODELS = (
    User, ChatSession, Message, Impression, ImpressionItem, FeedbackEvent, ProfileSnapshot, StudyRating,
    StudyParticipant,
)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def s(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One open transaction, rolled back at the end (tests that need commits use ``sessions``)."""
    with sessions() as session:
        yield session


@pytest.fixture
def ids(s: Session) -> tuple[int, int]:
    """(user_id, chat session id) of a fresh person."""
    user = repo.create_user(s)
    return user.id, repo.start_session(s, user_id=user.id).id


def count(s: Session, model: type[Base]) -> int:
    return s.scalar(select(func.count()).select_from(model))


def click(s: Session, user_id: int, item_id: int, kind: str, **kw) -> FeedbackEvent:
    return repo.record_feedback(s, user_id=user_id, item_id=item_id, kind=kind, **kw)


# --- schema, migrations, engine ----------------------------------------------------------------


def test_schema_created_and_migration_matches_models(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {m.__tablename__ for m in PER_USER_MODELS} | {"alembic_version"} == tables
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


@sqlite_only
def test_init_db_creates_parent_folder_and_is_idempotent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'app.db'}")
    init_db(engine)
    init_db(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == ["0003"]
    engine.dispose()
    assert (tmp_path / "a" / "b" / "app.db").is_file()


@sqlite_only
def test_in_memory_sqlite_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        make_engine("sqlite:///:memory:")


def test_migration_renders_for_postgresql() -> None:
    cfg = alembic_config("postgresql://app@localhost/recsys")
    cfg.output_buffer = io.StringIO()
    command.upgrade(cfg, "head", sql=True)
    sql = cfg.output_buffer.getvalue()
    assert "CREATE TABLE feedback_events" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql and "JSON" in sql and "ON DELETE CASCADE" in sql


@sqlite_only
def test_sqlite_pragmas_in_effect(engine: Engine) -> None:
    with engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("foreign_keys") == 1
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 2  # FULL
        assert pragma("busy_timeout") == 5000


def test_foreign_keys_enforced(s: Session) -> None:
    with pytest.raises(IntegrityError):
        click(s, 999, 1, "like")


# --- users, sessions, messages, profiles -------------------------------------------------------


def test_users_get_random_public_ids(s: Session) -> None:
    a, b = repo.create_user(s), repo.create_user(s, kind="participant", display_name="P7")
    assert a.public_id != b.public_id and len(a.public_id) == 32 and int(a.public_id, 16) >= 0
    assert a.display_name is None and a.kind == "person"
    assert repo.get_user_by_public_id(s, public_id=b.public_id) is b
    assert repo.get_user_by_public_id(s, public_id="nope") is None
    assert a.created_at.tzinfo is not None


def test_create_user_rejects_unknown_kind(s: Session) -> None:
    with pytest.raises(ValueError, match="user kind"):
        repo.create_user(s, kind="admin")


def test_latest_session_and_messages(s: Session, ids: tuple[int, int]) -> None:
    user_id, first = ids
    second = repo.start_session(s, user_id=user_id, mode="study", condition="B").id
    assert repo.latest_session(s, user_id=user_id).id == second != first
    for i in range(5):
        repo.add_message(s, session_id=second, role="user" if i % 2 == 0 else "assistant", text=f"m{i}")
    assert [m.text for m in repo.list_messages(s, session_id=second, limit=3)] == ["m2", "m3", "m4"]
    with pytest.raises(ValueError, match="role"):
        repo.add_message(s, session_id=second, role="system", text="x")


def test_profile_snapshots(s: Session, ids: tuple[int, int]) -> None:
    user_id, _ = ids
    assert repo.latest_profile(s, user_id=user_id) is None
    repo.save_profile(s, user_id=user_id, profile={"keywords": [{"word": "space", "movies": [11]}]})
    repo.save_profile(s, user_id=user_id, profile={"keywords": [{"word": "horror", "movies": [1, 3]}]})
    assert repo.latest_profile(s, user_id=user_id).profile["keywords"][0]["movies"] == [1, 3]


# --- feedback ----------------------------------------------------------------------------------


def test_newer_event_supersedes_older(s: Session, ids: tuple[int, int]) -> None:
    user_id, _ = ids
    click(s, user_id, 1, "like")
    click(s, user_id, 1, "dislike")
    assert repo.current_preferences(s, user_id=user_id) == Preferences(likes=(), dislikes=(1,))
    click(s, user_id, 1, "undo")
    assert repo.current_preferences(s, user_id=user_id) == Preferences()
    assert count(s, FeedbackEvent) == 3  # superseded, never deleted


def test_preferences_newest_first(s: Session, ids: tuple[int, int]) -> None:
    user_id, _ = ids
    for item, kind in [(1, "like"), (2, "like"), (7, "dislike"), (3, "like"), (8, "dislike"), (1, "like")]:
        click(s, user_id, item, kind)
    assert repo.current_preferences(s, user_id=user_id) == Preferences(likes=(1, 3, 2), dislikes=(8, 7))
    other = repo.create_user(s).id
    assert repo.current_preferences(s, user_id=other) == Preferences()


def test_last_feedback_walks_back_through_undos(s: Session, ids: tuple[int, int]) -> None:
    user_id, _ = ids
    assert repo.last_feedback(s, user_id=user_id) is None
    click(s, user_id, 1, "like")
    click(s, user_id, 2, "dislike")
    last = repo.last_feedback(s, user_id=user_id)
    assert (last.item_id, last.kind) == (2, "dislike")
    click(s, user_id, last.item_id, "undo")
    assert repo.last_feedback(s, user_id=user_id).item_id == 1


def test_client_event_id_makes_clicks_idempotent(s: Session, ids: tuple[int, int]) -> None:
    user_id, chat = ids
    first = click(s, user_id, 5, "like", session_id=chat, client_event_id="c-1")
    again = click(s, user_id, 5, "like", session_id=chat, client_event_id="c-1")
    assert again.id == first.id and count(s, FeedbackEvent) == 1
    other = repo.create_user(s).id
    with pytest.raises(ValueError, match="another user"):
        click(s, other, 5, "like", client_event_id="c-1")


def test_record_feedback_rejects_unknown_kind(s: Session, ids: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="feedback kind must be one of"):
        click(s, ids[0], 1, "love")


def test_feedback_events_are_append_only(s: Session, ids: tuple[int, int]) -> None:
    event = click(s, ids[0], 1, "like")
    event.kind = "dislike"
    with pytest.raises(ValueError, match="append-only"):
        s.flush()


# --- impressions -------------------------------------------------------------------------------


def show(s: Session, ids: tuple[int, int], **kw) -> Impression:
    rows = [
        ImpressionRow(rank=1, item_id=12, score=0.91, base_rank=3, pos_rank=1, neg_rank=9, explanation="Because Alien"),
        {"rank": 2, "item_id": 14, "score": 0.5, "base_rank": 1},
    ]
    return repo.record_impression(
        s, session_id=ids[1], user_id=ids[0], items=rows, alpha=0.6, model_version="sasrec@abc",
        adapters={"pos": "sha1/v1", "neg": "sha2/v1"}, query="space movies", **kw,
    )  # fmt: skip


def test_impression_round_trip(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        user = repo.create_user(s)
        impression_id = show(s, (user.id, repo.start_session(s, user_id=user.id).id), degraded=True).id
    with sessions() as s:
        latest = repo.latest_impression(s, user_id=user.id)
        items = repo.impression_items(s, impression_id=impression_id)
    assert latest.id == impression_id and latest.degraded and latest.alpha == pytest.approx(0.6)
    assert latest.adapters == {"pos": "sha1/v1", "neg": "sha2/v1"} and latest.query == "space movies"
    assert [(i.rank, i.item_id, i.base_rank, i.pos_rank, i.neg_rank) for i in items] == [
        (1, 12, 3, 1, 9),
        (2, 14, 1, None, None),
    ]
    assert [i.score for i in items] == pytest.approx([0.91, 0.5])
    assert items[0].explanation == "Because Alien" and [i.item_id for i in latest.items] == [12, 14]
    assert latest.created_at.tzinfo == UTC


def test_duplicate_rank_rejected(s: Session, ids: tuple[int, int]) -> None:
    rows = [ImpressionRow(rank=1, item_id=1, score=1.0), ImpressionRow(rank=1, item_id=2, score=0.5)]
    with pytest.raises(IntegrityError):
        repo.record_impression(
            s, session_id=ids[1], user_id=ids[0], items=rows, alpha=0.6, model_version="m", adapters={}
        )


def test_naive_datetimes_refused(s: Session, ids: tuple[int, int]) -> None:
    s.add(ProfileSnapshot(user_id=ids[0], profile={}, created_at=datetime(2024, 1, 1)))
    with pytest.raises(Exception, match="naive datetime"):
        s.flush()


# --- a person's data ---------------------------------------------------------------------------


def populate(s: Session) -> int:
    """A user with one of everything; returns the user id."""
    user_id = repo.create_user(s, kind="participant").id
    chat = repo.start_session(s, user_id=user_id, mode="study", condition="A").id
    repo.add_message(s, session_id=chat, role="user", text="something like Alien", intent="request")
    impression = show(s, (user_id, chat))
    click(s, user_id, 12, "like", session_id=chat, impression_id=impression.id, client_event_id=f"e{user_id}")
    repo.save_profile(s, user_id=user_id, profile={"keywords": ["space"]})
    repo.record_study_rating(s, user_id=user_id, question="q_satisfied", value=4, impression_id=impression.id)
    return user_id


def test_export_contains_everything(s: Session) -> None:
    user_id = populate(s)
    data = json.loads(json.dumps(repo.export_user_data(s, user_id=user_id)))
    assert data["user"]["kind"] == "participant"
    assert [m["text"] for m in data["messages"]] == ["something like Alien"]
    assert [len(i["items"]) for i in data["impressions"]] == [2]
    assert data["impressions"][0]["items"][0]["explanation"] == "Because Alien"
    assert [(f["item_id"], f["kind"]) for f in data["feedback"]] == [(12, "like")]
    assert len(data["sessions"]) == len(data["profiles"]) == len(data["study_ratings"]) == 1
    datetime.fromisoformat(data["feedback"][0]["created_at"])
    with pytest.raises(LookupError):
        repo.export_user_data(s, user_id=999)


def test_delete_user_cascades_to_everything(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        gone, kept = populate(s), populate(s)
    with sessions.begin() as s:
        assert repo.delete_user(s, user_id=gone)
        assert not repo.delete_user(s, user_id=gone)
    with sessions() as s:
        assert {model.__name__: count(s, model) for model in PER_USER_MODELS} == {
            "User": 1, "ChatSession": 1, "Message": 1, "Impression": 1, "ImpressionItem": 2,
            "FeedbackEvent": 1, "ProfileSnapshot": 1, "StudyRating": 1, "StudyParticipant": 0,
        }  # fmt: skip
        assert repo.export_user_data(s, user_id=kept)["feedback"][0]["user_id"] == kept


def test_repository_never_commits(sessions: sessionmaker[Session]) -> None:
    """The caller's rollback discards everything, even a click whose first statement is a SAVEPOINT."""
    with sessions.begin() as s:
        user_id = repo.create_user(s).id
    with sessions() as s:
        click(s, user_id, 1, "like")  # no client_event_id: the savepoint opens the transaction
        populate(s)
        s.rollback()
    with sessions() as s:
        assert count(s, User) == 1 and count(s, FeedbackEvent) == 0 and count(s, Impression) == 0


# --- concurrency and durability ----------------------------------------------------------------


def test_concurrent_clicks_from_many_threads_stored_exactly_once(sessions: sessionmaker[Session]) -> None:
    """8 threads x 25 clicks, every click also double-submitted by a neighbour thread, one session per click."""
    n_threads, n_clicks = 8, 25
    with sessions.begin() as s:
        user_id = repo.create_user(s).id
    barrier, errors = threading.Barrier(n_threads), []

    def worker(t: int) -> None:
        barrier.wait()
        try:
            for i in range(n_clicks):
                for owner in (t, (t + 1) % n_threads):
                    with sessions.begin() as s:
                        click(s, user_id, owner * 100 + i, "like", client_event_id=f"{owner}-{i}")
        except Exception as exc:  # collected: an exception in a thread would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with sessions() as s:
        stored = s.scalars(select(FeedbackEvent.client_event_id)).all()
        assert sorted(stored) == sorted(f"{t}-{i}" for t in range(n_threads) for i in range(n_clicks))
        assert len(repo.current_preferences(s, user_id=user_id).likes) == n_threads * n_clicks


CHILD = """
import os, signal, sys
from storage import repository as repo
from storage.db import make_engine, make_sessionmaker
sessions = make_sessionmaker(make_engine(sys.argv[1]))
for i in range(20):
    with sessions.begin() as s:
        repo.record_feedback(s, user_id=int(sys.argv[2]), item_id=i, kind="like", client_event_id=f"d{i}")
os.kill(os.getpid(), signal.SIGKILL)  # right after the last commit returned
"""


def test_committed_click_survives_sigkill(db_url: str, engine: Engine, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        user_id = repo.create_user(s).id
    engine.dispose()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, db_url, str(user_id)], cwd=REPO_ROOT, capture_output=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    fresh = make_engine(db_url)  # a restarted app
    with make_sessionmaker(fresh)() as s:
        assert repo.current_preferences(s, user_id=user_id).likes == tuple(range(19, -1, -1))
        if fresh.dialect.name == "sqlite":
            assert s.connection().exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    fresh.dispose()
