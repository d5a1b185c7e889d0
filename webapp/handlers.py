"""One plain function per UI event: (services, settings, per-tab state, inputs) -> View(s).

A click is committed to the database FIRST, in its own transaction, before any ranking runs; then
``flow.relist`` re-ranks (quick list, then fused list). Clicks name a rank in the impression the tab
shows, so a click on a list that has since changed still acts on the movie the person saw. Repeats are
no-ops: a 👍 on a movie already liked records nothing, and every click carries a client event id built
from (person, list, slot, kind), so a double click stores one event even if both arrive at once.
Not for: gradio (ui.py), HTML (views.py), ranking internals (flow.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from dialogue.reply import ReplyContext, reply
from dialogue.turn import Turn, parse, relative_constraint
from recsys.catalog import Movie
from settings import Settings
from storage.repository import (
    FeedbackKind,
    Preferences,
    add_message,
    create_user,
    current_preferences,
    get_user_by_public_id,
    last_feedback,
    latest_impression,
    latest_session,
    record_feedback,
    start_session,
)
from webapp.flow import (
    Context,
    Request,
    UiState,
    View,
    chat_history,
    current_view,
    load_context,
    relist,
    shown_items,
)
from webapp.services import Services

MAX_STORED_CHARS = 8000  # of a chat message; parsing reads at most dialogue.turn.MAX_CHARS
_DONE = {"like": "liked", "dislike": "disliked", "undo": "undone"}
_MARK = {"like": "👍", "dislike": "👎"}


@dataclass(frozen=True)
class Outcome:
    """What a feedback action did: whether anything changed (then re-rank) and what to tell the person."""

    changed: bool
    message: str


# ------------------------------------------------------------------------------------------ session


def _new_user(s: Session) -> UiState:
    user = create_user(s)
    chat = start_session(s, user_id=user.id)
    return UiState(user.public_id, user.id, chat.id, None)


def _returning(s: Session, public_id: str) -> UiState | None:
    user = get_user_by_public_id(s, public_id=public_id) if public_id else None
    if user is None:
        return None
    chat = latest_session(s, user_id=user.id) or start_session(s, user_id=user.id)
    shown = latest_impression(s, user_id=user.id)
    return UiState(user.public_id, user.id, chat.id, shown.id if shown else None)


def start(services: Services, settings: Settings, public_id: str | None) -> View:
    """Page load: the returning person (public id from the browser) gets their list, profile and chat
    back; anyone else becomes a new user with a cold-start list."""
    with services.sessions.begin() as s:
        state = _returning(s, public_id or "") or _new_user(s)
        if state.impression_id is not None:
            return replace(current_view(s, services, settings, state), chat=chat_history(s, state))
    views = list(relist(services, settings, state, settings.alpha))
    return replace(views[-1], chat=())


def ensure_state(services: Services, state: UiState | None) -> UiState:
    """API clients may skip the page-load event: give them a user and a chat session on first use."""
    if state is not None and state.user_id:
        return state
    with services.sessions.begin() as s:
        return _new_user(s)


# ------------------------------------------------------------------------------------------ feedback


def client_event_id(state: UiState, *parts: object) -> str:
    """Same person + same list + same slot/target + same kind -> same id: the database stores it once."""
    raw = "|".join(str(p) for p in (state.public_id, state.impression_id, *parts))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def _label(services: Services, item_id: int) -> str:
    return services.catalog[item_id].label if item_id in services.catalog else f"movie {item_id}"


def rate(
    s: Session, services: Services, state: UiState, item_id: int, kind: FeedbackKind, event_id: str,
    prefs: Preferences | None = None,
) -> Outcome:
    """Record a like or dislike unless it is already in effect."""
    prefs = prefs or current_preferences(s, user_id=state.user_id)
    label = _label(services, item_id)
    if item_id in (prefs.likes if kind == "like" else prefs.dislikes):
        return Outcome(False, f"{label} is already {_DONE[kind]}.")
    event = record_feedback(
        s, user_id=state.user_id, item_id=item_id, kind=kind, session_id=state.session_id,
        impression_id=state.impression_id, client_event_id=event_id,
    )
    if (event.item_id, event.kind) != (item_id, kind):
        return Outcome(False, "That click was already saved.")
    hint = " It won't come back." if kind == "dislike" else ""
    return Outcome(True, f"{_MARK[kind]} {label} saved.{hint} ↶ on any card undoes it.")


def undo(s: Session, services: Services, state: UiState, item_id: int | None, event_id: str) -> Outcome:
    """Undo ``item_id``'s rating if it has one, else the newest rating still in effect."""
    prefs = current_preferences(s, user_id=state.user_id)
    target = item_id if item_id in (*prefs.likes, *prefs.dislikes) else None
    if target is None:
        last = last_feedback(s, user_id=state.user_id)
        if last is None:
            return Outcome(False, "Nothing to undo.")
        target = last.item_id
    was = "👍" if target in prefs.likes else "👎"
    event = record_feedback(
        s, user_id=state.user_id, item_id=target, kind="undo", session_id=state.session_id,
        impression_id=state.impression_id, client_event_id=event_id,
    )
    if event.item_id != target:
        return Outcome(False, "That undo was already saved.")
    return Outcome(True, f"↶ Removed your {was} on {_label(services, target)}.")


def card_feedback(s: Session, services: Services, state: UiState, rank: int, kind: FeedbackKind) -> Outcome:
    """A click on the card at ``rank`` of the list the tab shows."""
    item = next((it for it in shown_items(s, state) if it.rank == rank), None)
    if item is None:
        return Outcome(False, "That card is no longer on the list.")
    event_id = client_event_id(state, "card", rank, kind)
    if kind == "undo":
        return undo(s, services, state, item.item_id, event_id)
    return rate(s, services, state, item.item_id, kind, event_id)


def _after(services: Services, settings: Settings, state: UiState, outcome: Outcome, alpha: float) -> Iterator[View]:
    """Re-rank after a change; otherwise re-show the current list with the message."""
    notice = [("info", outcome.message)]
    if outcome.changed:
        yield from relist(services, settings, state, alpha, notices=notice)
        return
    with services.sessions.begin() as s:
        view = current_view(s, services, settings, state, notice)
    yield view


def click(
    services: Services, settings: Settings, state: UiState | None, rank: int, kind: FeedbackKind, alpha: float
) -> Iterator[View]:
    """👍 / 👎 / ↶ on card ``rank`` (1-based). The click is committed before anything is ranked."""
    state = ensure_state(services, state)
    with services.sessions.begin() as s:
        outcome = card_feedback(s, services, state, int(rank), kind)
    yield from _after(services, settings, state, outcome, alpha)


def rate_title(
    services: Services, settings: Settings, state: UiState | None, item_id: int | None, kind: FeedbackKind,
    alpha: float,
) -> Iterator[View]:
    """👍 / 👎 on a movie found with the title search (not on the list)."""
    state = ensure_state(services, state)
    if item_id is None or int(item_id) not in services.catalog:
        yield from _after(services, settings, state, Outcome(False, "Pick a movie from the search results first."), alpha)
        return
    with services.sessions.begin() as s:
        outcome = rate(s, services, state, int(item_id), kind, client_event_id(state, "title", item_id, kind))
    yield from _after(services, settings, state, outcome, alpha)


def quick_start(
    services: Services, settings: Settings, state: UiState | None, loved: Sequence[int], hated: Sequence[int],
    alpha: float,
) -> Iterator[View]:
    """Cold start: several likes and dislikes at once, then one re-rank."""
    state = ensure_state(services, state)
    picks: list[tuple[int, FeedbackKind]] = [(int(i), "like") for i in loved or ()]
    picks += [(int(i), "dislike") for i in hated or ()]
    with services.sessions.begin() as s:
        outcomes = [
            rate(s, services, state, i, kind, client_event_id(state, "quick", i, kind))
            for i, kind in picks if i in services.catalog
        ]
    changed = [o for o in outcomes if o.changed]
    message = f"Saved {len(changed)} rating(s)." if changed else "Pick a few movies you love or hate first."
    yield from _after(services, settings, state, Outcome(bool(changed), message), alpha)


def rerank(services: Services, settings: Settings, state: UiState | None, alpha: float) -> Iterator[View]:
    """The α slider moved: the same likes, dislikes and request, fused with the new weight."""
    state = ensure_state(services, state)
    yield from relist(services, settings, state, alpha, notices=[("info", f"α = {alpha:.2f}")])


def search(services: Services, text: str, k: int = 8) -> list[tuple[str, int]]:
    """Title search box: (label, item id) of the best matches."""
    return [(m.label, m.item_id) for m in services.resolver.search(text or "", k)]


# ------------------------------------------------------------------------------------------ chat


@dataclass(frozen=True)
class TurnEffect:
    rerank: bool
    request: Request
    notices: tuple[tuple[str, str], ...] = ()


def _card_ids(shown: Sequence[Movie], numbers: Sequence[int]) -> list[int]:
    return [shown[n - 1].item_id for n in numbers if 1 <= n <= len(shown)]


def _record_turn_feedback(
    s: Session, services: Services, state: UiState, turn: Turn, shown: Sequence[Movie], message_id: int
) -> bool:
    """'loved Heat', 'not #4': record each named movie; True if anything changed."""
    picks: list[tuple[int, FeedbackKind]] = [(i, "like") for i in (*turn.liked_ids, *_card_ids(shown, turn.liked_cards))]
    picks += [(i, "dislike") for i in (*turn.disliked_ids, *_card_ids(shown, turn.disliked_cards))]
    changed = False
    for item_id, kind in dict.fromkeys(picks):
        event_id = client_event_id(state, "message", message_id, item_id, kind)
        changed |= rate(s, services, state, item_id, kind, event_id).changed
    return changed


def _steer(ctx: Context, turn: Turn, shown: Sequence[Movie]) -> Request:
    """A request starts afresh; critiques and feedback refine the current request."""
    if turn.intent == "request":
        return Request(turn.text, turn.seed_ids, turn.constraints)
    req = ctx.request
    constraints = req.constraints.merge(turn.constraints)
    if turn.relative_year:
        constraints = constraints.merge(relative_constraint(turn.relative_year, [m.year for m in shown]))
    seeds = tuple(dict.fromkeys((*req.seeds, *_card_ids(shown, turn.more_like))))
    return Request(req.query, seeds, constraints)


def apply_turn(
    s: Session, services: Services, state: UiState, turn: Turn, shown: Sequence[Movie], message_id: int
) -> TurnEffect:
    """Record what the message says (feedback) and work out the new request; questions change nothing."""
    ctx = load_context(s, state.user_id)
    if turn.intent in ("question", "smalltalk", "empty"):
        return TurnEffect(False, ctx.request)
    changed = _record_turn_feedback(s, services, state, turn, shown, message_id)
    request = _steer(ctx, turn, shown)
    return TurnEffect(changed or request != ctx.request or turn.intent == "request", request)


def _reply_context(view: View, services: Services) -> ReplyContext:
    shown = tuple(services.catalog[c.item_id] for c in view.cards)
    return ReplyContext(shown, tuple(c.explanation for c in view.cards), view.profile)


def _answer(services: Services, state: UiState, turn: Turn, view: View) -> View:
    """Store the assistant's reply to ``turn`` (given the list now shown) and put the chat in the view."""
    text = reply(turn, _reply_context(view, services))
    with services.sessions.begin() as s:
        add_message(s, session_id=state.session_id, role="assistant", text=text, intent=turn.intent)
        history = chat_history(s, state)
    return replace(view, chat=history)


def send_message(
    services: Services, settings: Settings, state: UiState | None, text: str, alpha: float
) -> Iterator[View]:
    """A chat message: parse it, store it, record any feedback, then answer (re-ranking if it steers)."""
    state = ensure_state(services, state)
    turn = parse(text or "", services.resolver, services.genres)
    with services.sessions.begin() as s:
        message = add_message(
            s, session_id=state.session_id, role="user", text=(text or "")[:MAX_STORED_CHARS], intent=turn.intent
        )
        shown = [services.catalog[it.item_id] for it in shown_items(s, state) if it.item_id in services.catalog]
        effect = apply_turn(s, services, state, turn, shown, message.id)
    if not effect.rerank:
        with services.sessions.begin() as s:
            view = current_view(s, services, settings, state)
        yield _answer(services, state, turn, view)
        return
    history = None
    for view in relist(services, settings, state, alpha, effect.request):
        view = _answer(services, view.state, turn, view) if history is None else replace(view, chat=history)
        history = view.chat
        yield view


def clear_request(services: Services, settings: Settings, state: UiState | None, alpha: float) -> Iterator[View]:
    """Drop the chat's request and filters (likes and dislikes stay)."""
    state = ensure_state(services, state)
    yield from relist(services, settings, state, alpha, Request(), notices=[("info", "Request and filters cleared.")])
