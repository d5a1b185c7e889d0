"""The movie catalog the app and the prompts show: raw item id -> title, year, genres, mean rating.

``rating`` is the movie's smoothed mean rating from TRAINING data only (``data.mean_ratings``), the
public "average score" a catalog shows; it is optional (None when unknown). Not for: per-user ratings
or splits (see data.py). Loaded once per process; lookups are dict-fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Movie:
    item_id: int
    title: str
    year: int | None
    genres: tuple[str, ...]
    rating: float | None = None  # smoothed mean rating (1-5) from training data; None when unknown

    @property
    def label(self) -> str:
        """'Alien (1979)': the form used in prompts, cards and explanations."""
        return f"{self.title} ({self.year})" if self.year else self.title


class Catalog:
    """Immutable mapping of raw item id -> Movie, in the order of the source table."""

    def __init__(self, items: pd.DataFrame):
        self._movies: dict[int, Movie] = {}
        for row in items.itertuples(index=False):
            year = None if pd.isna(row.year) else int(row.year)
            genres = tuple(g for g in str(row.genres or "").split("|") if g)
            rating = getattr(row, "rating", None)
            rating = None if rating is None or pd.isna(rating) else round(float(rating), 2)
            self._movies[int(row.item_id)] = Movie(int(row.item_id), str(row.title), year, genres, rating)

    @classmethod
    def from_csv(cls, path: Path) -> Catalog:
        return cls(pd.read_csv(path, keep_default_na=False, na_values={"year": [""], "rating": [""]}))

    @classmethod
    def _of(cls, movies: Iterable[Movie]) -> Catalog:
        catalog = cls.__new__(cls)
        catalog._movies = {m.item_id: m for m in movies}
        return catalog

    def with_ratings(self, ratings: Mapping[int, float]) -> Catalog:
        """A copy whose movies carry ``ratings[item_id]`` (None for movies missing from it)."""
        return self._of(replace(m, rating=ratings.get(m.item_id)) for m in self)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(m.item_id, m.title, m.year, "|".join(m.genres), m.rating) for m in self],
            columns=["item_id", "title", "year", "genres", "rating"],
        ).astype({"year": "Int64"})

    def to_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(path, index=False)

    def __getitem__(self, item_id: int) -> Movie:
        return self._movies[int(item_id)]

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, int) and item_id in self._movies

    def __len__(self) -> int:
        return len(self._movies)

    def __iter__(self) -> Iterator[Movie]:
        return iter(self._movies.values())

    def ids(self) -> list[int]:
        return list(self._movies)

    def labels(self, item_ids: Iterable[int]) -> list[str]:
        return [self[i].label for i in item_ids]
