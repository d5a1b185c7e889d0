"""PALR-style natural-language profile: 2-5 keywords per side, each with the history movies that support it.

``build_profile(likes, dislikes, catalog)`` reads only catalog facts (genres, genre pairs, decades, shared
title stems such as Alien/Aliens), so every keyword is backed by real movies the person rated. Pure and
deterministic; ``render()`` gives the sentence the profile panel shows, ``to_dict``/``from_dict`` the JSON
that storage keeps. Also home of the genre wording ("sci-fi horror film") that explain.py reuses.

Not for: ranking (the adapters read the history directly) or anything a catalog does not say (plots, cast).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from dialogue.titles import normalize
from recsys.catalog import Catalog, Movie

MAX_KEYWORDS = 5
MIN_KEYWORDS = 2
RECENCY = 0.85  # weight of the i-th newest movie: RECENCY ** i
_KIND_BOOST = {"series": 1.5, "pair": 1.25, "genre": 1.0, "decade": 0.9}

# genre -> (adjective, noun phrase, head rank): the higher rank is the head of a pair ("sci-fi horror film")
_FORMS: dict[str, tuple[str, str, int]] = {
    "animation": ("animated", "animated film", 0),
    "children": ("family", "family film", 1),
    "imax": ("IMAX", "IMAX film", 1),
    "scifi": ("sci-fi", "sci-fi film", 2),
    "fantasy": ("fantasy", "fantasy film", 3),
    "filmnoir": ("noir", "film noir", 3),
    "crime": ("crime", "crime film", 4),
    "war": ("war", "war film", 4),
    "action": ("action", "action film", 5),
    "adventure": ("adventure", "adventure film", 5),
    "horror": ("horror", "horror film", 6),
    "romance": ("romantic", "romance", 6),
    "mystery": ("mystery", "mystery", 7),
    "thriller": ("thriller", "thriller", 8),
    "musical": ("musical", "musical", 8),
    "western": ("western", "western", 8),
    "documentary": ("documentary", "documentary", 8),
    "comedy": ("comic", "comedy", 9),
    "drama": ("dramatic", "drama", 10),
}
_PARENS = re.compile(r"\([^()]*\)")
_ROMAN_OR_NUMBER = re.compile(r"(?:\s+(?:part\s+)?(?:\d+|ii|iii|iv|v|vi|vii|viii|ix|x))+$", re.IGNORECASE)


def _forms(genre: str) -> tuple[str, str, int]:
    key = re.sub(r"[^a-z]", "", genre.lower()).removesuffix("s")
    return _FORMS.get(key, (genre.lower(), f"{genre.lower()} film", 4))


def is_genre(genre: str) -> bool:
    """False for placeholders such as '(no genres listed)'."""
    return bool(genre) and not genre.startswith("(")


def genre_word(genre: str) -> str:
    """'Sci-Fi' -> 'sci-fi', 'Film-Noir' -> 'noir', 'Children' -> 'family'."""
    return _forms(genre)[0]


def genre_name(genre: str) -> str:
    """The genre as a noun in a sentence: 'Sci-Fi' -> 'sci-fi', 'Children' -> "children's"."""
    key = re.sub(r"[^a-z]", "", genre.lower()).removesuffix("s")
    return {"scifi": "sci-fi", "children": "children's", "filmnoir": "film noir", "imax": "IMAX"}.get(
        key, genre.lower()
    )


def genre_phrase(genres: Sequence[str]) -> str:
    """The two most noun-like genres as one phrase: ('Horror', 'Sci-Fi') -> 'sci-fi horror film'."""
    real = sorted((g for g in genres if is_genre(g)), key=lambda g: (-_forms(g)[2], g))
    if not real:
        return "film"
    if len(real) == 1:
        return _forms(real[0])[1]
    head, modifier = real[0], real[1]
    if {head, modifier} == {"Comedy", "Drama"}:
        return "comedy-drama"
    return f"{_forms(modifier)[0]} {_forms(head)[1]}"


def plural(phrase: str) -> str:
    """'sci-fi horror film' -> 'sci-fi horror films', 'romantic comedy' -> 'romantic comedies'."""
    if phrase.endswith("film noir"):
        return phrase
    if phrase.endswith("y") and not phrase.endswith(("ay", "ey", "oy")):
        return phrase[:-1] + "ies"
    return phrase + "s"


def series_key(title: str) -> str:
    """'Aliens' -> 'alien', 'Alien³ (a.k.a. Alien 3)' -> 'alien', 'Toy Story 2' -> 'toy story',
    'Star Trek II: The Wrath of Khan' -> 'star trek'."""
    main = normalize(_PARENS.sub(" ", title).split(":", 1)[0])
    key = _ROMAN_OR_NUMBER.sub("", main)
    key = re.sub(r"(?<=[a-z])\d+$", "", key) or main
    return key[:-1] if " " not in key and key.endswith("s") and len(key) > 4 else key


@dataclass(frozen=True)
class Keyword:
    """One profile phrase and the movies (newest first) that back it; ``genres``/``decade``/``series`` say
    which movies it matches."""

    text: str
    kind: str  # "genre" | "pair" | "decade" | "series"
    item_ids: tuple[int, ...]
    titles: tuple[str, ...]
    genres: tuple[str, ...] = ()
    decade: int | None = None
    series: str = ""

    def matches(self, movie: Movie) -> bool:
        if self.kind == "decade":
            return movie.year is not None and movie.year // 10 * 10 == self.decade
        if self.kind == "series":
            return series_key(movie.title) == self.series
        return set(self.genres) <= set(movie.genres)

    def render(self, max_titles: int = 3) -> str:
        shown = ", ".join(self.titles[:max_titles])
        more = len(self.titles) - max_titles
        return f"{self.text} — {shown}" + (f" and {more} more" if more > 0 else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "kind": self.kind,
            "item_ids": list(self.item_ids),
            "titles": list(self.titles),
            "genres": list(self.genres),
            "decade": self.decade,
            "series": self.series,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Keyword:
        return cls(
            str(data["text"]),
            str(data["kind"]),
            tuple(int(i) for i in data.get("item_ids", ())),
            tuple(str(t) for t in data.get("titles", ())),
            tuple(str(g) for g in data.get("genres", ())),
            None if data.get("decade") is None else int(data["decade"]),
            str(data.get("series", "")),
        )


@dataclass(frozen=True)
class Profile:
    likes: tuple[Keyword, ...] = ()
    dislikes: tuple[Keyword, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.likes and not self.dislikes

    def matching(self, movie: Movie, side: str = "likes") -> tuple[Keyword, ...]:
        """The keywords of one side ("likes" | "dislikes") that this movie fits."""
        return tuple(k for k in (self.likes if side == "likes" else self.dislikes) if k.matches(movie))

    def render(self) -> str:
        """'You like: sci-fi films — Alien, Solaris; 1970s films — Solaris, Alien. You avoid: ...'"""
        likes = (
            "You like: " + "; ".join(k.render() for k in self.likes) + "." if self.likes else "No likes yet."
        )
        dislikes = (
            "You avoid: " + "; ".join(k.render() for k in self.dislikes) + "."
            if self.dislikes
            else "No dislikes yet."
        )
        return f"{likes} {dislikes}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "likes": [k.to_dict() for k in self.likes],
            "dislikes": [k.to_dict() for k in self.dislikes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        return cls(
            tuple(Keyword.from_dict(k) for k in data.get("likes", ())),
            tuple(Keyword.from_dict(k) for k in data.get("dislikes", ())),
        )


def build_profile(
    likes: Sequence[int], dislikes: Sequence[int], catalog: Catalog, max_keywords: int = MAX_KEYWORDS
) -> Profile:
    """Likes and dislikes are item ids, newest first; ids missing from the catalog are skipped."""
    return Profile(
        _side(_movies(likes, catalog), max_keywords),
        _side(_movies(dislikes, catalog), max_keywords),
    )


def _movies(ids: Iterable[int], catalog: Catalog) -> list[Movie]:
    return [catalog[i] for i in dict.fromkeys(int(i) for i in ids) if int(i) in catalog]


def _side(movies: list[Movie], max_keywords: int) -> tuple[Keyword, ...]:
    """Strong keywords (two or more movies) first; one-movie keywords only to reach ``MIN_KEYWORDS``."""
    weight = {m.item_id: RECENCY**i for i, m in enumerate(movies)}
    candidates = sorted(
        _candidates(movies),
        key=lambda k: (-_KIND_BOOST[k.kind] * sum(weight[i] for i in k.item_ids), k.kind, k.text),
    )
    chosen: list[Keyword] = []
    for strong in (True, False):
        for keyword in candidates:
            full = len(chosen) >= (max_keywords if strong else min(MIN_KEYWORDS, max_keywords))
            if full or (len(keyword.item_ids) >= 2) != strong:
                continue
            if keyword not in chosen and not any(_redundant(keyword, c) for c in chosen):
                chosen.append(keyword)
    return tuple(chosen)


def _redundant(new: Keyword, old: Keyword) -> bool:
    """Nothing new: 'horror films' beside 'sci-fi horror films', or 'family comedies' beside 'animated
    comedies', when no other movie backs it. A narrower pair after a broad genre does say more."""
    if not set(new.item_ids) <= set(old.item_ids) or not set(new.genres) & set(old.genres):
        return False
    return new.kind == old.kind or set(new.genres) <= set(old.genres)


def _candidates(movies: list[Movie]) -> list[Keyword]:
    out = []
    genres = sorted({g for m in movies for g in m.genres if is_genre(g)})
    for g in genres:
        out.append(_keyword(plural(_forms(g)[1]), "genre", [m for m in movies if g in m.genres], genres=(g,)))
    for a, b in combinations(genres, 2):
        support = [m for m in movies if a in m.genres and b in m.genres]
        if len(support) >= 2:
            out.append(_keyword(plural(genre_phrase((a, b))), "pair", support, genres=(a, b)))
    for decade in sorted({m.year // 10 * 10 for m in movies if m.year is not None}):
        support = [m for m in movies if m.year is not None and m.year // 10 * 10 == decade]
        out.append(_keyword(f"{decade}s films", "decade", support, decade=decade))
    out += _series(movies)
    return out


def _series(movies: list[Movie]) -> list[Keyword]:
    """Title-level cue, only when strong: two or more movies sharing a title stem (Alien, Aliens)."""
    groups: dict[str, list[Movie]] = {}
    for m in movies:
        key = series_key(m.title)
        if len(key) >= 3:
            groups.setdefault(key, []).append(m)
    out = []
    for key, support in sorted(groups.items()):
        if len(support) >= 2:
            name = min(support, key=lambda m: (len(m.title), m.item_id)).title.split(":", 1)[0]
            name = re.sub(r"^(?:the|a|an)\s+", "", _ROMAN_OR_NUMBER.sub("", name), flags=re.IGNORECASE)
            out.append(_keyword(f"the {name} films", "series", support, series=key))
    return out


def _keyword(text: str, kind: str, support: list[Movie], **match: Any) -> Keyword:
    return Keyword(text, kind, tuple(m.item_id for m in support), tuple(m.title for m in support), **match)
