"""Shared fixtures: a toy catalog with known genres, and a fresh database per test: a SQLite file, or a
fresh PostgreSQL database on the server DATABASE_URL names (scripts/with_postgres.sh sets it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from recsys.catalog import Catalog

TOY_MOVIES = [
    (1, "Alien", 1979, "Horror|Sci-Fi"),
    (2, "Aliens", 1986, "Action|Horror|Sci-Fi"),
    (3, "The Shining", 1980, "Horror"),
    (4, "Halloween", 1978, "Horror"),
    (5, "Scream", 1996, "Horror|Mystery"),
    (6, "Toy Story", 1995, "Animation|Children|Comedy"),
    (7, "Finding Nemo", 2003, "Animation|Children|Comedy"),
    (8, "Shrek", 2001, "Animation|Children|Comedy"),
    (9, "Dumb & Dumber", 1994, "Comedy"),
    (10, "Airplane!", 1980, "Comedy"),
    (11, "Solaris", 1972, "Drama|Sci-Fi"),
    (12, "Blade Runner", 1982, "Sci-Fi|Thriller"),
    (13, "2001: A Space Odyssey", 1968, "Adventure|Sci-Fi"),
    (14, "The Matrix", 1999, "Action|Sci-Fi|Thriller"),
    (15, "Heat", 1995, "Action|Crime|Thriller"),
    (16, "The Godfather", 1972, "Crime|Drama"),
    (17, "Casablanca", 1942, "Drama|Romance"),
    (18, "Notting Hill", 1999, "Comedy|Romance"),
    (19, "Galaxy Quest", 1999, "Adventure|Comedy|Sci-Fi"),
    (20, "Spaceballs", 1987, "Comedy|Sci-Fi"),
    (21, "Die Hard", 1988, "Action|Thriller"),
    (22, "Amelie", 2001, "Comedy|Romance"),
    (23, "The Thing", 1982, "Horror|Sci-Fi"),
    (24, "Up", 2009, "Adventure|Animation|Comedy"),
    (25, "Interstellar", 2014, "Drama|Sci-Fi"),
]


@pytest.fixture
def toy_items() -> pd.DataFrame:
    return pd.DataFrame(TOY_MOVIES, columns=["item_id", "title", "year", "genres"])


@pytest.fixture
def toy_catalog(toy_items) -> Catalog:
    return Catalog(toy_items)


def server_url() -> str | None:
    """DATABASE_URL when it names a database server (not SQLite); tests then run against that server."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url and not url.startswith("sqlite") else None


@pytest.fixture
def db_url(tmp_path) -> Iterator[str]:
    """A fresh SQLite file per test (never :memory:, which is not shared across Gradio's threads), or a
    fresh database created on the DATABASE_URL server and dropped after the test."""
    url = server_url()
    if url is None:
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


sqlite_only = pytest.mark.skipif(server_url() is not None, reason="SQLite-specific (DATABASE_URL names a server)")
