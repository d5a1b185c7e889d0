"""One re-ranking step of the app, end to end: read the person's likes, dislikes and request from the
database, rank, save the shown list as an impression (with every item's breakdown), save the profile,
and describe the result as a ``View`` for the page.

``relist`` yields twice when the preference models will run: the retriever's list at once, then the
fused one. Each database step is its own short transaction, never held open while a model runs.
Not for: interpreting clicks or messages (handlers.py) or HTML (views.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from dialogue.explain import explain, movement, movement_reason
from dialogue.profile import Profile, build_profile
from dialogue.turn import Constraints
from recsys.pipeline import Recommendation
from settings import Settings
from storage.models import ImpressionItem
from storage.repository import (
    ImpressionRow,
    current_preferences,
    get_impression,
    impression_items,
    latest_impression,
    latest_profile,
    list_messages,
    record_impression,
    save_profile,
)
from webapp.services import LOADING, UNAVAILABLE, Services, only_while
from webapp.views import Card, Notice, Steering

BUSY = "Re-ranking with your likes and dislikes…"
EMPTY = "Nothing in the catalog fits all of that — try loosening it (e.g. 'any year', 'any genre')."


@dataclass(frozen=True)
class UiState:
    """What gr.State holds for one browser tab: ids only; everything else lives in the database."""

    public_id: str = ""
    user_id: int = 0
    session_id: int = 0
    impression_id: int | None = None  # the list on screen; clicks name a rank in it


@dataclass(frozen=True)
class Request:
    """What the chat asked for: free text, 'more like' seeds and hard filters. Saved with the profile."""

    query: str = ""
    seeds: tuple[int, ...] = ()
    constraints: Constraints = field(default_factory=Constraints)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "seeds": list(self.seeds), "constraints": self.constraints.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Request:
        data = data or {}
        return cls(
            str(data.get("query") or ""),
            tuple(int(i) for i in data.get("seeds", ())),
            Constraints.from_dict(data.get("constraints") or {}),
        )


@dataclass(frozen=True)
class Context:
    """The inputs of one ranking: likes/dislikes newest first, and the current request."""

    likes: tuple[int, ...] = ()
    dislikes: tuple[int, ...] = ()
    request: Request = field(default_factory=Request)

    @property
    def seeded_likes(self) -> tuple[int, ...]:
        """Likes with the request's 'more like' seeds in front: what the retriever and explanations use."""
        return tuple(dict.fromkeys((*self.request.seeds, *self.likes)))


@dataclass(frozen=True)
class View:
    """Everything one update of the page shows; ``chat`` None means 'leave the chat as it is'."""

    state: UiState
    cards: tuple[Card, ...]
    profile: Profile
    n_likes: int
    n_dislikes: int
    steering: Steering
    notices: tuple[Notice, ...] = ()
    chat: tuple[tuple[str, str], ...] | None = None
    final: bool = True  # False for the quick list a fused one will replace


# ------------------------------------------------------------------------------------------ reading


def load_context(s: Session, user_id: int) -> Context:
    prefs = current_preferences(s, user_id=user_id)
    snapshot = latest_profile(s, user_id=user_id)
    request = Request.from_dict(snapshot.profile.get("request")) if snapshot else Request()
    return Context(prefs.likes, prefs.dislikes, request)


def shown_items(s: Session, state: UiState) -> list[ImpressionItem]:
    """The list this tab shows (the impression in its state), #1 first; [] if none or not this user's."""
    if state.impression_id is None:
        return []
    impression = get_impression(s, impression_id=state.impression_id)
    if impression is None or impression.user_id != state.user_id:
        return []
    return impression_items(s, impression_id=state.impression_id)


def is_latest(s: Session, state: UiState) -> bool:
    """Whether the tab's list is still the person's newest one (no other event has re-ranked since)."""
    latest = latest_impression(s, user_id=state.user_id)
    return latest is None or latest.id == state.impression_id


def chat_history(s: Session, state: UiState) -> tuple[tuple[str, str], ...]:
    return tuple((m.role, m.text) for m in list_messages(s, session_id=state.session_id))


# ------------------------------------------------------------------------------------------ ranking


def allowed_by(services: Services, constraints: Constraints) -> Callable[[int], bool] | None:
    """The hard filter for ``recommend(allowed=...)``; None when nothing is filtered."""
    if constraints.is_empty:
        return None
    catalog = services.catalog
    return lambda item_id: constraints.allows(catalog[item_id])


def recommend(services: Services, ctx: Context, alpha: float, use_llm: bool) -> Recommendation:
    req = ctx.request
    return services.recommender.recommend(
        ctx.seeded_likes,
        ctx.dislikes,
        query=req.query or None,
        alpha=alpha,
        allowed=allowed_by(services, req.constraints),
        use_llm=use_llm,
    )


def wants_llm(services: Services, ctx: Context) -> bool:
    """Whether a fused list will follow the quick one (the pipeline runs the ranker only with history)."""
    return services.has_ranker and bool(ctx.seeded_likes or ctx.dislikes)


# ------------------------------------------------------------------------------------------ saving


def explanations(services: Services, ctx: Context, rec: Recommendation, profile: Profile) -> list[str]:
    likes, dislikes = ctx.seeded_likes, ctx.dislikes
    return [
        explain(it.item_id, likes, dislikes, services.catalog, profile,
                {"base_rank": it.base_rank, "pos_rank": it.pos_rank, "neg_rank": it.neg_rank})
        for it in rec.items
    ]


def save_list(
    s: Session, services: Services, state: UiState, ctx: Context, rec: Recommendation, texts: Sequence[str],
    stage: str, degraded: bool,
) -> int:
    """Record the shown list with ranks, breakdown, α, versions and the degraded flag; its id."""
    rows = [
        ImpressionRow(rank=it.rank, item_id=it.item_id, score=it.score, base_rank=it.base_rank,
                      pos_rank=it.pos_rank, neg_rank=it.neg_rank, explanation=text)
        for it, text in zip(rec.items, texts, strict=True)
    ]
    adapters = {"stage": stage, **(services.adapters if rec.llm_used else {})}
    impression = record_impression(
        s, session_id=state.session_id, user_id=state.user_id, items=rows, alpha=rec.alpha,
        model_version=services.model_version, adapters=adapters, query=ctx.request.query or None,
        degraded=degraded,
    )
    return impression.id


def save_profile_if_changed(s: Session, user_id: int, profile: Profile, request: Request) -> None:
    data = profile.to_dict() | {"text": profile.render(), "request": request.to_dict()}
    latest = latest_profile(s, user_id=user_id)
    if latest is None or latest.profile != data:
        save_profile(s, user_id=user_id, profile=data)


# ------------------------------------------------------------------------------------------ views


def steering_of(services: Services, request: Request) -> Steering:
    seeds = tuple(services.catalog[i].label for i in request.seeds if i in services.catalog)
    return Steering(request.query, request.constraints.describe(), seeds)


def make_card(services: Services, ctx: Context, item: Any, text: str, alpha: float,
              prev_rank: int | None, moved: bool) -> Card:
    """A card from a ScoredItem or a stored ImpressionItem; ``moved`` False shows no ↑/↓ badge."""
    movie = services.catalog[item.item_id]
    badge = movement(prev_rank, item.rank) if moved else ""
    reason = (
        movement_reason(item.item_id, prev_rank, item.rank, ctx.likes, ctx.dislikes, services.catalog)
        if badge else ""
    )
    return Card(item.rank, item.item_id, movie.title, movie.year, movie.genres, text or "", badge, reason,
                alpha, float(item.score), item.base_rank, item.pos_rank, item.neg_rank, movie.rating)


def base_notices(services: Services, settings: Settings) -> list[Notice]:
    if not services.llm_status:
        return []
    quiet = services.llm_status == LOADING or not settings.use_llm
    return [("info" if quiet else "warn", services.llm_status)]


def make_view(services: Services, settings: Settings, state: UiState, ctx: Context, cards: Sequence[Card],
              notices: Sequence[Notice] = (), final: bool = True) -> View:
    profile = build_profile(ctx.likes, ctx.dislikes, services.catalog)
    extra = [("info", EMPTY)] if not cards else []
    return View(state, tuple(cards), profile, len(ctx.likes), len(ctx.dislikes),
                steering_of(services, ctx.request), (*base_notices(services, settings), *notices, *extra),
                final=final)


def current_view(s: Session, services: Services, settings: Settings, state: UiState,
                 notices: Sequence[Notice] = ()) -> View:
    """The list already on screen (or last shown), re-read from the database, without movement badges."""
    items = shown_items(s, state)
    impression = get_impression(s, impression_id=state.impression_id) if items else None
    ctx = load_context(s, state.user_id)
    alpha = impression.alpha if impression else settings.alpha
    cards = [make_card(services, ctx, it, it.explanation or "", alpha, None, False)
             for it in items if it.item_id in services.catalog]
    return make_view(services, settings, state, ctx, cards, notices)


def publish(s: Session, services: Services, settings: Settings, state: UiState, ctx: Context,
            rec: Recommendation, prev: Mapping[int, int], final: bool, notices: Sequence[Notice]) -> View:
    """Save one ranked list and its profile; the View that shows it, with movers vs ``prev``."""
    profile = build_profile(ctx.likes, ctx.dislikes, services.catalog)
    texts = explanations(services, ctx, rec, profile)
    unavailable = settings.use_llm and not services.has_ranker and bool(ctx.seeded_likes or ctx.dislikes)
    degraded = rec.degraded or (final and unavailable)
    stage = "fused" if rec.llm_used or rec.degraded else "retriever"
    impression_id = save_list(s, services, state, ctx, rec, texts, stage, degraded)
    save_profile_if_changed(s, state.user_id, profile, ctx.request)
    state = replace(state, impression_id=impression_id)
    cards = [make_card(services, ctx, it, text, rec.alpha, prev.get(it.item_id), bool(prev))
             for it, text in zip(rec.items, texts, strict=True)]
    status: list[Notice] = list(notices)
    if rec.degraded:
        status.append(("warn", f"{UNAVAILABLE} ({rec.note})" if rec.note else UNAVAILABLE))
    if not final:
        status.append(("busy", BUSY))
    return make_view(services, settings, state, ctx, cards, status, final)


def relist(services: Services, settings: Settings, state: UiState, alpha: float,
           request: Request | None = None, notices: Sequence[Notice] = ()) -> Iterator[View]:
    """Re-rank and show: the retriever's list first, then (when the preference models run) the fused one.

    ``request`` replaces the saved one (a chat message changed it). Movers are marked against the list
    the person saw before this event. A fused list that a newer event has already replaced is dropped.
    """
    with services.sessions.begin() as s:
        ctx = load_context(s, state.user_id)
        prev = {it.item_id: it.rank for it in shown_items(s, state)}
    if request is not None:
        ctx = replace(ctx, request=request)
    fused_next = wants_llm(services, ctx)
    quick = recommend(services, ctx, alpha, use_llm=False)
    with services.sessions.begin() as s:
        view = publish(s, services, settings, state, ctx, quick, prev, not fused_next, notices)
    yield view
    if not fused_next:
        return
    def still_latest() -> bool:
        with services.sessions.begin() as s:
            return is_latest(s, view.state)

    with only_while(still_latest):
        fused = recommend(services, ctx, alpha, use_llm=True)
    with services.sessions.begin() as s:
        if not is_latest(s, view.state):
            return  # a newer click or message has already put up a newer list
        final = publish(s, services, settings, view.state, ctx, fused, prev, True, notices)
    yield final  # outside the transaction: a suspended generator must not hold the write lock
