"""What the assistant says back: short, plain replies for each kind of Turn. Pure functions.

The app passes in what happened (the list now on screen, its explanations, the profile); nothing here
ranks or stores. Text the person typed is only echoed through ``quote`` (plain characters, at most
``MAX_ECHO`` long), so a reply never carries their markup back into the page.
Not for: parsing (turn.py) or per-card sentences (explain.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dialogue.profile import Profile, genre_name, genre_phrase
from dialogue.titles import Resolution
from dialogue.turn import MAX_CHARS, Constraints, Turn
from recsys.catalog import Movie

MAX_ECHO = 60
_UNSAFE = re.compile(r"[^\w\s.,:;!?&'()-]")


@dataclass(frozen=True)
class ReplyContext:
    """What the app knows after handling the turn: the list now shown (#1 first) and its explanations."""

    shown: tuple[Movie, ...] = ()
    explanations: tuple[str, ...] = ()
    profile: Profile | None = None


def quote(text: str) -> str:
    """User text made safe to echo: plain characters only, at most ``MAX_ECHO`` long."""
    text = " ".join(_UNSAFE.sub(" ", text).split())
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 1].rstrip() + "…"


def _or_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _and_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def clarify(resolutions: Sequence[Resolution]) -> str:
    """'Did you mean Alien (1979) or Aliens (1986)?' / "I couldn't find 'Xyz' in the catalog — ..." """
    lines = []
    for r in resolutions:
        if r.status == "ambiguous":
            lines.append(f"Did you mean {_or_list([m.label for m in r.movies])}?")
        elif r.status == "unknown" and quote(r.query):
            lines.append(f"I couldn't find '{quote(r.query)}' in the catalog — try the search box.")
    return " ".join(dict.fromkeys(lines))


def truncation_note() -> str:
    return f"(Your message was long, so I only read the first {MAX_CHARS:,} characters.)"


def empty_reply() -> str:
    return "Tell me what you're in the mood for — e.g. 'a funny space movie' or 'loved Heat'."


def help_reply() -> str:
    return (
        "Ask for anything ('something like Alien but funnier'), steer the list ('newer', 'no horror', "
        "'from the 80s', 'more like #3'), tell me what you thought ('loved Heat', 'not #4') or ask 'why #2?'. "
        "👍 and 👎 on the cards work too."
    )


def smalltalk_reply(topic: str) -> str:
    return {
        "greeting": "Hi! Tell me what you're in the mood for — e.g. 'something like Alien but funnier'.",
        "thanks": "You're welcome — 👍 or 👎 more cards any time and I'll keep adjusting.",
        "bye": "Enjoy the movie! 🍿",
    }.get(topic, "Okay! Tell me what to change — e.g. 'newer', 'no horror' or 'more like #3'.")


def _genres_phrase(genres: Sequence[str]) -> str:
    return genre_phrase(sorted(genres)).removesuffix(" film")


def _years_phrase(c: Constraints) -> str:
    if c.year_min is not None and c.year_max is not None:
        if c.year_min % 10 == 0 and c.year_max == c.year_min + 9:
            return f"from the {c.year_min}s"
        return f"from {c.year_min}" if c.year_min == c.year_max else f"from {c.year_min}–{c.year_max}"
    if c.year_min is not None:
        return f"from {c.year_min} on"
    return f"up to {c.year_max}" if c.year_max is not None else ""


def request_reply(turn: Turn, n_results: int) -> str:
    """'Here are some comedy picks like Alien (1979). 👍 or 👎 any of them and I'll adjust.'"""
    if n_results == 0:
        return "I couldn't find anything that fits all of that — try loosening it (e.g. 'any year')."
    c = turn.constraints
    what = _genres_phrase(tuple(c.include_genres)) + " picks" if c.include_genres else "picks"
    parts = [f"Here are some {what}"]
    seeds = [r.movies[0].label for r in turn.seeds if r.status == "found"]
    if seeds:
        parts.append(f"like {_and_list(seeds[:3])}")
    if _years_phrase(c):
        parts.append(_years_phrase(c))
    if c.exclude_genres:
        parts.append("with no " + _or_list(sorted(genre_name(g) for g in c.exclude_genres)))
    return " ".join(parts) + ". 👍 or 👎 any of them and I'll adjust."


def critique_reply(turn: Turn, n_results: int) -> str:
    """'Okay — no horror, newer ones. Here's the updated list.'"""
    c = turn.constraints
    changes = []
    if c.exclude_genres:
        changes.append("no " + _or_list(sorted(genre_name(g) for g in c.exclude_genres)))
    if c.include_genres:
        changes.append("more " + _or_list(sorted(genre_name(g) for g in c.include_genres)))
    if _years_phrase(c):
        changes.append(_years_phrase(c))
    if turn.relative_year:
        changes.append(f"{turn.relative_year} ones")
    changes += [f"more like #{n}" for n in turn.more_like]
    said = ", ".join(changes) or "got it"
    if n_results == 0:
        return f"Okay — {said}. Nothing in the catalog fits all of that; try loosening it."
    return f"Okay — {said}. Here's the updated list."


def feedback_reply(liked: Sequence[str], disliked: Sequence[str]) -> str:
    """'Noted: 👍 Heat (1995). I've re-ranked the list.' (labels of what was actually recorded)."""
    if not liked and not disliked:
        return "Which one? Use 👍/👎 on a card, or say e.g. 'loved Heat' or 'not #4'."
    marks = [f"👍 {label}" for label in liked] + [f"👎 {label}" for label in disliked]
    return f"Noted: {', '.join(marks)}. I've re-ranked the list."


def missing_card(n: int, n_shown: int) -> str:
    if n_shown == 0:
        return "There's no list yet — ask me for something first."
    return f"There's no #{n} on the list — pick 1–{n_shown}."


def why_reply(turn: Turn, ctx: ReplyContext) -> str:
    """'#2 Blade Runner (1982): <its explanation>' for each card or listed title asked about."""
    lines = []
    for n in turn.about_cards:
        if 1 <= n <= len(ctx.shown) and n <= len(ctx.explanations):
            lines.append(f"#{n} {ctx.shown[n - 1].label}: {ctx.explanations[n - 1]}")
        else:
            lines.append(missing_card(n, len(ctx.shown)))
    position = {m.item_id: k for k, m in enumerate(ctx.shown)}
    for r in turn.about:
        if r.status != "found":
            continue
        k = position.get(r.movies[0].item_id)
        if k is None or k >= len(ctx.explanations):
            lines.append(f"{r.movies[0].label} isn't on the current list.")
        else:
            lines.append(f"#{k + 1} {r.movies[0].label}: {ctx.explanations[k]}")
    return " ".join(lines) or "Ask about a card, e.g. 'why #2?'."


def profile_reply(profile: Profile | None) -> str:
    if profile is None or profile.is_empty:
        return "I don't know your taste yet — 👍 or 👎 a few movies and I'll sum it up."
    return profile.render()


def reply(turn: Turn, ctx: ReplyContext) -> str:
    """The whole answer to one message: ask-backs first, then the intent's reply, then a truncation note."""
    parts = [clarify(turn.unresolved), _main(turn, ctx)]
    if turn.truncated:
        parts.append(truncation_note())
    return " ".join(p for p in parts if p)


def _main(turn: Turn, ctx: ReplyContext) -> str:
    if turn.intent == "empty":
        return empty_reply()
    if turn.intent == "smalltalk":
        return smalltalk_reply(turn.topic)
    if turn.intent == "question":
        if turn.topic == "profile":
            return profile_reply(ctx.profile)
        return help_reply() if turn.topic == "help" else why_reply(turn, ctx)
    if turn.intent == "feedback":
        return _feedback(turn, ctx)
    if turn.intent == "critique":
        return critique_reply(turn, len(ctx.shown))
    return request_reply(turn, len(ctx.shown))


def _feedback(turn: Turn, ctx: ReplyContext) -> str:
    def labels(resolutions: Sequence[Resolution], cards: Sequence[int]) -> list[str]:
        found = [r.movies[0].label for r in resolutions if r.status == "found"]
        return found + [ctx.shown[n - 1].label for n in cards if 1 <= n <= len(ctx.shown)]

    missing = [
        missing_card(n, len(ctx.shown)) for n in turn.liked_cards + turn.disliked_cards if n > len(ctx.shown)
    ]
    liked, disliked = labels(turn.liked, turn.liked_cards), labels(turn.disliked, turn.disliked_cards)
    if not liked and not disliked and (missing or turn.unresolved):
        return " ".join(dict.fromkeys(missing))
    return " ".join([feedback_reply(liked, disliked), *dict.fromkeys(missing)])
