"""Engine, schema and session factory for the app's database.

SQLite (a file) by default, any DATABASE_URL otherwise (PostgreSQL in production scale-out).
For SQLite every connection gets the pragmas that make it safe for a multi-threaded Gradio server:
foreign keys on, WAL, synchronous=FULL (an acknowledged click survives kill -9 and power loss) and a
busy timeout; transactions start with BEGIN IMMEDIATE so concurrent writers queue on the busy timeout
instead of failing with "database is locked" when a read transaction tries to become a write one.

The schema is created and migrated by Alembic (storage/migrations), never by ``create_all``.
Not for: queries (see storage/repository.py) or reading settings (the caller passes the URL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

SQLITE_PRAGMAS = (
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their parent folder created and the pragmas above."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    return _make_sqlite_engine(parsed)


def _make_sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        # An in-memory database is private to one connection: Gradio's worker threads would not share it.
        raise ValueError(f"use a SQLite file, not an in-memory database: {url!r}")
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 driver (it skips it before SELECT and SAVEPOINT); see _on_sqlite_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front, so a waiting writer honours busy_timeout instead of
    # failing at once with SQLITE_BUSY when its read snapshot went stale. Transactions are short.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(url: str | None = None) -> Config:
    """Alembic's config for storage/migrations, without an ini file.

    With a URL it also works offline and for new revisions:
    ``command.revision(alembic_config(url), message="...", autogenerate=True)``.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def init_db(engine: Engine) -> None:
    """Create the schema, or migrate it to the newest revision; safe to call at every start."""
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (handlers render them after the transaction)."""
    return sessionmaker(engine, expire_on_commit=False)
