"""A participant's way through a study, as plain functions: (env, state, inputs) -> (state, Screen).

Join by code (or link), accept the consent text (only then is anything stored: a participant user with
a random id, their Latin-square row and condition order), answer questionnaires, and do the tasks: each
task step shows a list ranked under the block's condition (saved as an impression marked with the
condition), and the participant rates every card and the list. Every rating names the impression it
rated, and a card rating also its rank and item. Card ratings at or above / below the study's feedback
thresholds become 👍/👎 in the block, so the next round of the same condition is re-ranked with them.

Screens never carry a condition name, α or model breakdown (blinding): blocks are "List A", "List B".
A submit for a step the participant has already left (double click, second tab) stores nothing.
Not for: gradio (webapp/study_ui.py), exports (study/export.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from settings import Settings
from storage.models import ChatSession, Impression, ImpressionItem, StudyParticipant, utcnow
from storage.repository import (
    ImpressionRow,
    add_message,
    add_study_participant,
    create_user,
    find_session,
    get_study_participant,
    get_user_by_public_id,
    impression_is_rated,
    list_messages,
    next_study_position,
    rated_items,
    record_feedback,
    record_impression,
    record_study_rating,
    session_impressions,
    session_preferences,
    start_session,
)
from study.config import Question, StudyConfig
from study.latin import order_for
from study.lists import parse_request, rank_for
from study.schedule import Step, list_label, schedule, task_text
from webapp.services import Services

log = logging.getLogger(__name__)

ScreenKind = Literal["join", "consent", "questions", "task", "done", "declined"]
Answers = Sequence[int | str | None]
STUDY_MODE = "study"
JOIN_RETRIES = 5


@dataclass(frozen=True)
class StudyEnv:
    """What every study handler needs: the app's services and settings, and the loaded studies by id."""

    services: Services
    settings: Settings
    studies: Mapping[str, StudyConfig]


@dataclass(frozen=True)
class StudyState:
    """gr.State of the study tab: ids only. ``step`` is the step on screen; ``impression_id`` its list."""

    study_id: str = ""
    participant: str = ""  # the participant's public id; "" until consent
    step: int = -1
    impression_id: int | None = None


@dataclass(frozen=True)
class StudyCard:
    """What a participant sees of a movie: no rank breakdown, no score, nothing about the condition."""

    rank: int
    item_id: int
    title: str
    year: int | None
    genres: tuple[str, ...]


@dataclass(frozen=True)
class Screen:
    kind: ScreenKind
    title: str = ""
    text: str = ""
    questions: tuple[Question, ...] = ()
    cards: tuple[StudyCard, ...] = ()
    item_questions: tuple[Question, ...] = ()
    request: str = ""
    progress: str = ""
    code: str = ""
    error: str = ""


Result = tuple[StudyState, Screen]
JOIN_SCREEN = Screen("join", "Join a study", "Type the code you were given, or open the link from the study invitation.")


# ------------------------------------------------------------------------------------------ joining


def study_by_code(env: StudyEnv, code: str) -> StudyConfig | None:
    code = (code or "").strip().lower()
    return next((s for s in env.studies.values() if code and s.join_code.lower() == code), None)


def open_study(env: StudyEnv, code: str) -> Result:
    """A typed join code: the consent screen of its study (nothing is stored yet)."""
    study = study_by_code(env, code)
    if study is None:
        return StudyState(), replace(JOIN_SCREEN, error="No study has that code — check it and try again.")
    return StudyState(study_id=study.id), consent_screen(study)


def consent_screen(study: StudyConfig) -> Screen:
    return Screen("consent", study.title, study.consent, progress=_progress(study, 0))


def from_link(env: StudyEnv, study_id: str, code: str, stored: str = "") -> Result | None:
    """Page load with ``?study=<id>&code=<join code>``, or a participant id kept in the browser.
    None when neither applies (the tab just shows the join box)."""
    resumed = resume(env, stored) if stored else None
    if resumed is not None and (not study_id or resumed[0].study_id == study_id):
        return resumed
    if not study_id:
        return None
    study = env.studies.get(study_id)
    if study is None or study_by_code(env, code) is not study:
        return StudyState(), replace(JOIN_SCREEN, error="This study link is not valid (wrong or expired code).")
    return StudyState(study_id=study.id), consent_screen(study)


def resume(env: StudyEnv, public_id: str) -> Result | None:
    """The participant whose public id the browser kept, at the step where they left off."""
    with env.services.sessions.begin() as s:
        user = get_user_by_public_id(s, public_id=public_id)
        participant = get_study_participant(s, user_id=user.id) if user and user.kind == "participant" else None
        if participant is None or participant.study_id not in env.studies:
            return None
        state = StudyState(participant.study_id, public_id)
    return show(env, state)


def give_consent(env: StudyEnv, state: StudyState, agreed: bool) -> Result:
    """'I agree': enrol with the next Latin-square row. 'I do not agree': nothing is stored."""
    study = env.studies.get(state.study_id)
    if study is None:
        return StudyState(), JOIN_SCREEN
    if state.participant:
        return show(env, state)
    if not agreed:
        return StudyState(), Screen("declined", study.title, "You have not joined the study. Nothing about you was stored.")
    with env.services.sessions.begin() as s:
        participant, public_id = _enrol(s, study)
        participant.step = 1
    log.info("study %s: participant at position %d joined", study.id, participant.position)
    return show(env, StudyState(study.id, public_id))


def _enrol(s: Session, study: StudyConfig) -> tuple[StudyParticipant, str]:
    """A new participant user (random public id, no name) at the study's next free position."""
    user = create_user(s, kind="participant")
    start_session(s, user_id=user.id, mode=STUDY_MODE)  # consent, demographics and end questions
    for _ in range(JOIN_RETRIES):
        position = next_study_position(s, study_id=study.id)
        try:
            participant = add_study_participant(
                s, user_id=user.id, study_id=study.id, study_version=study.version, position=position,
                conditions=order_for(position, study.condition_names),
            )
            return participant, user.public_id
        except IntegrityError:  # a concurrent join took this row (PostgreSQL); take the next one
            continue
    raise RuntimeError(f"could not enrol in study {study.id}: too many concurrent joins")


# ------------------------------------------------------------------------------------------ showing


def _progress(study: StudyConfig, step: int) -> str:
    return f"Step {min(step + 1, len(schedule(study)))} of {len(schedule(study))}"


def _participant(s: Session, state: StudyState) -> tuple[StudyParticipant, int] | None:
    user = get_user_by_public_id(s, public_id=state.participant) if state.participant else None
    participant = get_study_participant(s, user_id=user.id) if user is not None else None
    if participant is None or participant.study_id != state.study_id:
        return None
    return participant, participant.user_id


def _whereabouts(env: StudyEnv, state: StudyState) -> tuple[StudyConfig, int, int, list[str]] | None:
    """(study, user id, current step, condition order) of the participant in ``state``; None if unknown."""
    study = env.studies.get(state.study_id)
    if study is None:
        return None
    with env.services.sessions.begin() as s:
        found = _participant(s, state)
        if found is None:
            return None
        participant, user_id = found
        return study, user_id, participant.step, list(participant.conditions)


def show(env: StudyEnv, state: StudyState, error: str = "") -> Result:
    """The screen of the participant's current step (a task step gets its list, made if need be)."""
    where = _whereabouts(env, state)
    if where is None:
        return StudyState(), JOIN_SCREEN
    study, user_id, step_index, order = where
    step = schedule(study)[step_index]
    state = replace(state, step=step_index)
    if step.kind == "task":
        return _task_screen(env, study, state, user_id, order, step, error)
    return replace(state, impression_id=None), _static_screen(study, step, step_index, error)


def _static_screen(study: StudyConfig, step: Step, index: int, error: str) -> Screen:
    progress = _progress(study, index)
    if step.kind == "done":
        text = "Thank you for taking part! Your completion code is below."
        return Screen("done", study.title, text, progress=progress, code=study.completion_code)
    if step.kind == "demographics":
        return Screen("questions", "About you", "All questions are optional unless marked.",
                      tuple(study.demographics), progress=progress, error=error)
    if step.kind == "block":
        label = list_label(step.block)
        return Screen("questions", f"About {label}", f"Think of all the lists you saw as {label}.",
                      tuple(study.block_questions), progress=progress, error=error)
    if step.kind == "end":
        return Screen("questions", "Last questions", "", tuple(study.end_questions), progress=progress, error=error)
    return consent_screen(study)


def _block_session(s: Session, user_id: int, condition: str) -> ChatSession:
    return find_session(s, user_id=user_id, mode=STUDY_MODE, condition=condition) or start_session(
        s, user_id=user_id, mode=STUDY_MODE, condition=condition
    )


def _request_text(s: Session, session_id: int) -> str:
    said = [m.text for m in list_messages(s, session_id=session_id) if m.role == "user"]
    return said[-1] if said else ""


def _open_list(s: Session, session_id: int) -> Impression | None:
    """The list of the current task step: the block's newest list while it is unrated (a new request
    replaces it; a list the participant has rated belongs to an earlier round)."""
    impression = next(iter(reversed(session_impressions(s, session_id=session_id))), None)
    if impression is None or impression_is_rated(s, impression_id=impression.id):
        return None
    return impression


def _task_screen(
    env: StudyEnv, study: StudyConfig, state: StudyState, user_id: int, order: list[str], step: Step, error: str,
    new_request: str | None = None,
) -> Result:
    condition = study.condition(order[step.block])
    with env.services.sessions.begin() as s:
        session = _block_session(s, user_id, condition.name)
        if new_request is not None:
            add_message(s, session_id=session.id, role="user", text=new_request[:2000], intent="request")
        request = _request_text(s, session.id)
        impression = None if new_request is not None else _open_list(s, session.id)
        impression_id = impression.id if impression is not None else None
        items = list(impression.items) if impression is not None else []
        session_id = session.id
    if impression_id is None:
        impression_id, items = _make_list(env, study, condition.name, user_id, session_id, request)
    state = replace(state, impression_id=impression_id)
    label = list_label(step.block)
    return state, Screen(
        "task", f"{label} — round {step.round} of {study.rounds}", task_text(study, step.block),
        tuple(study.list_questions), _cards(env.services, items), tuple(study.item_questions), request,
        _progress(study, state.step), error=error,
    )


def _make_list(
    env: StudyEnv, study: StudyConfig, condition_name: str, user_id: int, session_id: int, request_text: str
) -> tuple[int, list[ImpressionItem]]:
    """Rank under the condition (outside any transaction), then save the list as an impression."""
    services = env.services
    condition = study.condition(condition_name)
    with services.sessions.begin() as s:
        prefs = session_preferences(s, user_id=user_id, session_ids=[session_id])
        exclude = rated_items(s, session_id=session_id)
    request = parse_request(services, request_text)
    ranked = rank_for(services, condition, study.list_length, prefs.likes, prefs.dislikes, request, exclude)
    rows = [ImpressionRow(rank=it.rank, item_id=it.item_id, score=it.score, base_rank=it.base_rank,
                          pos_rank=it.pos_rank, neg_rank=it.neg_rank) for it in ranked.rec.items]
    adapters = {"stage": "study", **(services.adapters if ranked.rec.llm_used else {})}
    with services.sessions.begin() as s:
        impression = record_impression(
            s, session_id=session_id, user_id=user_id, items=rows, alpha=ranked.rec.alpha,
            model_version=services.model_version, adapters=adapters, query=request.query or None,
            condition=condition.name, degraded=ranked.degraded,
        )
        return impression.id, list(impression.items)


def _cards(services: Services, items: Sequence[ImpressionItem]) -> tuple[StudyCard, ...]:
    catalog = services.catalog
    return tuple(
        StudyCard(it.rank, it.item_id, catalog[it.item_id].title, catalog[it.item_id].year,
                  tuple(g for g in catalog[it.item_id].genres if not g.startswith("(")))
        for it in items if it.item_id in catalog
    )


def ask_for(env: StudyEnv, state: StudyState, text: str) -> Result:
    """On a task step: the participant says what they are looking for; a new list replaces the unrated one."""
    where = _whereabouts(env, state)
    if where is None:
        return StudyState(), JOIN_SCREEN
    study, user_id, step_index, order = where
    step = schedule(study)[step_index]
    if step.kind != "task" or step_index != state.step:
        return show(env, state)
    return _task_screen(env, study, replace(state, step=step_index), user_id, order, step, "", (text or "").strip())


# ------------------------------------------------------------------------------------------ answering


def _value(question: Question, raw: int | str | None) -> int | None:
    """The stored value of an answer, None if unanswered or not one of the question's values."""
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if value in {v for _, v in question.choices()} else None


def check_answers(questions: Sequence[Question], raw: Answers, where: str = "") -> tuple[list[int | None], list[str]]:
    """(values, problems): a required question left open, or a value it does not offer, is a problem."""
    values, problems = [], []
    for n, question in enumerate(questions):
        given = raw[n] if n < len(raw) else None
        value = _value(question, given)
        if value is None and (question.required or given not in (None, "")):
            problems.append(f"{where}“{question.text}”")
        values.append(value)
    return values, problems


def submit(env: StudyEnv, state: StudyState, answers: Answers, card_answers: Sequence[Answers] = ()) -> Result:
    """Store the answers of the step on screen and move on. Missing answers: the same step, with an error."""
    study = env.studies.get(state.study_id)
    with env.services.sessions.begin() as s:
        found = _participant(s, state) if study is not None else None
        if found is None or study is None:
            return StudyState(), JOIN_SCREEN
        participant, user_id = found
        stale = participant.step != state.step  # already answered (double click, another tab): store nothing
        problem = "" if stale else _store_step(s, env, study, participant, user_id, state, answers, card_answers)
    if problem:
        return show(env, state, error=problem)
    return show(env, state if stale else replace(state, impression_id=None))


def _store_step(
    s: Session, env: StudyEnv, study: StudyConfig, participant: StudyParticipant, user_id: int, state: StudyState,
    answers: Answers, card_answers: Sequence[Answers],
) -> str:
    """Record one step's answers and advance; a non-empty message means nothing was stored (answers are
    checked before the first write)."""
    step = schedule(study)[participant.step]
    if step.kind == "task":
        problem = _store_task(s, env, study, participant, user_id, state, step, answers, card_answers)
    elif step.kind in ("demographics", "block", "end"):
        problem = _store_questions(s, study, participant, user_id, step, answers)
    else:
        problem = ""
    if problem:
        return problem
    participant.step += 1
    if schedule(study)[participant.step].kind == "done":
        participant.completed_at = utcnow()
    return ""


def _questions_of(study: StudyConfig, step: Step) -> list[Question]:
    return {"demographics": study.demographics, "block": study.block_questions, "end": study.end_questions}[step.kind]


def _store_questions(
    s: Session, study: StudyConfig, participant: StudyParticipant, user_id: int, step: Step, answers: Answers
) -> str:
    questions = _questions_of(study, step)
    values, problems = check_answers(questions, answers)
    if problems:
        return "Please answer: " + "; ".join(problems)
    if step.kind == "block":
        session = _block_session(s, user_id, participant.conditions[step.block])
    else:
        session = find_session(s, user_id=user_id, mode=STUDY_MODE, condition=None)
    for question, value in zip(questions, values, strict=True):
        if value is not None:
            record_study_rating(s, user_id=user_id, question=question.id, value=value, study_id=study.id,
                                session_id=session.id if session else None)
    return ""


def _store_task(
    s: Session, env: StudyEnv, study: StudyConfig, participant: StudyParticipant, user_id: int, state: StudyState,
    step: Step, answers: Answers, card_answers: Sequence[Answers],
) -> str:
    session = _block_session(s, user_id, participant.conditions[step.block])
    impression = _open_list(s, session.id)
    if impression is None or impression.id != state.impression_id:
        return "This list has changed — please rate the list shown now."
    items = list(impression.items)
    checked = [check_answers(study.item_questions, card_answers[n] if n < len(card_answers) else (),
                             f"movie {n + 1}: ") for n in range(len(items))]
    list_values, list_problems = check_answers(study.list_questions, answers, "the list: ")
    problems = [p for _, found in checked for p in found] + list_problems
    if problems:
        return "Please answer every question: " + "; ".join(problems[:6]) + (" …" if len(problems) > 6 else "")
    common = {"user_id": user_id, "study_id": study.id, "session_id": session.id, "impression_id": impression.id,
              "round": step.round}
    for item, (values, _) in zip(items, checked, strict=True):
        for question, value in zip(study.item_questions, values, strict=True):
            if value is not None:
                record_study_rating(s, question=question.id, value=value, rank=item.rank, item_id=item.item_id,
                                    **common)
        _feedback_from(s, study, state, user_id, session.id, impression.id, item, values)
    for question, value in zip(study.list_questions, list_values, strict=True):
        if value is not None:
            record_study_rating(s, question=question.id, value=value, **common)
    return ""


def _feedback_from(
    s: Session, study: StudyConfig, state: StudyState, user_id: int, session_id: int, impression_id: int,
    item: ImpressionItem, values: Sequence[int | None],
) -> None:
    """A card rated high (low) on the feedback question counts as a 👍 (👎) in this block."""
    rule = study.feedback
    if rule is None:
        return
    value = dict(zip((q.id for q in study.item_questions), values, strict=True)).get(rule.question)
    if value is None or rule.dislike_at_most < value < rule.like_at_least:
        return
    kind = "like" if value >= rule.like_at_least else "dislike"
    event_id = hashlib.sha256(f"study|{state.participant}|{impression_id}|{item.rank}".encode()).hexdigest()[:40]
    record_feedback(s, user_id=user_id, item_id=item.item_id, kind=kind, session_id=session_id,
                    impression_id=impression_id, client_event_id=event_id)
