"""The Study tab: participants join (code or ``?study=<id>&code=<code>`` link), consent, rate lists and
answer questionnaires; researchers (admin secret) see progress, results and download the exports.

Layout and wiring only: every decision is in study/flow.py (participants) and study/report.py
(researchers); this module turns a ``Screen`` into component updates. Fixed slots (cards, questions)
are shown, relabelled and hidden per screen. All text on the page is escaped here.
Not for: study logic, storage or file formats.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from study import access
from study.config import MAX_CARDS, MAX_ITEM_QUESTIONS, MAX_QUESTIONS, Question
from study.flow import (
    JOIN_SCREEN,
    Screen,
    StudyCard,
    StudyEnv,
    StudyState,
    ask_for,
    from_link,
    give_consent,
    open_study,
    submit,
)
from study.report import Report, build_report
from study.results import Progress, Summary

PARTICIPANT_KEY = "feedback-recsys-participant"
STUDY_TAB = "study"


@dataclass
class CardSlot:
    box: gr.Column
    body: gr.HTML
    answers: list[gr.Radio]


@dataclass
class StudyTab:
    state: gr.State
    browser: gr.BrowserState
    header: gr.HTML
    join_box: gr.Column
    code: gr.Textbox
    join: gr.Button
    consent_box: gr.Column
    consent_text: gr.HTML
    agree: gr.Button
    decline: gr.Button
    task_box: gr.Column
    task_text: gr.HTML
    request: gr.Textbox
    ask: gr.Button
    cards: list[CardSlot]
    questions: list[gr.Radio]
    next: gr.Button
    done: gr.HTML
    secret: gr.Textbox
    studies: gr.Dropdown
    open_report: gr.Button
    report: gr.HTML
    plot: gr.Image
    csv: gr.DownloadButton
    jsonl: gr.DownloadButton


# ------------------------------------------------------------------------------------------ HTML


def paragraphs(text: str) -> str:
    """Plain text (a study file's consent or task) as escaped HTML paragraphs."""
    blocks = [b.strip() for b in text.split("\n\n") if b.strip()]
    return "".join(f"<p>{escape(' '.join(b.split()))}</p>" for b in blocks)


def header_html(screen: Screen) -> str:
    error = f'<div class="notice notice-warn study-error">{escape(screen.error)}</div>' if screen.error else ""
    progress = f'<span class="study-progress">{escape(screen.progress)}</span>' if screen.progress else ""
    return f'<div class="study-head"><h3>{escape(screen.title)}</h3>{progress}</div>{error}'


def study_card_html(card: StudyCard) -> str:
    year = f' <span class="mc-year">({card.year})</span>' if card.year else ""
    genres = " · ".join(escape(g) for g in card.genres)
    return (
        f'<div class="mc study-card" data-item="{card.item_id}" data-rank="{card.rank}">'
        f'<div class="mc-head"><span class="mc-rank">{card.rank}.</span>'
        f'<span class="mc-title">{escape(card.title)}</span>{year}</div>'
        f'<div class="mc-genres">{genres}</div></div>'
    )


def done_html(screen: Screen) -> str:
    if screen.kind == "declined":
        return f'<div class="study-done"><p>{escape(screen.text)}</p></div>'
    if screen.kind != "done":
        return ""
    return (
        f'<div class="study-done"><p>{escape(screen.text)}</p>'
        f'<p class="study-code" id="completion-code">{escape(screen.code)}</p></div>'
    )


def progress_html(progress: Progress, n_ratings: int) -> str:
    rows = "".join(
        f"<tr><td>{escape(c.condition)}</td><td>{c.started}</td><td>{c.completed}</td><td>{c.lists}</td>"
        f"<td>{c.degraded}</td></tr>"
        for c in progress.conditions
    )
    latin = ", ".join(f"row {r}: {n}" for r, n in progress.rows.items()) or "none yet"
    return (
        f'<div class="study-report"><p><b>{progress.participants}</b> participants, <b>{progress.completed}</b> '
        f"completed, {n_ratings} ratings. Latin-square rows: {escape(latin)}.</p>"
        "<table><tr><th>condition</th><th>started</th><th>completed</th><th>lists shown</th>"
        f"<th>degraded lists</th></tr>{rows}</table></div>"
    )


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"  # NaN: fewer than two participants


def summaries_html(summaries: Sequence[Summary]) -> str:
    if not summaries:
        return "<p>No ratings yet.</p>"
    rows = "".join(
        f"<tr><td>{escape(s.question)}</td><td>{escape(s.condition)}</td><td>{s.participants}</td>"
        f"<td>{s.ratings}</td><td>{_fmt(s.mean)}</td><td>[{_fmt(s.low)}, {_fmt(s.high)}]</td></tr>"
        for s in summaries
    )
    return (
        '<table class="study-results"><tr><th>question</th><th>condition</th><th>participants</th>'
        f"<th>ratings</th><th>mean</th><th>95% CI</th></tr>{rows}</table>"
        "<p class=\"pf-counts\">Means over participants (each participant's answers averaged first).</p>"
    )


def report_html(report: Report) -> str:
    return progress_html(report.progress, report.n_ratings) + summaries_html(report.summaries)


# ------------------------------------------------------------------------------------------ layout


def _radio(elem_id: str) -> gr.Radio:
    return gr.Radio(choices=[], visible=False, elem_id=elem_id, elem_classes="study-question")


def _render_cards() -> list[CardSlot]:
    slots = []
    for n in range(1, MAX_CARDS + 1):
        with gr.Column(visible=False, elem_classes="card-slot study-slot", elem_id=f"study-card-{n}") as box:
            body = gr.HTML()
            with gr.Row():
                answers = [_radio(f"study-card-{n}-q{j}") for j in range(1, MAX_ITEM_QUESTIONS + 1)]
        slots.append(CardSlot(box, body, answers))
    return slots


def _render_participant() -> dict[str, Any]:
    parts: dict[str, Any] = {"header": gr.HTML(elem_id="study-header")}
    with gr.Column(visible=True, elem_id="study-join") as parts["join_box"]:
        parts["code"] = gr.Textbox(label="Study code", placeholder="e.g. MOVIES-26", elem_id="study-code", max_lines=1)
        parts["join"] = gr.Button("Join the study", variant="primary", elem_id="study-join-button")
    with gr.Column(visible=False, elem_id="study-consent") as parts["consent_box"]:
        parts["consent_text"] = gr.HTML()
        with gr.Row():
            parts["agree"] = gr.Button("I agree", variant="primary", elem_id="study-agree")
            parts["decline"] = gr.Button("I do not agree", elem_id="study-decline")
    with gr.Column(visible=False, elem_id="study-task") as parts["task_box"]:
        parts["task_text"] = gr.HTML(elem_classes="study-task-text")
        with gr.Row():
            parts["request"] = gr.Textbox(label="What are you in the mood for? (optional)", scale=5, max_lines=2,
                                          max_length=500, elem_id="study-request")
            parts["ask"] = gr.Button("Show me movies", scale=1, elem_id="study-ask")
        parts["cards"] = _render_cards()
    parts["questions"] = [_radio(f"study-q{n}") for n in range(1, MAX_QUESTIONS + 1)]
    parts["next"] = gr.Button("Next", variant="primary", visible=False, elem_id="study-next")
    parts["done"] = gr.HTML(elem_id="study-done")
    return parts


def _render_researcher() -> dict[str, Any]:
    parts: dict[str, Any] = {}
    with gr.Accordion("Researchers", open=False, elem_id="study-researchers"):
        with gr.Row():
            parts["secret"] = gr.Textbox(label="Researcher secret", type="password", scale=3, elem_id="study-secret")
            parts["studies"] = gr.Dropdown(choices=[], label="Study", scale=2, allow_custom_value=True,
                                           elem_id="study-pick")
            parts["open_report"] = gr.Button("Progress & results", scale=1, elem_id="study-open-report")
        parts["report"] = gr.HTML(elem_id="study-report")
        parts["plot"] = gr.Image(type="filepath", visible=False, label="Results", elem_id="study-plot")
        with gr.Row():
            parts["csv"] = gr.DownloadButton("Download CSV", visible=False, elem_id="study-csv")
            parts["jsonl"] = gr.DownloadButton("Download JSONL", visible=False, elem_id="study-jsonl")
    return parts


def participant_browser_state(browser_secret: str) -> gr.BrowserState:
    """Where the browser keeps the participant's id, so a reload resumes the study. Render it outside the
    tabs: a tab's contents mount only when the tab is shown, and page load must read it at once."""
    return gr.BrowserState("", storage_key=PARTICIPANT_KEY, secret=browser_secret)


def render_study_tab(browser: gr.BrowserState) -> StudyTab:
    return StudyTab(state=gr.State(StudyState()), browser=browser, **_render_participant(), **_render_researcher())


# ------------------------------------------------------------------------------------------ updates


def screen_outputs(tab: StudyTab) -> list[Any]:
    slots = [c for slot in tab.cards for c in (slot.box, slot.body, *slot.answers)]
    return [tab.state, tab.browser, tab.header, tab.join_box, tab.consent_box, tab.consent_text, tab.task_box,
            tab.task_text, tab.request, *slots, *tab.questions, tab.next, tab.done]


def _question_update(question: Question | None, keep: bool) -> Any:
    if question is None:
        return gr.update(visible=False, choices=[], value=None)
    label = question.text + ("" if question.required else " (optional)")
    if keep:
        return gr.update(visible=True, label=label, choices=question.choices())
    return gr.update(visible=True, label=label, choices=question.choices(), value=None)


def _card_updates(screen: Screen, keep: bool) -> list[Any]:
    out: list[Any] = []
    for n in range(MAX_CARDS):
        card = screen.cards[n] if n < len(screen.cards) else None
        out += [gr.update(visible=card is not None), study_card_html(card) if card else ""]
        for j in range(MAX_ITEM_QUESTIONS):
            question = screen.item_questions[j] if card is not None and j < len(screen.item_questions) else None
            out.append(_question_update(question, keep))
    return out


def screen_updates(tab: StudyTab, before: StudyState, state: StudyState, screen: Screen) -> tuple[Any, ...]:
    """Every study output for a screen. Answers typed so far stay when the same list comes back with an error."""
    keep = bool(screen.error) and (before.step, before.impression_id) == (state.step, state.impression_id)
    kind = screen.kind
    questions = [_question_update(screen.questions[n] if n < len(screen.questions) else None, keep)
                 for n in range(MAX_QUESTIONS)]
    return (
        state, state.participant, header_html(screen),
        gr.update(visible=kind == "join"), gr.update(visible=kind == "consent"),
        paragraphs(screen.text) if kind == "consent" else "",
        gr.update(visible=kind == "task"), paragraphs(screen.text) if kind == "task" else "",
        gr.update(value=screen.request) if kind == "task" else gr.update(value=""),
        *_card_updates(screen, keep), *questions,
        gr.update(visible=kind in ("task", "questions")), done_html(screen),
    )


def _answers(values: Sequence[Any]) -> tuple[list[Any], list[list[Any]]]:
    """Split the flat input values into (question answers, per-card answers)."""
    cards = [list(values[n * MAX_ITEM_QUESTIONS:(n + 1) * MAX_ITEM_QUESTIONS]) for n in range(MAX_CARDS)]
    return list(values[MAX_CARDS * MAX_ITEM_QUESTIONS:]), cards


# ------------------------------------------------------------------------------------------ researchers


def researcher_studies(env: StudyEnv, secret: str) -> tuple[list[str], str]:
    """(study ids, message): the ids only for the right secret."""
    if not access.is_admin(env.settings.admin_secret, secret):
        return [], access.refusal(env.settings.admin_secret)
    return sorted(env.studies), ""


def researcher_report(env: StudyEnv, secret: str, study_id: str, folder: Path | None = None) -> Report | str:
    """The report for a study, or why not (wrong secret, unknown study). Files go to a fresh temp folder."""
    if not access.is_admin(env.settings.admin_secret, secret):
        return access.refusal(env.settings.admin_secret)
    study = env.studies.get(study_id or "")
    if study is None:
        return "Pick a study."
    return build_report(env.services.sessions, study, folder or Path(tempfile.mkdtemp(prefix="study-report-")))


# ------------------------------------------------------------------------------------------ events


def _screen_fn(tab: StudyTab, action: Callable[..., tuple[StudyState, Screen]]) -> Callable[..., tuple[Any, ...]]:
    def on_event(state: StudyState, *inputs: Any) -> tuple[Any, ...]:
        new_state, screen = action(state, *inputs)
        return screen_updates(tab, state, new_state, screen)

    return on_event


def _wire_participant(env: StudyEnv, tab: StudyTab, outputs: list[Any]) -> None:
    options: dict[str, Any] = {"show_progress": "minimal", "api_visibility": "private", "trigger_mode": "once"}
    join = _screen_fn(tab, lambda _state, code: open_study(env, code))
    tab.join.click(join, [tab.state, tab.code], outputs, **options)
    tab.code.submit(join, [tab.state, tab.code], outputs, **options)
    tab.agree.click(_screen_fn(tab, lambda state: give_consent(env, state, True)), [tab.state], outputs, **options)
    tab.decline.click(_screen_fn(tab, lambda state: give_consent(env, state, False)), [tab.state], outputs, **options)
    ask = _screen_fn(tab, lambda state, text: ask_for(env, state, text))
    tab.ask.click(ask, [tab.state, tab.request], outputs, **options)
    tab.request.submit(ask, [tab.state, tab.request], outputs, **options)
    answers = [r for slot in tab.cards for r in slot.answers] + tab.questions
    tab.next.click(_screen_fn(tab, lambda state, *values: submit(env, state, *_answers(values))),
                   [tab.state, *answers], outputs, **options)


def _wire_researcher(env: StudyEnv, tab: StudyTab) -> None:
    def on_report(secret: str, study_id: str | None) -> tuple[Any, ...]:
        ids, refused = researcher_studies(env, secret)
        if refused:
            hidden = gr.update(visible=False, value=None)
            return gr.update(choices=[], value=None), f"<p>{escape(refused)}</p>", hidden, hidden, hidden
        chosen = study_id if study_id in ids else (ids[0] if len(ids) == 1 else None)
        report = researcher_report(env, secret, chosen or "")
        picker = gr.update(choices=ids, value=chosen)
        if isinstance(report, str):
            hidden = gr.update(visible=False, value=None)
            return picker, f"<p>{escape(report)}</p>", hidden, hidden, hidden
        return (picker, report_html(report), gr.update(visible=True, value=str(report.plot_path)),
                gr.update(visible=True, value=str(report.csv_path)),
                gr.update(visible=True, value=str(report.jsonl_path)))

    tab.open_report.click(on_report, [tab.secret, tab.studies], [tab.studies, tab.report, tab.plot, tab.csv,
                                                                 tab.jsonl], api_visibility="private")


def setup_study_events(demo: gr.Blocks, env: StudyEnv, tab: StudyTab, tabs: gr.Tabs) -> None:
    """The study tab's events, plus a page-load handler that follows a study link or resumes a participant."""
    outputs = screen_outputs(tab)

    def on_load(stored: str | None, request: gr.Request) -> tuple[Any, ...]:
        params = dict(request.query_params) if request is not None else {}
        found = from_link(env, str(params.get("study", "")), str(params.get("code", "")), stored or "")
        if found is None:
            return (gr.skip(), *screen_updates(tab, StudyState(), StudyState(), JOIN_SCREEN))
        state, screen = found
        return (gr.Tabs(selected=STUDY_TAB), *screen_updates(tab, StudyState(), state, screen))

    demo.load(on_load, [tab.browser], [tabs, *outputs], show_progress="hidden", api_visibility="private")
    _wire_participant(env, tab, outputs)
    _wire_researcher(env, tab)


STUDY_CSS = """
.study-head { display: flex; align-items: baseline; gap: 12px; }
.study-head h3 { margin: 0; }
.study-progress { color: var(--body-text-color-subdued); font-size: 0.9em; }
.study-task-text { font-size: 1.1em; font-weight: 600; }
.study-slot { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 8px 12px; }
.study-code { font-size: 2em; font-weight: 800; letter-spacing: 0.08em; }
.study-report table, .study-results { border-collapse: collapse; margin: 6px 0; font-size: 0.9em; }
.study-report td, .study-report th, .study-results td, .study-results th { border: 1px solid var(--border-color-primary); padding: 3px 8px; }
"""
