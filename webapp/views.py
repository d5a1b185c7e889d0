"""HTML for the page, as pure functions of plain data: movie cards, the "why" bars, profile, notices, chat.

Every piece of text that reaches the page goes through ``html.escape`` here, whether a person typed it or
it came from the catalog ('Dumb & Dumber'); nothing a person types is ever rendered as markup.
Not for: deciding what to show (handlers.py) or gradio components (ui.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from dialogue.profile import Keyword, Profile

Notice = tuple[str, str]  # (level: "info" | "warn" | "busy", text)


@dataclass(frozen=True)
class Card:
    """One shown movie and everything its card says."""

    rank: int
    item_id: int
    title: str
    year: int | None
    genres: tuple[str, ...]
    explanation: str
    badge: str  # "↑3", "↓2", "new" or ""
    reason: str  # why it moved, "" when it did not
    alpha: float
    score: float
    base_rank: float | None
    pos_rank: float | None = None
    neg_rank: float | None = None
    rating: float | None = None  # the catalog's mean rating (training data), what the LLM prompts show


@dataclass(frozen=True)
class Steering:
    """What the chat asked for, shown above the profile: the request and its filters, as plain text."""

    query: str = ""
    filters: str = ""
    seeds: tuple[str, ...] = ()


def contributions(card: Card) -> tuple[float, float | None, float | None]:
    """The fusion terms behind a card's score: α/R_base, (1-α)/R_pos, -(1-α)/R_neg (None when not run)."""
    base = card.alpha / card.base_rank if card.base_rank else 0.0
    pos = (1 - card.alpha) / card.pos_rank if card.pos_rank else None
    neg = -(1 - card.alpha) / card.neg_rank if card.neg_rank else None
    return base, pos, neg


def _rank_text(rank: float | None) -> str:
    if rank is None:
        return "–"
    return f"#{rank:g}"


def _bar(label: str, rank: float | None, value: float | None, scale: float, kind: str) -> str:
    if value is None:
        return (
            f'<div class="why-row why-off"><span class="why-label">{escape(label)}</span>'
            '<span class="why-track"></span><span class="why-value">not used</span></div>'
        )
    width = min(100.0, 100.0 * abs(value) / scale) if scale > 0 else 0.0
    return (
        f'<div class="why-row"><span class="why-label">{escape(label)} {escape(_rank_text(rank))}</span>'
        f'<span class="why-track"><span class="why-bar why-{kind}" style="width:{width:.1f}%"></span></span>'
        f'<span class="why-value">{value:+.3f}</span></div>'
    )


def why_chart(card: Card) -> str:
    """Three bars (retriever, likes model, dislikes model) and the fused score, as HTML/CSS."""
    base, pos, neg = contributions(card)
    scale = max(card.alpha, 1 - card.alpha, 1e-9)
    rows = [
        _bar("Retriever", card.base_rank, base, scale, "base"),
        _bar("Your likes", card.pos_rank, pos, scale, "pos"),
        _bar("Your dislikes", card.neg_rank, neg, scale, "neg"),
    ]
    formula = f"score = {card.score:.3f} (α = {card.alpha:.2f}: α/R_base + (1−α)(1/R_pos − 1/R_neg))"
    return (
        '<details class="why"><summary>Why this rank?</summary>'
        + "".join(rows)
        + f'<div class="why-formula">{escape(formula)}</div></details>'
    )


def _badge(card: Card) -> str:
    if not card.badge:
        return ""
    kind = "new" if card.badge == "new" else ("up" if card.badge.startswith("↑") else "down")
    return f'<span class="mc-move mc-{kind}" title="{escape(card.reason)}">{escape(card.badge)}</span>'


def card_html(card: Card) -> str:
    """A movie card's body (the buttons are gradio components beside it)."""
    year = f'<span class="mc-year">({card.year})</span>' if card.year else ""
    genres = " · ".join(escape(g) for g in card.genres if not g.startswith("("))
    if card.rating is not None:
        genres += f' <span class="mc-rating" title="mean MovieLens rating">★ {card.rating:.1f}</span>'
    moved = f'<p class="mc-moved">{escape(card.reason)}</p>' if card.reason else ""
    return (
        f'<div class="mc" data-item="{card.item_id}" data-rank="{card.rank}">'
        f'<div class="mc-head"><span class="mc-rank">#{card.rank}</span>'
        f'<span class="mc-title">{escape(card.title)}</span>{year}{_badge(card)}</div>'
        f'<div class="mc-genres">{genres}</div>'
        f'<p class="mc-explain">{escape(card.explanation)}</p>{moved}{why_chart(card)}</div>'
    )


def _keyword_html(keyword: Keyword) -> str:
    titles = ", ".join(escape(t) for t in keyword.titles[:4])
    more = len(keyword.titles) - 4
    extra = f" and {more} more" if more > 0 else ""
    return f'<li><b>{escape(keyword.text)}</b> — <span class="pf-movies">{titles}{extra}</span></li>'


def _side_html(title: str, keywords: Sequence[Keyword], empty: str, kind: str) -> str:
    body = "".join(_keyword_html(k) for k in keywords) or f'<li class="pf-empty">{escape(empty)}</li>'
    return f'<div class="pf-side pf-{kind}"><h4>{escape(title)}</h4><ul>{body}</ul></div>'


def steering_html(steering: Steering) -> str:
    parts = []
    if steering.query:
        parts.append(f"Request: “{escape(steering.query)}”")
    if steering.seeds:
        parts.append("like " + ", ".join(escape(s) for s in steering.seeds))
    if steering.filters:
        parts.append(f"Filters: {escape(steering.filters)}")
    return f'<p class="pf-steer">{" · ".join(parts)}</p>' if parts else ""


def profile_html(profile: Profile, n_likes: int, n_dislikes: int, steering: Steering | None = None) -> str:
    """The plain-language profile: likes side and dislikes side, each keyword with its movies."""
    summary = escape(profile.render()) if not profile.is_empty else "Rate a few movies and I'll sum up your taste."
    return (
        '<div class="pf">'
        f'<p class="pf-summary">{summary}</p>'
        '<div class="pf-sides">'
        + _side_html("You like", profile.likes, "No likes yet — press 👍 on a movie.", "likes")
        + _side_html("You avoid", profile.dislikes, "No dislikes yet — press 👎 on a movie.", "dislikes")
        + "</div>"
        f'<p class="pf-counts">{n_likes} 👍 · {n_dislikes} 👎</p>'
        + steering_html(steering or Steering())
        + "</div>"
    )


def notices_html(notices: Iterable[Notice]) -> str:
    items = [f'<div class="notice notice-{escape(level)}">{escape(text)}</div>' for level, text in notices if text]
    return '<div class="notices">' + "".join(items) + "</div>"


def chat_messages(rows: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """(role, text) -> gradio "messages" with the text escaped (the chatbot renders markup)."""
    return [{"role": role, "content": escape(text)} for role, text in rows]
