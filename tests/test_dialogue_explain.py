"""explain()/movement(): grounded in the catalog and the history; reply(): short answers per intent."""

from __future__ import annotations

import re

import pytest

from dialogue.explain import describe, explain, movement, movement_reason
from dialogue.profile import build_profile, genre_name, genre_word
from dialogue.reply import ReplyContext, clarify, quote, reply
from dialogue.titles import Resolution, TitleResolver
from dialogue.turn import MAX_CHARS, parse

HISTORIES = [([1, 11, 2], [3, 9]), ([6, 15], []), ([], [4]), ([], []), ([17, 22, 18], [14, 21])]


def _allowed(movie_id, likes, dislikes, catalog):
    cited = [catalog[i] for i in (*likes, *dislikes)]
    movie = catalog[movie_id]
    genres = set(movie.genres).union(*(m.genres for m in cited))
    years = {m.year for m in (movie, *cited)}
    return {m.label for m in cited}, genres, years


@pytest.mark.parametrize(("likes", "dislikes"), HISTORIES)
def test_explanations_mention_only_real_movies_genres_and_years(toy_catalog, likes, dislikes):
    profile = build_profile(likes, dislikes, toy_catalog)
    every_genre = {g for m in toy_catalog for g in m.genres}
    for movie in toy_catalog:
        text = explain(movie.item_id, likes, dislikes, toy_catalog, profile)
        labels, genres, years = _allowed(movie.item_id, likes, dislikes, toy_catalog)
        assert text.endswith(".") and text.count(". ") == 0  # one sentence
        for other in toy_catalog:
            if other.label in text:
                assert other.label in labels, f"{other.label} is not in the history: {text}"
        for g in every_genre - genres:
            for word in {genre_name(g), genre_word(g)}:
                assert not re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE), (g, text)
        assert {int(y) for y in re.findall(r"\b(?:18|19|20)\d\d\b", text)} <= years


def test_golden_explanations(toy_catalog):
    likes, dislikes = [1, 11, 2], [3, 9]
    profile = build_profile(likes, dislikes, toy_catalog)
    assert explain(21, likes, dislikes, toy_catalog, profile) == (
        "Because you liked Aliens (1986): it's a 1988 action thriller sharing the action genre."
    )
    assert explain(10, likes, dislikes, toy_catalog, profile) == (
        "A 1980 comedy; heads-up: it shares the comedy genre with Dumb & Dumber (1994), which you disliked."
    )
    assert "which you disliked" in explain(23, likes, dislikes, toy_catalog, profile)
    closest = explain(12, likes, dislikes, toy_catalog, profile, {"pos_rank": 1})
    assert closest.endswith("the closest match to your likes in this list.")


def test_cold_start_and_unknown_ids(toy_catalog):
    text = explain(5, [], [], toy_catalog)
    assert text.startswith("A 1996 horror mystery") and "👍" in text
    assert explain(999, [1], [], toy_catalog) == ""
    assert describe(toy_catalog[14]) == "a 1999 action thriller"


def test_phrasing_varies_but_is_deterministic(toy_catalog):
    likes = [1, 11, 2]
    first = [explain(i, likes, [], toy_catalog) for i in toy_catalog.ids()]
    assert first == [explain(i, likes, [], toy_catalog) for i in toy_catalog.ids()]
    openings = {t.split(" ")[0] for t in first}
    assert len(openings) >= 3


@pytest.mark.parametrize(
    ("prev", "new", "badge"), [(5, 2, "↑3"), (2, 4, "↓2"), (None, 1, "new"), (3, 3, ""), (3, None, "")]
)
def test_movement(prev, new, badge):
    assert movement(prev, new) == badge


def test_movement_reason(toy_catalog):
    likes, dislikes = [1, 11], [3]
    assert (
        movement_reason(23, 5, 2, likes, dislikes, toy_catalog) == "moved up: close to what you liked (Alien)"
    )
    assert movement_reason(4, 2, 5, likes, dislikes, toy_catalog) == (
        "moved down: resembles The Shining, which you disliked"
    )
    assert (
        movement_reason(17, 2, 5, likes, dislikes, toy_catalog)
        == "moved down: other picks fit your likes better"
    )
    assert (
        movement_reason(13, None, 1, likes, dislikes, toy_catalog) == "new: close to what you liked (Alien)"
    )
    assert movement_reason(13, 1, 1, likes, dislikes, toy_catalog) == ""


# ---------------------------------------------------------------- replies


@pytest.fixture
def say(toy_catalog):
    resolver = TitleResolver(toy_catalog)
    genres = {g for m in toy_catalog for g in m.genres}
    return lambda text: parse(text, resolver, genres)


@pytest.fixture
def ctx(toy_catalog):
    shown = tuple(toy_catalog[i] for i in (12, 14, 19, 20, 25))
    return ReplyContext(shown=shown, explanations=tuple(f"Reason {k}." for k in range(1, 6)))


def test_clarify(toy_catalog):
    ambiguous = Resolution("alien", "ambiguous", (toy_catalog[1], toy_catalog[2]))
    assert clarify([ambiguous]) == "Did you mean Alien (1979) or Aliens (1986)?"
    unknown = Resolution("Xyz", "unknown")
    assert clarify([unknown]) == "I couldn't find 'Xyz' in the catalog — try the search box."


def test_quote_strips_markup():
    assert "<" not in quote("<script>alert(1)</script>") and len(quote("x" * 500)) <= 60


def test_request_reply(say, ctx):
    text = reply(say("something like Alien but funnier"), ctx)
    assert text == "Here are some comedy picks like Alien (1979). 👍 or 👎 any of them and I'll adjust."
    assert "couldn't find anything" in reply(say("a funny space movie"), ReplyContext())


def test_critique_reply(say, ctx):
    assert reply(say("no horror"), ctx) == "Okay — no horror. Here's the updated list."
    assert reply(say("newer"), ctx) == "Okay — newer ones. Here's the updated list."
    assert "from the 1980s" in reply(say("from the 80s"), ctx)


def test_feedback_reply(say, ctx):
    assert reply(say("not #2"), ctx) == "Noted: 👎 The Matrix (1999). I've re-ranked the list."
    assert reply(say("loved Heat"), ctx) == "Noted: 👍 Heat (1995). I've re-ranked the list."
    assert reply(say("#9 was great"), ctx) == "There's no #9 on the list — pick 1–5."
    assert reply(say("I liked Qwertyuiop"), ctx).startswith("I couldn't find 'Qwertyuiop'")


def test_why_reply(say, ctx, toy_catalog):
    assert reply(say("why #2?"), ctx) == "#2 The Matrix (1999): Reason 2."
    assert reply(say("why Interstellar?"), ctx) == "#5 Interstellar (2014): Reason 5."
    assert reply(say("why Heat?"), ctx) == "Heat (1995) isn't on the current list."
    profile = build_profile([1, 11], [], toy_catalog)
    assert reply(say("what is my profile?"), ReplyContext(profile=profile)).startswith(
        "You like: sci-fi films"
    )
    assert "don't know your taste" in reply(say("what is my profile?"), ReplyContext())


def test_other_replies(say, ctx):
    assert reply(say("hi"), ctx).startswith("Hi!")
    assert reply(say(""), ctx).startswith("Tell me what you're in the mood for")
    assert "why #2?" in reply(say("help"), ctx)
    long = reply(say("a funny space movie " * 500), ctx)
    assert long.endswith(f"only read the first {MAX_CHARS:,} characters.)")
