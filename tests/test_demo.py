"""Demo mode: the shipped personas fit the shipped catalog, reset puts a persona back to its initial
state in a new session, the kiosk page has no study/admin/advanced clutter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

import app
from recsys.catalog import Catalog
from settings import Settings
from storage.models import ChatSession, User
from storage.repository import current_preferences
from tests.fakes import FakeRanker
from tests.test_app_handlers import fake_services
from webapp import handlers
from webapp.demo import (
    KIOSK_CSS,
    Persona,
    PersonaFileError,
    active_persona,
    load_personas,
    reset_persona,
    start_demo,
)

ROOT = Path(__file__).resolve().parents[1]
TOY_PERSONAS = [
    Persona(id="scifi", name="Sci-fi fan who hates horror", emoji="🚀", likes=[11, 12, 13], dislikes=[3, 4]),
    Persona(id="family", name="Family movie night", likes=[6, 7, 8], dislikes=[23]),
]


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache", mode="demo",
                    personas_file=write_personas(tmp_path, TOY_PERSONAS))


@pytest.fixture
def svc(settings, toy_catalog):
    return fake_services(settings, toy_catalog, ranker=FakeRanker(toy_catalog))


def write_personas(folder: Path, personas: list[Persona]) -> Path:
    path = folder / "personas.json"
    path.write_text(json.dumps({"personas": [p.model_dump() for p in personas]}))
    return path


def last(views):
    return list(views)[-1]


def prefs(svc, user_id: int):
    with svc.sessions() as s:
        return current_preferences(s, user_id=user_id)


def test_shipped_personas_are_in_the_shipped_catalog():
    catalog = Catalog.from_csv(ROOT / "assets/sasrec/ml-latest-small/catalog.csv")
    personas = load_personas(ROOT / "assets/personas.json", catalog)
    assert 3 <= len(personas) <= 4
    assert all(p.likes and p.dislikes and not set(p.likes) & set(p.dislikes) for p in personas)
    scifi = personas[0]
    assert all("Horror" in catalog[i].genres for i in scifi.dislikes)
    assert all("Horror" not in catalog[i].genres for i in scifi.likes)


def test_a_bad_personas_file_names_the_problem(tmp_path, toy_catalog):
    bad = write_personas(tmp_path, [TOY_PERSONAS[0].model_copy(update={"likes": [11, 999]})])
    with pytest.raises(PersonaFileError, match=r"scifi.*999"):
        load_personas(bad, toy_catalog)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(PersonaFileError, match="broken.json"):
        load_personas(tmp_path / "broken.json", toy_catalog)


def test_reset_puts_the_persona_back_in_a_new_session(svc, settings):
    persona = TOY_PERSONAS[0]
    first = last(reset_persona(svc, settings, persona, None))
    start = prefs(svc, first.state.user_id)
    assert set(start.likes) == set(persona.likes) and set(start.dislikes) == set(persona.dislikes)
    assert first.n_likes == 3 and first.n_dislikes == 2 and len(first.cards) == 10
    assert not {c.item_id for c in first.cards} & {*persona.likes, *persona.dislikes}
    bystander = handlers.start(svc, settings, None).state  # someone else using the same app

    # The presenter clicks around and chats...
    played = last(handlers.click(svc, settings, first.state, 1, "like", 0.6))
    played = last(handlers.send_message(svc, settings, played.state, "no comedy", 0.6))
    assert prefs(svc, played.state.user_id) != start

    again = last(reset_persona(svc, settings, persona, played.state.public_id))
    assert again.state.user_id != first.state.user_id and again.state.session_id != first.state.session_id
    assert prefs(svc, again.state.user_id) == start and again.chat == ()
    assert [c.item_id for c in again.cards] == [c.item_id for c in first.cards]
    with svc.sessions() as s:
        assert s.get(User, first.state.user_id) is None  # the played-with copy is gone
        assert s.get(User, bystander.user_id) is not None
        assert s.scalar(select(func.count()).select_from(User).where(User.kind == "persona")) == 1
        assert s.get(ChatSession, again.state.session_id).mode == "demo"


def test_reset_never_deletes_a_real_person(svc, settings):
    person = handlers.start(svc, settings, None).state
    view = last(reset_persona(svc, settings, TOY_PERSONAS[1], person.public_id))
    with svc.sessions() as s:
        assert s.get(User, person.user_id) is not None
    assert active_persona(svc, view.state.public_id, TOY_PERSONAS) == TOY_PERSONAS[1]
    assert active_persona(svc, person.public_id, TOY_PERSONAS) is None


def test_page_load_resumes_the_persona_or_starts_the_first(svc, settings):
    persona, views = start_demo(svc, settings, TOY_PERSONAS, None)
    view = last(views)
    assert persona == TOY_PERSONAS[0]
    persona, views = start_demo(svc, settings, TOY_PERSONAS, view.state.public_id)
    again = last(views)
    assert persona == TOY_PERSONAS[0] and again.state.user_id == view.state.user_id
    assert [c.item_id for c in again.cards] == [c.item_id for c in view.cards]


def test_the_kiosk_page_has_no_study_admin_or_advanced_clutter(svc, settings):
    demo = app.build_app(svc, settings, secret="test-secret")
    config = json.dumps(demo.get_config_file(), default=str)
    assert "persona-scifi" in config and "demo-reset" in config
    assert "study-" not in config and "my-data" not in config and "Researcher" not in config
    css = app.launch_options(settings)["css"]
    assert KIOSK_CSS in css and "#advanced" in KIOSK_CSS and "#quick-start" in KIOSK_CSS
    normal = app.build_app(svc, settings.model_copy(update={"mode": "app"}), secret="test-secret")
    normal_config = json.dumps(normal.get_config_file(), default=str)
    assert "study-" in normal_config and "my-data" in normal_config and "persona-scifi" not in normal_config
