"""build_profile(): keywords backed only by the real history, deterministic, readable, JSON round trip."""

from __future__ import annotations

import json

import pytest

from dialogue.profile import (
    MAX_KEYWORDS,
    Profile,
    build_profile,
    genre_name,
    genre_phrase,
    plural,
    series_key,
)

HISTORIES = [
    ([1, 11], [9]),
    ([1, 2, 23], [3, 4]),
    ([6, 7, 8, 24], [17]),
    ([15, 21, 14, 12, 2, 19, 20, 25], [9, 10, 18, 22, 5, 3]),
    ([9], []),
    ([], [16]),
    ([], []),
]


@pytest.mark.parametrize(("likes", "dislikes"), HISTORIES)
def test_keywords_are_backed_only_by_real_history(toy_catalog, likes, dislikes):
    profile = build_profile(likes, dislikes, toy_catalog)
    for side, history in ((profile.likes, likes), (profile.dislikes, dislikes)):
        assert len(side) == 0 if not history else 2 <= len(side) <= MAX_KEYWORDS
        for keyword in side:
            assert keyword.item_ids and set(keyword.item_ids) <= set(history)
            assert keyword.titles == tuple(toy_catalog[i].title for i in keyword.item_ids)
            assert all(keyword.matches(toy_catalog[i]) for i in keyword.item_ids)
            unsupported = [
                i for i in history if keyword.matches(toy_catalog[i]) and i not in keyword.item_ids
            ]
            assert unsupported == []  # every history movie that fits is cited


def test_golden_render(toy_catalog):
    profile = build_profile([1, 11], [9], toy_catalog)
    assert profile.render() == (
        "You like: sci-fi films — Alien, Solaris; 1970s films — Alien, Solaris. "
        "You avoid: comedies — Dumb & Dumber; 1990s films — Dumb & Dumber."
    )


def test_genre_pairs_and_series_cues(toy_catalog):
    profile = build_profile([1, 2, 23], [], toy_catalog)
    texts = [k.text for k in profile.likes]
    assert texts[0] == "sci-fi horror films"
    assert "the Alien films" in texts
    series = next(k for k in profile.likes if k.kind == "series")
    assert series.titles == ("Alien", "Aliens")
    assert "sci-fi films" not in texts  # same movies as the pair: redundant


def test_newest_first_order_breaks_ties(toy_catalog):
    a = build_profile([9, 17], [], toy_catalog)  # Dumb & Dumber (Comedy) newest
    b = build_profile([17, 9], [], toy_catalog)  # Casablanca (Drama|Romance) newest
    assert a.likes[0].text == "comedies" and b.likes[0].text in ("dramas", "romances")


def test_deterministic_and_pure(toy_catalog):
    likes, dislikes = [15, 21, 14, 12], [3]
    assert build_profile(likes, dislikes, toy_catalog) == build_profile(
        list(likes), list(dislikes), toy_catalog
    )
    assert likes == [15, 21, 14, 12]


def test_unknown_and_repeated_ids_are_skipped(toy_catalog):
    profile = build_profile([999, 1, 1, 11], [-5], toy_catalog)
    assert profile == build_profile([1, 11], [], toy_catalog)


def test_empty_sides_render_gracefully(toy_catalog):
    assert build_profile([], [], toy_catalog).render() == "No likes yet. No dislikes yet."
    assert build_profile([1], [], toy_catalog).render().endswith("No dislikes yet.")
    assert build_profile([], [], toy_catalog).is_empty


@pytest.mark.parametrize(("likes", "dislikes"), HISTORIES)
def test_json_round_trip(toy_catalog, likes, dislikes):
    profile = build_profile(likes, dislikes, toy_catalog)
    assert Profile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


def test_matching_keywords(toy_catalog):
    profile = build_profile([1, 11], [9], toy_catalog)
    assert [k.text for k in profile.matching(toy_catalog[13], "likes")] == ["sci-fi films"]
    assert [k.text for k in profile.matching(toy_catalog[16], "likes")] == ["1970s films"]
    assert [k.text for k in profile.matching(toy_catalog[10], "dislikes")] == ["comedies"]


@pytest.mark.parametrize(
    ("genres", "phrase"),
    [
        (("Horror", "Sci-Fi"), "sci-fi horror film"),
        (("Comedy", "Romance"), "romantic comedy"),
        (("Crime", "Drama"), "crime drama"),
        (("Action", "Crime", "Thriller"), "action thriller"),
        (("Comedy", "Drama"), "comedy-drama"),
        (("Drama",), "drama"),
        (("(no genres listed)",), "film"),
        (("Children's", "Animation"), "animated family film"),
    ],
)
def test_genre_phrase(genres, phrase):
    assert genre_phrase(genres) == phrase


def test_words():
    assert plural("romantic comedy") == "romantic comedies" and plural("sci-fi film") == "sci-fi films"
    assert genre_name("Sci-Fi") == "sci-fi" and genre_name("Children's") == "children's"
    assert series_key("Aliens") == series_key("Alien") == series_key("Alien: Resurrection") == "alien"
    assert series_key("Toy Story 2") == series_key("Toy Story") == "toy story"
