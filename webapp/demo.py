"""Demo mode for talks: a kiosk page with ready-made personas and a big reset button.

Each persona (assets/personas.json) is a person with a history of 👍 and 👎. Choosing a persona, or
pressing reset, starts it afresh: the previous demo identity of this browser is deleted, a new persona
user gets the persona's clicks (oldest first) in a new session, and the list is ranked from them. The
page is the app's own page with the clutter hidden (no quick start, title search, α slider or model
info; no study or "My data" tabs) and larger cards. Everything comes from shipped files, so it works
offline. Run: ``make demo`` (``RECSYS_MODE=demo .venv/bin/python app.py``).
Not for: ranking or storage logic (webapp/flow.py, storage/).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from recsys.catalog import Catalog
from settings import Settings
from storage.repository import (
    FeedbackKind,
    create_user,
    delete_user,
    get_user_by_public_id,
    latest_session,
    record_feedback,
    start_session,
)
from webapp import handlers
from webapp.flow import UiState, View, relist
from webapp.services import Services
from webapp.ui import (
    RANK_CONCURRENCY,
    RANK_GROUP,
    Page,
    render_page,
    setup_events,
    view_outputs,
    view_updates,
)

DEMO_MODE = "demo"


class PersonaFileError(ValueError):
    """The personas file cannot be used; the message names the file and the problem."""


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    name: str = Field(min_length=1, max_length=80)
    emoji: str = ""
    description: str = ""
    likes: list[int] = Field(min_length=1)
    dislikes: list[int] = Field(default_factory=list)


class PersonaFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    personas: list[Persona] = Field(min_length=1)


def load_personas(path: Path, catalog: Catalog) -> list[Persona]:
    """The personas of ``path``; every movie id must be in the catalog and persona ids unique."""
    try:
        personas = PersonaFile.model_validate(json.loads(Path(path).read_text(encoding="utf-8"))).personas
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise PersonaFileError(f"{path}: {exc}") from exc
    ids = [p.id for p in personas]
    if len(set(ids)) != len(ids):
        raise PersonaFileError(f"{path}: persona ids must be unique, got {ids}")
    for persona in personas:
        unknown = [i for i in (*persona.likes, *persona.dislikes) if i not in catalog]
        if unknown:
            raise PersonaFileError(f"{path}: persona {persona.id!r} names movies not in the catalog: {unknown}")
    return personas


# ------------------------------------------------------------------------------------------ handlers


def _seed(s: Session, persona: Persona) -> UiState:
    user = create_user(s, kind="persona", display_name=persona.name)
    chat = start_session(s, user_id=user.id, mode=DEMO_MODE, condition=persona.id)
    clicks: list[tuple[int, FeedbackKind]] = [(i, "like") for i in persona.likes]
    clicks += [(i, "dislike") for i in persona.dislikes]
    for item_id, kind in clicks:
        record_feedback(s, user_id=user.id, item_id=item_id, kind=kind, session_id=chat.id)
    return UiState(user.public_id, user.id, chat.id, None)


def reset_persona(services: Services, settings: Settings, persona: Persona, previous: str | None) -> Iterator[View]:
    """Start ``persona`` afresh (deleting this browser's previous demo identity); the quick list, then the fused one."""
    with services.sessions.begin() as s:
        old = get_user_by_public_id(s, public_id=previous) if previous else None
        if old is not None and old.kind == "persona":
            delete_user(s, user_id=old.id)
        state = _seed(s, persona)
    for view in relist(services, settings, state, settings.alpha):
        yield replace(view, chat=())


def active_persona(services: Services, public_id: str | None, personas: Sequence[Persona]) -> Persona | None:
    """The persona this browser's demo identity plays, if it is one."""
    with services.sessions() as s:
        user = get_user_by_public_id(s, public_id=public_id) if public_id else None
        chat = latest_session(s, user_id=user.id) if user is not None and user.kind == "persona" else None
        condition = chat.condition if chat is not None else None
    return next((p for p in personas if p.id == condition), None)


def start_demo(
    services: Services, settings: Settings, personas: Sequence[Persona], public_id: str | None
) -> tuple[Persona, Iterator[View]]:
    """Page load: the persona this browser was playing, as it left it; else the first persona, fresh."""
    persona = active_persona(services, public_id, personas)
    if persona is None:
        return personas[0], reset_persona(services, settings, personas[0], public_id)
    return persona, iter([handlers.start(services, settings, public_id)])


# ------------------------------------------------------------------------------------------ layout


def persona_html(persona: Persona) -> str:
    return (
        f'<div class="persona-now"><span class="persona-emoji">{escape(persona.emoji)}</span>'
        f'<div><div class="persona-name">{escape(persona.name)}</div>'
        f'<div class="persona-about">{escape(persona.description)}</div></div></div>'
    )


@dataclass
class Kiosk:
    buttons: list[gr.Button]
    reset: gr.Button
    now: gr.HTML


def render_kiosk(personas: Sequence[Persona]) -> Kiosk:
    with gr.Row(elem_id="personas", equal_height=True):
        buttons = [gr.Button(f"{p.emoji} {p.name}".strip(), elem_id=f"persona-{p.id}", elem_classes="persona-button",
                             size="lg") for p in personas]
        reset = gr.Button("↺ Reset", variant="stop", elem_id="demo-reset", size="lg", scale=0, min_width=160)
    now = gr.HTML(elem_id="persona-now")
    return Kiosk(buttons, reset, now)


def _stream(page: Page, persona: Persona, views: Iterator[View]) -> Iterator[tuple[Any, ...]]:
    for view in views:
        yield (view.state.public_id, persona_html(persona), *view_updates(page, view))


def setup_demo_events(
    demo: gr.Blocks, services: Services, settings: Settings, page: Page, kiosk: Kiosk, personas: Sequence[Persona]
) -> None:
    outputs = [page.browser, kiosk.now, *view_outputs(page)]
    options: dict[str, Any] = {"show_progress": "hidden", "api_visibility": "private", "concurrency_id": RANK_GROUP,
                               "concurrency_limit": RANK_CONCURRENCY}

    def on_load(public_id: str | None) -> Iterator[tuple[Any, ...]]:
        persona, views = start_demo(services, settings, personas, public_id)
        yield from _stream(page, persona, views)

    demo.load(on_load, [page.browser], outputs, **options)

    def choose(persona: Persona) -> Any:
        def on_choose(public_id: str | None) -> Iterator[tuple[Any, ...]]:
            yield from _stream(page, persona, reset_persona(services, settings, persona, public_id))

        return on_choose

    for persona, button in zip(personas, kiosk.buttons, strict=True):
        button.click(choose(persona), [page.browser], outputs, trigger_mode="once", **options)

    def on_reset(public_id: str | None) -> Iterator[tuple[Any, ...]]:
        persona = active_persona(services, public_id, personas) or personas[0]
        yield from _stream(page, persona, reset_persona(services, settings, persona, public_id))

    kiosk.reset.click(on_reset, [page.browser], outputs, trigger_mode="once", **options)


def build_demo_app(services: Services, settings: Settings, secret: str) -> gr.Blocks:
    """The kiosk page: persona buttons and reset above the app's own chat, cards and profile."""
    personas = load_personas(settings.personas_file, services.catalog)
    with gr.Blocks(title="Movie night — live demo") as demo:
        kiosk = render_kiosk(personas)
        page = render_page(services, settings, secret)
        setup_events(demo, services, settings, page, load=False)
        setup_demo_events(demo, services, settings, page, kiosk, personas)
    return demo


KIOSK_CSS = """
#advanced, #quick-start, #find, #clear-request { display: none !important; }
footer { display: none !important; }
#title { font-size: 1.5em; }
.persona-button { font-size: 1.15em !important; min-height: 3.2em; }
#demo-reset { font-size: 1.3em !important; font-weight: 800; }
.persona-now { display: flex; gap: 14px; align-items: center; font-size: 1.15em; margin: 4px 0 8px; }
.persona-emoji { font-size: 2.4em; }
.persona-name { font-weight: 800; }
.persona-about { color: var(--body-text-color-subdued); }
#cards .card-slot { padding: 14px 16px 10px; }
.mc-title { font-size: 1.35em !important; }
.mc-genres, .mc-explain { font-size: 1.05em !important; }
.card-buttons button { font-size: 1.3em !important; min-height: 2.4em; }
"""
