"""Typed movie titles -> catalog movies: exact, fuzzy (rapidfuzz) and, optionally, embedding matching.

``TitleResolver.resolve("godfather 1972")`` answers with a ``Resolution``: one movie ("found"), a few
close options to ask back about ("ambiguous"), or nothing ("unknown"). ``search`` serves the UI's title box.

Not for: finding titles inside a longer message (turn.py does that, calling ``exact``/``resolve`` on
candidate spans) or any ranking. Free text never becomes a movie except through this catalog lookup.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from rapidfuzz import fuzz, process

from recsys.catalog import Catalog, Movie
from recsys.protocols import TextEncoder

Status = Literal["found", "ambiguous", "unknown"]

_ARTICLES = ("the", "a", "an")
_TRAILING_ARTICLE = re.compile(r",\s*(the|a|an)\s*$", re.IGNORECASE)
_TRAILING_YEAR = re.compile(r"^(?P<title>.*?\S)[\s,(\[]*(?P<year>(?:18|19|20)\d\d)[)\]]?\s*$")
_PARENS = re.compile(r"\(([^()]{2,80})\)")
_AKA = re.compile(r"^\s*a\.?k\.?a\.?\s+", re.IGNORECASE)
_NON_WORD = re.compile(r"[^\w\s]|_")


def normalize(text: str) -> str:
    """'The Godfather,' -> 'godfather'; 'Amélie' -> 'amelie'; '&' -> 'and'. Leading/trailing articles go."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _TRAILING_ARTICLE.sub("", text.strip())
    words = _NON_WORD.sub(" ", text.replace("&", " and ")).split()
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def split_year(text: str) -> tuple[str, int | None]:
    """'Godfather 1972' / 'Godfather (1972)' -> ('Godfather', 1972); a bare '2001' stays a title."""
    m = _TRAILING_YEAR.match(text.strip())
    if not m or not normalize(m.group("title")):
        return text, None
    return m.group("title"), int(m.group("year"))


def strict_score(a: str, b: str) -> float:
    """Similarity of a typed title and an alias, 0-100. Unlike WRatio, one shared word is not enough
    ('space friend' vs '2001 a space odyssey'): a partial match counts only between strings of similar
    length ('acting' must not find 'The Acting Class'), a word-set match only when every typed word is in the title and covers half of it.
    The search box, which wants loose matches, uses WRatio."""
    score = max(fuzz.ratio(a, b), fuzz.token_sort_ratio(a, b))
    if min(len(a), len(b)) >= 0.6 * max(len(a), len(b)):
        score = max(score, 0.9 * fuzz.partial_ratio(a, b))
    words_a, words_b = set(a.split()), set(b.split())
    if len(words_a) >= 2 and words_a <= words_b and len(words_a) >= 0.5 * len(words_b):
        score = max(score, 0.95 * fuzz.token_set_ratio(a, b))  # 'star wars empire strikes back'
    return score


def aliases(movie: Movie) -> Iterator[tuple[str, int]]:
    """(normalised alias, priority): 0 = the title, 1 = a parenthesised or pre-colon alternative."""
    yield normalize(movie.title), 0
    main = _PARENS.sub(" ", movie.title)
    if main.strip() != movie.title.strip():
        yield normalize(main), 0
    alternatives = [_AKA.sub("", alt) for alt in _PARENS.findall(movie.title)]
    alternatives += [main.split(":", 1)[0]] if ":" in main else []
    for alt in alternatives:
        if len(normalize(alt)) >= 3:  # 'X: The Man with the X-Ray Eyes' is no answer to a stray 'X'
            yield normalize(alt), 1


def has_article(title: str) -> bool:
    """'The Heat' / 'Heat, The' -> True; used to prefer 'Heat' over 'The Heat' when 'heat' is typed."""
    return bool(
        re.match(r"\s*[\"'“‘]?(?:the|a|an)\s", title, re.IGNORECASE) or _TRAILING_ARTICLE.search(title)
    )


@dataclass(frozen=True)
class Resolution:
    """What a typed title refers to. ``movies``: one when found, the options when ambiguous, none when unknown."""

    query: str
    status: Status
    movies: tuple[Movie, ...] = ()
    score: float = 0.0
    method: str = ""  # "exact" | "fuzzy" | "embedding" | ""

    @property
    def movie(self) -> Movie | None:
        return self.movies[0] if self.status == "found" else None

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(m.item_id for m in self.movies)


@dataclass(frozen=True)
class ResolverConfig:
    fuzzy_min: float = 85.0  # strict_score (0-100) a fuzzy match needs
    fuzzy_margin: float = 4.0  # options within this of the best make the answer ambiguous
    embed_min: float = 0.8  # cosine an embedding match needs
    embed_margin: float = 0.02
    embed_min_words: int = 2  # words of 3+ letters a query needs before embeddings are tried
    max_options: int = 4
    year_bonus: float = 6.0  # a typed year that matches (or, negated, that does not)


class TitleResolver:
    """Exact alias index + rapidfuzz over all aliases + (optional) label embeddings, built once."""

    def __init__(
        self, catalog: Catalog, encoder: TextEncoder | None = None, config: ResolverConfig | None = None
    ):
        self.catalog = catalog
        self.config = config or ResolverConfig()
        self._exact: dict[str, list[tuple[int, int]]] = {}
        self._keys: list[str] = []
        self._key_owner: list[tuple[int, int]] = []
        for movie in catalog:
            for alias, priority in dict.fromkeys(aliases(movie)):
                if alias:
                    self._exact.setdefault(alias, []).append((movie.item_id, priority))
                    self._keys.append(alias)
                    self._key_owner.append((movie.item_id, priority))
        self._encoder = encoder
        self._ids = catalog.ids()
        # (n_movies, d) L2-normalised, one batch at start-up
        self._vectors = (
            encoder.encode([m.label for m in catalog]) if encoder is not None and len(catalog) else None
        )

    def exact(self, text: str) -> Resolution | None:
        """Only exact alias matches (after normalising); None when there is none. A typed year filters."""
        title, year = split_year(text)
        attempts = [(normalize(text), None)] + ([(normalize(title), year)] if year else [])
        for key, want_year in attempts:
            hits = [
                (i, p)
                for i, p in self._exact.get(key, [])
                if want_year is None or self.catalog[i].year == want_year
            ]
            if hits:
                best = min(p for _, p in hits)
                ids = list(dict.fromkeys(i for i, p in hits if p == best))
                same = [i for i in ids if has_article(self.catalog[i].title) == has_article(text)]
                return self._answer(text, same or ids, 100.0, "exact")
        return None

    def resolve(self, text: str) -> Resolution:
        """Exact first (an exact title beats any near one), then fuzzy, then title prefixes, then embeddings.

        A prefix match ('shawshank' -> The Shawshank Redemption) is only a suggestion: always "ambiguous".
        """
        query = text.strip()[:200]
        if not normalize(query):
            return Resolution(query, "unknown")
        found = self.exact(query) or self._fuzzy(query) or self._prefixed(query) or self._embedded(query)
        return found or Resolution(query, "unknown")

    def _prefixed(self, query: str) -> Resolution | None:
        key = normalize(query)
        if len(key) < 4:
            return None
        starts = sorted((len(alias), k) for k, alias in enumerate(self._keys) if alias.startswith(key + " "))
        ids = list(dict.fromkeys(self._key_owner[k][0] for _, k in starts))  # shortest titles first
        if not ids:
            return None
        answer = self._answer(query, ids, 0.0, "prefix")
        return replace(answer, status="ambiguous")

    def search(self, text: str, k: int = 10) -> list[Movie]:
        """Best title matches for a search box, best first; prefix matches rank above mid-word ones."""
        query = normalize(text[:200])
        if not query or k <= 0:
            return []
        scored: dict[int, float] = {}
        for alias, score, idx in process.extract(
            query, self._keys, scorer=fuzz.WRatio, limit=4 * k + 20, score_cutoff=60
        ):
            item_id, priority = self._key_owner[idx]
            score += (10.0 if alias.startswith(query) else 0.0) - priority
            scored[item_id] = max(scored.get(item_id, 0.0), score)
        ranked = sorted(scored.items(), key=lambda kv: (-kv[1], self.catalog[kv[0]].label))
        found = [self.catalog[i] for i, _ in ranked[:k]]
        if len(found) < k and self._vectors is not None:
            seen = {m.item_id for m in found}
            found += [m for m, _ in self._nearest(text[:200], k + len(seen)) if m.item_id not in seen]
        return found[:k]

    def _fuzzy(self, query: str) -> Resolution | None:
        title, year = split_year(query)
        scored = self._fuzzy_scores(normalize(title), year, cutoff=self.config.fuzzy_min - 15)
        if year:  # the whole text may itself be the title ('Blade Runner 2049')
            for i, s in self._fuzzy_scores(normalize(query), None, cutoff=self.config.fuzzy_min - 15).items():
                scored[i] = max(scored.get(i, 0.0), s)
        ranked = sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))
        if not ranked or ranked[0][1] < self.config.fuzzy_min:
            return None
        best = ranked[0][1]
        close = [i for i, s in ranked if s >= self.config.fuzzy_min and best - s <= self.config.fuzzy_margin]
        return self._answer(query, close, best, "fuzzy")

    def _fuzzy_scores(self, key: str, year: int | None, cutoff: float, limit: int = 25) -> dict[int, float]:
        """item id -> best ``strict_score`` over its aliases, a typed year adding or removing ``year_bonus``."""
        out: dict[int, float] = {}
        candidates = {
            idx
            for scorer in (
                fuzz.token_sort_ratio,
                fuzz.partial_ratio,
                fuzz.token_set_ratio,
            )  # C-speed shortlists, then rescored
            for _, _, idx in process.extract(key, self._keys, scorer=scorer, limit=limit, score_cutoff=cutoff)
        }
        for idx in sorted(candidates):
            alias = self._keys[idx]
            score = strict_score(key, alias)
            item_id, priority = self._key_owner[idx]
            score -= priority  # a real title beats an alias at equal similarity
            if year is not None:
                score += (
                    self.config.year_bonus if self.catalog[item_id].year == year else -self.config.year_bonus
                )
            out[item_id] = max(out.get(item_id, 0.0), min(score, 100.0))
        return out

    def _embedded(self, query: str) -> Resolution | None:
        """Paraphrases only: one word is a typo for fuzzy matching, not a description."""
        if len([w for w in normalize(query).split() if len(w) >= 3]) < self.config.embed_min_words:
            return None
        nearest = self._nearest(query, 2)
        if not nearest or nearest[0][1] < self.config.embed_min:
            return None
        best = nearest[0][1]
        close = [
            m.item_id
            for m, s in nearest
            if s >= self.config.embed_min and best - s <= self.config.embed_margin
        ]
        return self._answer(query, close, round(100.0 * best, 1), "embedding")

    def _nearest(self, text: str, k: int) -> list[tuple[Movie, float]]:
        if self._vectors is None or self._encoder is None or not text.strip():
            return []
        sims = self._vectors @ self._encoder.encode([text])[0]  # (n_movies,)
        top = np.argsort(-sims, kind="stable")[:k]
        return [(self.catalog[self._ids[j]], float(sims[j])) for j in top]

    def _answer(self, query: str, ids: list[int], score: float, method: str) -> Resolution:
        best_first = [self.catalog[i] for i in ids[: self.config.max_options]]
        movies = sorted(best_first, key=lambda m: (m.year or 0, m.item_id))
        if len(movies) == 1:
            return Resolution(query, "found", (movies[0],), score, method)
        return Resolution(query, "ambiguous", tuple(movies), score, method)
