"""A simulated person: where a session starts, and how the person answers a shown movie.

The person's opinions are their held-out ratings (``split.RatingSplit.heldout``): 👍 for a rating >= 4,
👎 for <= 2, nothing for 3 (ml-latest-small's half stars 2.5-3.5 included) or for a movie they never
rated. Optionally an unknown movie draws a 👎 with probability ``p_unknown_dislike`` (robustness to
noisy dislikes); the draw is a hash of (seed, user, item), so the same person answers the same movie
the same way under every condition.

Everything here is a pure function of its arguments. Not for: running a session (session.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Answer = Literal["like", "dislike"] | None
LIKE_MIN = 4.0
DISLIKE_MAX = 2.0


@dataclass(frozen=True)
class PersonConfig:
    like_min: float = LIKE_MIN
    dislike_max: float = DISLIKE_MAX
    p_unknown_dislike: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Person:
    """One simulated person at the start of a session (raw catalog ids throughout)."""

    user_id: int
    heldout: Mapping[int, float]  # future opinions: raw id -> rating
    likes: tuple[int, ...]  # start state, newest first
    dislikes: tuple[int, ...]  # start state, newest first
    seen: frozenset[int]  # never shown: rated before the session (and injected dislikes)
    burst_genre: str | None = None  # the genre they just disliked three times ("no more horror")


def answer(item: int, person: Person, cfg: PersonConfig) -> Answer:
    """👍/👎/nothing for one shown movie (see the module docstring)."""
    rating = person.heldout.get(item)
    if rating is None:
        unknown_dislike = cfg.p_unknown_dislike > 0 and uniform_draw(cfg.seed, person.user_id, item) < cfg.p_unknown_dislike
        return "dislike" if unknown_dislike else None
    if rating >= cfg.like_min:
        return "like"
    if rating <= cfg.dislike_max:
        return "dislike"
    return None


def uniform_draw(seed: int, user: int, item: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, user, item)."""
    return float(np.random.default_rng([seed, user, item]).random())


def newest(items: Sequence[int], ratings: Sequence[float], keep: Callable[[float], bool], n: int) -> tuple[int, ...]:
    """The ``n`` most recent items whose rating passes ``keep``, newest first (``items`` chronological)."""
    out = [int(i) for i, r in zip(reversed(items), reversed(ratings), strict=True) if keep(r)]
    return tuple(out[:n])


def start_person(
    user_id: int,
    history: Sequence[int],
    history_ratings: Sequence[float],
    heldout: Mapping[int, float],
    n_likes: int = 10,
    n_dislikes: int = 5,
    cfg: PersonConfig | None = None,
) -> Person:
    """Warm start: the newest ``n_likes`` history likes and ``n_dislikes`` dislikes (cold start: 3 and 2).

    Every history movie is ``seen`` (masked, as already-rated items are in every offline protocol).
    """
    cfg = cfg or PersonConfig()
    likes = newest(history, history_ratings, lambda r: r >= cfg.like_min, n_likes)
    dislikes = newest(history, history_ratings, lambda r: r <= cfg.dislike_max, n_dislikes)
    return Person(user_id, dict(heldout), likes, dislikes, frozenset(int(i) for i in history))


def with_burst(person: Person, burst: Sequence[int], genre: str | None = None) -> Person:
    """The same person after disliking ``burst`` (newest first, all of ``genre``) right before the session."""
    dislikes = tuple(int(i) for i in burst) + person.dislikes
    return Person(person.user_id, person.heldout, person.likes, dislikes, person.seen | set(burst), genre)


def burst_genre(shown: Sequence[int], genres: Mapping[int, Sequence[str]], broad: Sequence[str] = ("Drama", "Comedy")) -> str | None:
    """The genre to burst-dislike: the most frequent genre in ``shown`` other than the broad ones (which
    cover half the catalog), else the most frequent one; ties by name. None if nothing has a genre."""
    counts: dict[str, int] = {}
    for item in shown:
        for g in genres.get(item, ()):
            counts[g] = counts.get(g, 0) + 1
    narrow = {g: c for g, c in counts.items() if g not in broad} or counts
    return min(narrow, key=lambda g: (-narrow[g], g)) if narrow else None


def burst_items(genre: str, popular: Sequence[int], genres: Mapping[int, Sequence[str]], person: Person, n: int = 3) -> list[int]:
    """The ``n`` most popular movies of ``genre`` the person never rated (not seen, not held out)."""
    out = [i for i in popular if genre in genres.get(i, ()) and i not in person.seen and i not in person.heldout]
    return out[:n]
