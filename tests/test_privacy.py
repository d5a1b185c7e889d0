"""The "My data" tab's handlers: see everything stored about you, delete it (after confirmation), carry on
under a fresh anonymous identity; other people's data is untouched."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from settings import Settings
from storage.models import (
    ChatSession,
    FeedbackEvent,
    Impression,
    ImpressionItem,
    Message,
    ProfileSnapshot,
    StudyParticipant,
    StudyRating,
    User,
)
from study import flow
from study.config import parse_study
from study.flow import StudyEnv, StudyState
from tests.fakes import FakeRanker
from tests.test_app_handlers import fake_services
from tests.test_study_flow import STUDY_YAML, answer, join
from webapp import handlers
from webapp.privacy_ui import NEED_CONFIRMATION, forget, my_data, user_ids, write_json

PER_USER = (ChatSession, Impression, FeedbackEvent, ProfileSnapshot, StudyRating, StudyParticipant)


@pytest.fixture
def env(db_url, tmp_path, toy_catalog) -> StudyEnv:
    settings = Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache")
    study = parse_study(STUDY_YAML)
    return StudyEnv(fake_services(settings, toy_catalog, ranker=FakeRanker(toy_catalog)), settings, {study.id: study})


def active_person(env: StudyEnv, text: str):
    """A person who chatted and clicked, as the Movies tab would leave them."""
    view = handlers.start(env.services, env.settings, None)
    view = list(handlers.send_message(env.services, env.settings, view.state, text, 0.6))[-1]
    return list(handlers.click(env.services, env.settings, view.state, 1, "dislike", 0.6))[-1].state


def participant(env: StudyEnv) -> StudyState:
    state, screen = join(env)
    state, _ = answer(env, state, screen)  # demographics; now on the first list
    return state


def rows_of(env: StudyEnv, user_id: int) -> dict[str, int]:
    with env.services.sessions() as s:
        counts = {m.__name__: s.scalar(select(func.count()).select_from(m).where(m.user_id == user_id))
                  for m in PER_USER}
        counts["User"] = s.scalar(select(func.count()).select_from(User).where(User.id == user_id))
        counts["Message"] = s.scalar(select(func.count()).select_from(Message).join(ChatSession).where(
            ChatSession.user_id == user_id))
    return counts


def test_my_data_shows_the_person_and_their_study_identity(env, tmp_path):
    person = active_person(env, "something funny with spaceships")
    study_state = participant(env)
    active_person(env, "someone else entirely")
    data = my_data(env.services, person, study_state)
    assert [i["user"]["kind"] for i in data["identities"]] == ["person", "participant"]
    mine = data["identities"][0]
    assert [m["text"] for m in mine["messages"] if m["role"] == "user"] == ["something funny with spaceships"]
    assert mine["feedback"] and mine["impressions"] and mine["profiles"]
    assert data["identities"][1]["study_participation"][0]["study_id"] == "toy-study"
    assert "someone else entirely" not in json.dumps(data)
    path = write_json(data, tmp_path)
    assert json.loads(path.read_text()) == json.loads(json.dumps(data))


def test_delete_needs_confirmation(env):
    person = active_person(env, "a funny movie")
    done = forget(env.services, env.settings, person, StudyState(), confirmed=False)
    assert done.message == NEED_CONFIRMATION and done.view is None
    assert rows_of(env, person.user_id)["User"] == 1


def test_delete_removes_everything_of_theirs_and_nothing_else(env):
    person = active_person(env, "a funny movie")
    study_state = participant(env)
    other = active_person(env, "an old crime drama")
    other_study = participant(env)
    ids = user_ids(env.services, person, study_state)
    before_other = {i: rows_of(env, i) for i in user_ids(env.services, other, other_study)}

    done = forget(env.services, env.settings, person, study_state, confirmed=True)

    assert all(set(rows_of(env, i).values()) == {0} for i in ids)
    assert {i: rows_of(env, i) for i in before_other} == before_other
    with env.services.sessions() as s:  # no orphaned cards of a deleted list, no messages of a deleted chat
        orphans = s.scalar(select(func.count()).select_from(ImpressionItem).where(
            ImpressionItem.impression_id.not_in(select(Impression.id))))
        orphans += s.scalar(select(func.count()).select_from(Message).where(
            Message.session_id.not_in(select(ChatSession.id))))
    assert orphans == 0
    fresh = done.view.state
    assert fresh.user_id not in ids and fresh.public_id not in (person.public_id,)
    assert len(done.view.cards) == 10 and done.view.n_likes == done.view.n_dislikes == 0
    assert flow.resume(env, study_state.participant) is None  # the old study identity cannot come back


def test_ids_are_random_and_no_names_are_stored(env):
    person = active_person(env, "hello")
    study_state = participant(env)
    with env.services.sessions() as s:
        users = s.scalars(select(User)).all()
    assert {u.display_name for u in users} == {None}
    assert len({u.public_id for u in users}) == 2 and all(len(u.public_id) == 32 for u in users)
    assert person.public_id != study_state.participant
