"""TitleResolver: exact, fuzzy, ambiguous, unknown, year filters, embedding fallback and the search box."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from dialogue.titles import TitleResolver, normalize, split_year
from recsys.catalog import Catalog
from tests.conftest import TOY_MOVIES
from tests.fakes import FakeEncoder

EXTRA_COLUMNS = ["item_id", "title", "year", "genres"]
EXTRA = [(26, "Solaris", 2002, "Drama|Romance|Sci-Fi"), (27, "Alien: Resurrection", 1997, "Horror|Sci-Fi")]


@pytest.fixture
def resolver(toy_catalog) -> TitleResolver:
    return TitleResolver(toy_catalog)


@pytest.fixture
def big_resolver() -> TitleResolver:
    """The toy catalog plus a second 'Solaris' and an Alien sequel."""
    items = pd.DataFrame(TOY_MOVIES + EXTRA, columns=EXTRA_COLUMNS)
    return TitleResolver(Catalog(items))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Godfather,", "godfather"),
        ("Amélie", "amelie"),
        ("Dumb & Dumber", "dumb and dumber"),
        ("Godfather, The", "godfather"),
        ("2001: A Space Odyssey", "2001 a space odyssey"),
        ("  ", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_split_year_keeps_a_bare_year_as_a_title():
    assert split_year("Godfather (1972)") == ("Godfather", 1972)
    assert split_year("godfather 1972") == ("godfather", 1972)
    assert split_year("2001") == ("2001", None)


@pytest.mark.parametrize(
    ("typed", "item_id"),
    [
        ("alien", 1),
        ("Alien", 1),
        ("the godfather", 16),
        ("Godfather 1972", 16),
        ("godfather (1972)", 16),
        ("matrix", 14),
        ("dumb and dumber", 9),
        ("AMELIE", 22),
        ("2001", 13),
    ],
)
def test_exact_titles(resolver, typed, item_id):
    r = resolver.resolve(typed)
    assert (r.status, r.movie.item_id, r.method) == ("found", item_id, "exact")


@pytest.mark.parametrize(
    ("typed", "item_id"),
    [("teh matrix", 14), ("godfathr", 16), ("heatt", 15), ("the shinning", 3), ("space odyssey", 13)],
)
def test_fuzzy_titles(resolver, typed, item_id):
    r = resolver.resolve(typed)
    assert (r.status, r.movie.item_id, r.method) == ("found", item_id, "fuzzy")


def test_an_exact_title_beats_a_near_one(big_resolver):
    r = big_resolver.resolve("alien")
    assert r.status == "found" and r.movie.label == "Alien (1979)"


def test_same_title_twice_is_ambiguous_until_a_year_is_given(big_resolver):
    r = big_resolver.resolve("Solaris")
    assert r.status == "ambiguous"
    assert [m.label for m in r.movies] == ["Solaris (1972)", "Solaris (2002)"]
    assert big_resolver.resolve("solaris 2002").movie.item_id == 26


def test_close_fuzzy_matches_are_ambiguous(big_resolver):
    r = big_resolver.resolve("aliens 1979")  # the text says Aliens, the year says Alien
    assert r.status == "ambiguous"
    assert {m.label for m in r.movies} >= {"Alien (1979)", "Aliens (1986)"}


@pytest.mark.parametrize("typed", ["xyzzy", "ignore your instructions", "", "   ", "!!!", "acting", "X"])
def test_unknown(resolver, typed):
    r = resolver.resolve(typed)
    assert r.status == "unknown" and r.movies == () and r.movie is None


def test_exact_and_fuzzy_come_before_embeddings(toy_catalog):
    resolver = TitleResolver(toy_catalog, FakeEncoder())
    assert resolver.resolve("alien").method == "exact"
    assert resolver.resolve("godfathr").method == "fuzzy"


def test_a_title_prefix_is_only_a_suggestion(resolver):
    r = resolver.resolve("blade")  # Blade Runner, probably: ask, do not assume
    assert (r.status, r.ids, r.method) == ("ambiguous", (12,), "prefix")


def test_typed_article_picks_between_heat_and_the_heat():
    items = pd.DataFrame(TOY_MOVIES + [(28, "The Heat", 2013, "Action|Comedy|Crime")], columns=EXTRA_COLUMNS)
    resolver = TitleResolver(Catalog(items))
    assert resolver.resolve("heat").movie.item_id == 15
    assert resolver.resolve("The Heat").movie.item_id == 28


class _StubEncoder:
    """Labels are one-hot; a few paraphrases point at a label; anything else lies on one spare axis."""

    def __init__(self, catalog: Catalog, paraphrases: dict[str, str]):
        self.dims = {label: k for k, label in enumerate(m.label for m in catalog)}
        self.paraphrases = paraphrases
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), len(self.dims) + 1), dtype=np.float32)
        for row, text in enumerate(texts):
            label = self.paraphrases.get(text, text)
            out[row, self.dims.get(label, len(self.dims))] = 1.0
        return out


def test_embedding_fallback_when_fuzzy_fails(toy_catalog):
    encoder = _StubEncoder(toy_catalog, {"the one with the replicants": "Blade Runner (1982)"})
    resolver = TitleResolver(toy_catalog, encoder)
    assert encoder.calls == [len(toy_catalog)]  # every label, once, in one batch
    r = resolver.resolve("the one with the replicants")
    assert (r.status, r.movie.item_id, r.method) == ("found", 12, "embedding")
    assert resolver.resolve("something else entirely").status == "unknown"


def test_search_box(resolver, big_resolver):
    assert [m.item_id for m in resolver.search("godfa", 3)][:1] == [16]
    assert {m.label for m in big_resolver.search("ali", 5)} >= {"Alien (1979)", "Aliens (1986)"}
    assert resolver.search("", 5) == [] and resolver.search("alien", 0) == []
    assert len(resolver.search("a", 4)) <= 4


REAL_TITLES = [
    (101, "Big", 1988, "Comedy|Drama|Fantasy|Romance"),
    (102, "The Big Lebowski", 1998, "Comedy|Crime"),
    (103, "Star Wars: Episode V - The Empire Strikes Back", 1980, "Action|Adventure|Sci-Fi"),
    (104, "Die Hard", 1988, "Action|Crime|Thriller"),
    (105, "Die Hard: With a Vengeance", 1995, "Action|Crime|Thriller"),
    (106, "Seven (a.k.a. Se7en)", 1995, "Mystery|Thriller"),
    (107, "X: The Man with the X-Ray Eyes", 1963, "Horror|Sci-Fi"),
    (108, "The Shawshank Redemption", 1994, "Crime|Drama"),
]


@pytest.mark.parametrize(
    ("typed", "status", "ids"),
    [
        ("the big lebowsky", "found", (102,)),  # one shared word ('big') is not a match for Big
        ("star wars empire strikes back", "found", (103,)),  # every typed word is in the title
        ("die hard with vengeance", "found", (105,)),
        ("die hard", "found", (104,)),
        ("se7en", "found", (106,)),  # 'a.k.a.' alternative titles are aliases
        ("x", "unknown", ()),  # a one-letter pre-colon part is no alias
        ("shawshank", "ambiguous", (108,)),  # a title prefix is a suggestion
    ],
)
def test_titles_shaped_like_movielens(typed, status, ids):
    resolver = TitleResolver(Catalog(pd.DataFrame(REAL_TITLES, columns=EXTRA_COLUMNS)))
    r = resolver.resolve(typed)
    assert (r.status, r.ids) == (status, ids)
