"""One grounded sentence per shown movie, and the ↑/↓ badge with its reason.

Everything said comes from the catalog and the person's own history: the movie's genres and year, the liked
and disliked movies it shares genres (or a title stem) with, and the profile keywords it fits. Never plots,
cast or popularity. Phrasing varies a little, deterministically by item id.

``breakdown`` keys read here (all optional, ints or None): ``pos_rank`` (rank given the likes, 1 = best),
``neg_rank`` (rank given the dislikes, 1 = most like them), ``base_rank``.
Not for: ranking, or the chat reply around the list (reply.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dialogue.profile import Profile, genre_name, genre_phrase, is_genre, series_key
from recsys.catalog import Catalog, Movie


def describe(movie: Movie) -> str:
    """'a 1979 sci-fi horror film' from the catalog's year and genres only."""
    phrase = genre_phrase(movie.genres)
    text = f"{movie.year} {phrase}" if movie.year else phrase
    return ("an " if text[:1] in "aeiouAEIOU" or text.startswith(("18", "11")) else "a ") + text


def shared_genres(movie: Movie, other: Movie) -> list[str]:
    return [g for g in movie.genres if is_genre(g) and g in other.genres]


def closest(movie: Movie, history: Sequence[Movie], n: int = 2) -> list[Movie]:
    """History movies sharing the most with ``movie`` (genre Jaccard, title stem, decade); newest on ties."""

    def similarity(other: Movie) -> float:
        a, b = set(movie.genres), set(other.genres)
        score = len(a & b) / max(len(a | b), 1)
        score += 1.0 if series_key(movie.title) == series_key(other.title) else 0.0
        same_decade = movie.year and other.year and movie.year // 10 == other.year // 10
        return score + (0.1 if same_decade and score > 0 else 0.0)

    scored = [(similarity(o), -k, o) for k, o in enumerate(history) if o.item_id != movie.item_id]
    return [o for s, _, o in sorted(scored, key=lambda t: (t[0], t[1]), reverse=True) if s > 0][:n]


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _what_shared(movie: Movie, *others: Movie) -> str:
    """'the sci-fi and horror genres': genres ``movie`` has in common with every one of ``others``."""
    genres = [g for g in movie.genres if is_genre(g) and all(g in o.genres for o in others)]
    if genres:
        return f"the {_join([genre_name(g) for g in genres])} genre" + ("s" if len(genres) > 1 else "")
    same_series = all(series_key(movie.title) == series_key(o.title) for o in others)
    return "a title" if same_series else "its era"


_WITH_LIKES = (
    "Because you liked {likes}: it's {desc} sharing {shared}{extra}.",
    "{Desc} that shares {shared} with {likes}, which you liked{extra}.",
    "You liked {likes}; this is {desc} with {shared} in common{extra}.",
)
_ONLY_DISLIKES = (
    "{Desc}; heads-up: it shares {shared_d} with {dislike}, which you disliked.",
    "{Desc}, though it shares {shared_d} with {dislike}, which you didn't like.",
)
_COLD = (
    "{Desc} — 👍 or 👎 it so I can learn your taste.",
    "{Desc}; tell me with 👍 or 👎 whether it's your kind of thing.",
)
_NO_OVERLAP = (
    "{Desc}, a change of pace from what you've liked so far.",
    "{Desc} — something different from your likes, to widen the net.",
)


def explain(
    movie_id: int,
    likes: Sequence[int],
    dislikes: Sequence[int],
    catalog: Catalog,
    profile: Profile | None = None,
    breakdown: Mapping[str, Any] | None = None,
) -> str:
    """One sentence for a card, citing real liked/disliked movies and real attributes. '' for unknown ids."""
    if movie_id not in catalog:
        return ""
    movie = catalog[movie_id]
    liked = [catalog[i] for i in likes if i in catalog]
    disliked = [catalog[i] for i in dislikes if i in catalog]
    near_likes, near_dislike = closest(movie, liked, 2), closest(movie, disliked, 1)
    if len(near_likes) == 2 and _what_shared(movie, *near_likes) != _what_shared(movie, near_likes[0]):
        near_likes = near_likes[:1]  # cite two movies only for what both share
    fields = {"desc": describe(movie), "Desc": _capital(describe(movie))}
    if near_likes:
        fields |= {
            "likes": _join([m.label for m in near_likes]),
            "shared": _what_shared(movie, near_likes[0]),
            "extra": _extra(movie, near_likes, near_dislike, profile, breakdown or {}),
        }
        return _pick(_WITH_LIKES, movie_id).format(**fields)
    if near_dislike:
        fields |= {"dislike": near_dislike[0].label, "shared_d": _what_shared(movie, near_dislike[0])}
        return _pick(_ONLY_DISLIKES, movie_id).format(**fields)
    keyword = _fitting_keyword(movie, profile, ())
    if keyword:
        return f"{fields['Desc']} that fits your taste for {keyword}."
    return _pick(_COLD if not liked else _NO_OVERLAP, movie_id).format(**fields)


def _extra(
    movie: Movie,
    near_likes: list[Movie],
    near_dislike: list[Movie],
    profile: Profile | None,
    breakdown: Mapping[str, Any],
) -> str:
    """An optional clause: a disliked look-alike, else a profile keyword, else 'your closest match'."""
    if near_dislike:
        d = near_dislike[0]
        return f", though it shares {_what_shared(movie, d)} with {d.label}, which you disliked"
    keyword = _fitting_keyword(movie, profile, near_likes)
    if keyword:
        return f", and it fits your taste for {keyword}"
    if breakdown.get("pos_rank") == 1:
        return " — the closest match to your likes in this list"
    return ""


def _fitting_keyword(movie: Movie, profile: Profile | None, cited: Sequence[Movie]) -> str:
    """A liked-side profile keyword this movie fits, backed by a movie not already cited."""
    if profile is None:
        return ""
    cited_ids = {m.item_id for m in cited} | {movie.item_id}
    for keyword in profile.matching(movie, "likes"):
        if keyword.kind == "decade" and set(keyword.item_ids) - cited_ids:
            return keyword.text
        if keyword.kind != "decade" and not cited:
            return keyword.text
    return ""


def _pick(templates: Sequence[str], item_id: int) -> str:
    return templates[item_id % len(templates)]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def movement(prev_rank: int | None, new_rank: int | None) -> str:
    """'↑3', '↓2', 'new' (not shown before) or '' (unchanged, or not shown now)."""
    if new_rank is None:
        return ""
    if prev_rank is None:
        return "new"
    if prev_rank == new_rank:
        return ""
    return f"↑{prev_rank - new_rank}" if new_rank < prev_rank else f"↓{new_rank - prev_rank}"


def movement_reason(
    movie_id: int,
    prev_rank: int | None,
    new_rank: int | None,
    likes: Sequence[int],
    dislikes: Sequence[int],
    catalog: Catalog,
) -> str:
    """'moved up: close to what you liked (Alien)' / 'moved down: resembles The Shining, which you
    disliked'; the newest like or dislike that shares something is taken as the cause. '' if no move."""
    badge = movement(prev_rank, new_rank)
    if not badge or movie_id not in catalog:
        return ""
    movie = catalog[movie_id]
    liked = _newest_sharing(movie, likes, catalog)
    disliked = _newest_sharing(movie, dislikes, catalog)
    if badge == "new":
        return f"new: close to what you liked ({liked.title})" if liked else "new pick"
    if badge.startswith("↑"):
        return (
            f"moved up: close to what you liked ({liked.title})" if liked else "moved up: other picks dropped"
        )
    if disliked:
        return f"moved down: resembles {disliked.title}, which you disliked"
    return "moved down: other picks fit your likes better"


def _newest_sharing(movie: Movie, history: Sequence[int], catalog: Catalog) -> Movie | None:
    for item_id in history:
        if item_id in catalog and item_id != movie.item_id:
            other = catalog[item_id]
            if shared_genres(movie, other) or series_key(other.title) == series_key(movie.title):
                return other
    return None
