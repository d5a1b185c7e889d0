"""The "My data" tab: a person sees everything stored about them (as JSON, also as a download) and can
delete all of it, after ticking a confirmation box; they then continue under a fresh anonymous identity.

"Them" is this browser's person (the Movies tab) and, if they joined a study in this browser, their
study participant identity too. Both ids are random; no name is ever asked for. The plain functions at
the top (``my_data``, ``forget``) are the handlers; the rest is layout and wiring.
Not for: what is stored (storage/) or the study itself (study/).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from settings import Settings
from storage.repository import delete_user, export_user_data, get_user_by_public_id
from study.flow import JOIN_SCREEN, StudyState
from webapp import handlers
from webapp.flow import UiState, View
from webapp.services import Services
from webapp.study_ui import StudyTab, screen_outputs, screen_updates
from webapp.ui import Page, view_outputs, view_updates

log = logging.getLogger(__name__)

NEED_CONFIRMATION = "Tick the box first: deleting cannot be undone."
ABOUT = (
    "Everything this app stores about you: your anonymous id, the lists you were shown, your 👍/👎 clicks, "
    "what you typed in the chat, your taste profile and, if you took part in a study, your answers. "
    "No name or email is stored."
)


# ------------------------------------------------------------------------------------------ handlers


def user_ids(services: Services, state: UiState | None, study_state: StudyState | None) -> list[int]:
    """This browser tab's identities: the person and, if any, the study participant."""
    ids = [state.user_id] if state is not None and state.user_id else []
    if study_state is not None and study_state.participant:
        with services.sessions() as s:
            user = get_user_by_public_id(s, public_id=study_state.participant)
            if user is not None and user.kind == "participant":
                ids.append(user.id)
    return ids


def my_data(services: Services, state: UiState | None, study_state: StudyState | None) -> dict[str, Any]:
    """Everything stored about this tab's identities, JSON-serialisable."""
    people = []
    with services.sessions() as s:
        for user_id in user_ids(services, state, study_state):
            try:
                people.append(export_user_data(s, user_id=user_id))
            except LookupError:  # deleted in another tab meanwhile
                continue
    return {"about": ABOUT, "identities": people}


def write_json(data: dict[str, Any], folder: Path | None = None) -> Path:
    folder = folder or Path(tempfile.mkdtemp(prefix="my-data-"))
    path = folder / "my-movie-data.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Forgotten:
    message: str
    view: View | None  # the fresh identity's page; None when nothing was deleted


def forget(
    services: Services, settings: Settings, state: UiState | None, study_state: StudyState | None, confirmed: bool
) -> Forgotten:
    """Delete this tab's identities and everything of theirs; start a fresh anonymous person."""
    if not confirmed:
        return Forgotten(NEED_CONFIRMATION, None)
    ids = user_ids(services, state, study_state)
    with services.sessions.begin() as s:
        deleted = sum(delete_user(s, user_id=user_id) for user_id in ids)
    log.info("deleted %d identit%s on request", deleted, "y" if deleted == 1 else "ies")
    view = handlers.start(services, settings, None)
    return Forgotten("Everything stored about you was deleted. You now have a new anonymous identity.", view)


# ------------------------------------------------------------------------------------------ layout


@dataclass
class PrivacyTab:
    show: gr.Button
    data: gr.JSON
    download: gr.DownloadButton
    confirm: gr.Checkbox
    delete: gr.Button
    message: gr.HTML


def render_privacy_tab() -> PrivacyTab:
    gr.Markdown(f"### My data\n{ABOUT}")
    show = gr.Button("Show my data", elem_id="my-data-show")
    data = gr.JSON(visible=False, label="Stored about you", elem_id="my-data-json")
    download = gr.DownloadButton("Download as JSON", visible=False, elem_id="my-data-download")
    gr.Markdown("### Delete my data")
    confirm = gr.Checkbox(label="I understand: this deletes my lists, clicks, chat, profile and study answers for good.",
                          value=False, elem_id="my-data-confirm")
    delete = gr.Button("Delete everything about me", variant="stop", elem_id="my-data-delete")
    message = gr.HTML(elem_id="my-data-message")
    return PrivacyTab(show, data, download, confirm, delete, message)


def setup_privacy_events(
    demo: gr.Blocks, services: Services, settings: Settings, page: Page, privacy: PrivacyTab, study: StudyTab
) -> None:
    def on_show(state: UiState, study_state: StudyState) -> tuple[Any, ...]:
        data = my_data(services, state, study_state)
        return gr.update(visible=True, value=data), gr.update(visible=True, value=str(write_json(data)))

    privacy.show.click(on_show, [page.state, study.state], [privacy.data, privacy.download],
                       api_visibility="private")

    def on_delete(state: UiState, study_state: StudyState, confirmed: bool) -> tuple[Any, ...]:
        done = forget(services, settings, state, study_state, confirmed)
        message = f'<div class="notice notice-info">{escape(done.message)}</div>'
        if done.view is None:
            return (message, gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                    *(gr.skip() for _ in view_outputs(page)), *(gr.skip() for _ in screen_outputs(study)))
        hidden = gr.update(visible=False, value=None)
        return (message, hidden, hidden, False, done.view.state.public_id, *view_updates(page, done.view),
                *screen_updates(study, StudyState(), StudyState(), JOIN_SCREEN))

    outputs = [privacy.message, privacy.data, privacy.download, privacy.confirm, page.browser,
               *view_outputs(page), *screen_outputs(study)]
    privacy.delete.click(on_delete, [page.state, study.state, privacy.confirm], outputs, api_visibility="private")
