"""The page: gradio components (``render_page``) and all event wiring in one place (``setup_events``).

Handlers come from handlers.py and return ``View``s; this module only turns a View into component
updates. Every ranking event shares one concurrency group; the preference model itself runs one pass at a
time (services.SerialRanker), so a click is saved and the quick list shown even while another person's
fused list is being computed.
Not for: logic (handlers.py, flow.py) or HTML (views.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import escape
from typing import Any, cast

import gradio as gr

from settings import Settings
from storage.repository import FeedbackKind
from webapp import handlers
from webapp.flow import UiState, View
from webapp.services import Services
from webapp.views import card_html, chat_messages, notices_html, profile_html

RANK_GROUP = "rank"  # concurrency_id of every event that re-ranks
RANK_CONCURRENCY = 8
STORAGE_KEY = "feedback-recsys-user"


@dataclass
class Slot:
    """One fixed card position: its HTML body and its three buttons."""

    box: gr.Column
    body: gr.HTML
    like: gr.Button
    dislike: gr.Button
    undo: gr.Button


@dataclass
class Page:
    state: gr.State
    browser: gr.BrowserState
    notices: gr.HTML
    chatbot: gr.Chatbot
    message: gr.Textbox
    send: gr.Button
    slots: list[Slot]
    profile: gr.HTML
    clear: gr.Button
    alpha: gr.Slider
    search_box: gr.Textbox
    results: gr.Radio
    search_like: gr.Button
    search_dislike: gr.Button
    loved: gr.Dropdown
    hated: gr.Dropdown
    quick_go: gr.Button
    api_rank: gr.Number
    api_kind: gr.Textbox
    api_click: gr.Button


# ------------------------------------------------------------------------------------------ layout


def _render_slot(rank: int) -> Slot:
    with gr.Column(visible=False, elem_classes="card-slot", elem_id=f"card-{rank}", min_width=260) as box:
        body = gr.HTML(elem_classes="card-body")
        with gr.Row(elem_classes="card-buttons"):
            like = gr.Button("👍", size="sm", elem_id=f"like-{rank}", min_width=40)
            dislike = gr.Button("👎", size="sm", elem_id=f"dislike-{rank}", min_width=40)
            undo = gr.Button("↶ undo", size="sm", elem_id=f"undo-{rank}", variant="secondary", min_width=40)
    return Slot(box, body, like, dislike, undo)


def _render_cards(k: int) -> list[Slot]:
    gr.Markdown("### Your list", elem_classes="list-title")
    slots: list[Slot] = []
    for first in range(1, k + 1, 2):
        with gr.Row(equal_height=False):
            slots += [_render_slot(r) for r in range(first, min(first + 2, k + 1))]
    return slots


def _render_chat() -> tuple[gr.Chatbot, gr.Textbox, gr.Button]:
    chatbot = gr.Chatbot(
        label="Chat", height=360, elem_id="chat", render_markdown=False, sanitize_html=True,
        feedback_options=None, placeholder="Ask for anything: 'something like Alien but funnier', 'no horror', 'newer', 'why #2?'",
    )
    with gr.Row():
        message = gr.Textbox(
            show_label=False, placeholder="Type a request, a critique or a title…", elem_id="message", scale=5,
            max_lines=3, max_length=4000,
        )
        send = gr.Button("Send", variant="primary", elem_id="send", scale=1, min_width=80)
    return chatbot, message, send


def _popular_choices(services: Services, n: int = 150) -> list[tuple[str, int]]:
    return [(services.catalog[i].label, i) for i in services.popular[:n]]


def _render_side(services: Services, settings: Settings) -> dict[str, Any]:
    parts: dict[str, Any] = {}
    parts["chatbot"], parts["message"], parts["send"] = _render_chat()
    with gr.Accordion("Quick start: movies you love or hate", open=False, elem_id="quick-start"):
        parts["loved"] = gr.Dropdown(_popular_choices(services), multiselect=True, label="I love", value=[])
        parts["hated"] = gr.Dropdown(_popular_choices(services), multiselect=True, label="I can't stand", value=[])
        parts["quick_go"] = gr.Button("Use these", elem_id="quick-go")
    with gr.Accordion("Find a movie", open=False, elem_id="find"):
        parts["search_box"] = gr.Textbox(show_label=False, placeholder="Search titles…", elem_id="search-box")
        parts["results"] = gr.Radio(choices=[], label="Matches", elem_id="search-results")
        with gr.Row():
            parts["search_like"] = gr.Button("👍 Like it", size="sm", elem_id="search-like")
            parts["search_dislike"] = gr.Button("👎 Not for me", size="sm", elem_id="search-dislike")
    gr.Markdown("### Your taste")
    parts["profile"] = gr.HTML(elem_id="profile")
    parts["clear"] = gr.Button("Clear request & filters", size="sm", elem_id="clear-request")
    with gr.Accordion("Advanced", open=False, elem_id="advanced"):
        parts["alpha"] = gr.Slider(
            0.0, 1.0, value=settings.alpha, step=0.05, label="α — weight of the retriever",
            info="Score = α/R_base + (1−α)(1/R_pos − 1/R_neg). 1 = retriever only; lower = more weight on your likes and dislikes.",
            elem_id="alpha",
        )
        gr.Markdown(lambda: _model_info(services))  # re-read at every page load: models may load late
    return parts


def _model_info(services: Services) -> str:
    adapters = ", ".join(f"{k}: {v}" for k, v in services.adapters.items()) or "none loaded"
    status = escape(services.llm_status or "preference models loaded")
    return f"Retriever: `{services.model_version}`  \nAdapters: `{adapters}`  \nStatus: {status}"


def render_page(services: Services, settings: Settings, browser_secret: str) -> Page:
    state = gr.State(UiState())
    browser = gr.BrowserState("", storage_key=STORAGE_KEY, secret=browser_secret)
    gr.Markdown("## 🎬 Movie night — tell me what you like *and* what you don't", elem_id="title")
    notices = gr.HTML(elem_id="notices")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            side = _render_side(services, settings)
        with gr.Column(scale=3, min_width=420, elem_id="cards"):
            slots = _render_cards(settings.k)
    with gr.Row(visible=False):  # an API-only entry point: click a card by rank (gradio_client, benchmarks)
        api_rank = gr.Number(precision=0, label="rank")
        api_kind = gr.Textbox(label="kind")
        api_click = gr.Button("api click")
    return Page(state=state, browser=browser, notices=notices, slots=slots, api_rank=api_rank,
                api_kind=api_kind, api_click=api_click, **side)


# ------------------------------------------------------------------------------------------ updates


def view_outputs(page: Page) -> list[Any]:
    return [page.state, page.notices, page.profile, page.chatbot,
            *(s.body for s in page.slots), *(s.box for s in page.slots)]


def view_updates(page: Page, view: View) -> tuple[Any, ...]:
    bodies, boxes = [], []
    for n in range(len(page.slots)):
        card = view.cards[n] if n < len(view.cards) else None
        bodies.append(card_html(card) if card else "")
        boxes.append(gr.update(visible=card is not None))
    chat = gr.skip() if view.chat is None else chat_messages(view.chat)
    return (view.state, notices_html(view.notices),
            profile_html(view.profile, view.n_likes, view.n_dislikes, view.steering), chat, *bodies, *boxes)


def _stream(page: Page, views: Iterator[View]) -> Iterator[tuple[Any, ...]]:
    for view in views:
        yield view_updates(page, view)


# ------------------------------------------------------------------------------------------ events


def _rank_event(trigger: Callable[..., Any], fn: Callable[..., Any], inputs: list[Any], outputs: list[Any],
                api_name: str | None = None) -> Any:
    return trigger(
        fn, inputs=inputs, outputs=outputs, api_name=api_name, concurrency_id=RANK_GROUP,
        concurrency_limit=RANK_CONCURRENCY, show_progress="hidden", trigger_mode="once",
        api_visibility="public" if api_name else "private",
    )


def _card_fn(
    services: Services, settings: Settings, page: Page, rank: int, kind: FeedbackKind
) -> Callable[..., Any]:
    def on_card(state: UiState, alpha: float) -> Iterator[tuple[Any, ...]]:
        yield from _stream(page, handlers.click(services, settings, state, rank, kind, alpha))

    return on_card


def _wire_cards(services: Services, settings: Settings, page: Page, outputs: list[Any]) -> None:
    for rank, slot in enumerate(page.slots, start=1):
        buttons: tuple[tuple[FeedbackKind, gr.Button], ...] = (
            ("like", slot.like), ("dislike", slot.dislike), ("undo", slot.undo)
        )
        for kind, button in buttons:
            _rank_event(button.click, _card_fn(services, settings, page, rank, kind), [page.state, page.alpha], outputs)

    def on_api_click(state: UiState, rank: float, kind: str, alpha: float) -> Iterator[tuple[Any, ...]]:
        if kind not in ("like", "dislike", "undo"):
            raise gr.Error("kind must be like, dislike or undo")
        clicked = handlers.click(services, settings, state, int(rank), cast(FeedbackKind, kind), alpha)
        yield from _stream(page, clicked)

    _rank_event(page.api_click.click, on_api_click, [page.state, page.api_rank, page.api_kind, page.alpha],
                outputs, api_name="feedback")


def _wire_chat(services: Services, settings: Settings, page: Page, outputs: list[Any]) -> None:
    def on_send(state: UiState, text: str, alpha: float) -> Iterator[tuple[Any, ...]]:
        for n, updates in enumerate(_stream(page, handlers.send_message(services, settings, state, text, alpha))):
            yield ("" if n == 0 else gr.skip(), *updates)

    inputs = [page.state, page.message, page.alpha]
    _rank_event(page.message.submit, on_send, inputs, [page.message, *outputs], api_name="send")
    _rank_event(page.send.click, on_send, inputs, [page.message, *outputs])


def _wire_search(services: Services, settings: Settings, page: Page, outputs: list[Any]) -> None:
    def on_search(text: str) -> Any:
        return gr.update(choices=handlers.search(services, text), value=None)

    page.search_box.submit(on_search, page.search_box, page.results, api_name="search", show_progress="hidden")
    page.search_box.change(on_search, page.search_box, page.results, api_visibility="private",
                           show_progress="hidden", trigger_mode="always_last")

    def title_fn(kind: FeedbackKind) -> Callable[..., Any]:
        def on_rate(state: UiState, item_id: int | None, alpha: float) -> Iterator[tuple[Any, ...]]:
            yield from _stream(page, handlers.rate_title(services, settings, state, item_id, kind, alpha))

        return on_rate

    inputs = [page.state, page.results, page.alpha]
    _rank_event(page.search_like.click, title_fn("like"), inputs, outputs, api_name="rate_title_like")
    _rank_event(page.search_dislike.click, title_fn("dislike"), inputs, outputs, api_name="rate_title_dislike")


def _wire_controls(services: Services, settings: Settings, page: Page, outputs: list[Any]) -> None:
    def on_quick(state: UiState, loved: list[int], hated: list[int], alpha: float) -> Iterator[tuple[Any, ...]]:
        yield from _stream(page, handlers.quick_start(services, settings, state, loved, hated, alpha))

    _rank_event(page.quick_go.click, on_quick, [page.state, page.loved, page.hated, page.alpha], outputs,
                api_name="quick_start")

    def on_alpha(state: UiState, alpha: float) -> Iterator[tuple[Any, ...]]:
        yield from _stream(page, handlers.rerank(services, settings, state, alpha))

    _rank_event(page.alpha.release, on_alpha, [page.state, page.alpha], outputs, api_name="rerank")

    def on_clear(state: UiState, alpha: float) -> Iterator[tuple[Any, ...]]:
        yield from _stream(page, handlers.clear_request(services, settings, state, alpha))

    _rank_event(page.clear.click, on_clear, [page.state, page.alpha], outputs, api_name="clear_request")


def setup_events(demo: gr.Blocks, services: Services, settings: Settings, page: Page, load: bool = True) -> None:
    """Every event of the page, in one place; ``load=False`` leaves page load to the caller (demo mode)."""
    outputs = view_outputs(page)

    def on_load(public_id: str | None) -> tuple[Any, ...]:
        view = handlers.start(services, settings, public_id)
        return (view.state.public_id, *view_updates(page, view))

    if load:
        demo.load(on_load, [page.browser], [page.browser, *outputs], api_name="start", show_progress="hidden")
    _wire_cards(services, settings, page, outputs)
    _wire_chat(services, settings, page, outputs)
    _wire_search(services, settings, page, outputs)
    _wire_controls(services, settings, page, outputs)
