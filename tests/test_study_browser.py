"""Study mode, "My data" and the demo kiosk in a real headless Chromium (Playwright): a participant follows
the study link to the completion code; a researcher is refused with a wrong secret and downloads the CSV
with the right one; a person deletes their data; a presenter resets a persona. Fake models, toy catalog."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import func, select

import app
from settings import Settings
from storage.models import StudyRating, User
from tests.fakes import FakeRanker
from tests.test_app_browser import ARGS, CHROMIUM, pytestmark  # noqa: F401 - same skip rules and marker
from tests.test_app_client import free_port
from tests.test_app_handlers import fake_services
from tests.test_study_flow import STUDY_YAML

SECRET = "browser-admin-secret"
SHORT_STUDY = STUDY_YAML.replace("rounds: 2", "rounds: 1").replace("list_length: 5", "list_length: 3")


class Running:
    def __init__(self, tmp_path, db_url: str, catalog, **overrides):
        studies = tmp_path / "studies"
        studies.mkdir(exist_ok=True)
        (studies / "toy.yaml").write_text(SHORT_STUDY)
        self.settings = Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache", admin_secret=SECRET,
                                 studies_dir=studies, **overrides)
        self.services = fake_services(self.settings, catalog, ranker=FakeRanker(catalog))
        self.demo = app.build_app(self.services, self.settings, secret="test-secret").queue()
        options = {k: v for k, v in app.launch_options(self.settings).items() if k in ("css", "theme")}
        self.port = free_port()
        self.demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=self.port,
                         **options)
        self.url = f"http://127.0.0.1:{self.port}/"

    def count(self, model, *where) -> int:
        with self.services.sessions() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def running(tmp_path, db_url, toy_catalog):
    server = Running(tmp_path, db_url, toy_catalog)
    yield server
    server.demo.close()


def new_tab(browser, url: str):
    tab = browser.new_page(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    tab.set_default_timeout(20_000)
    tab.goto(url)
    return tab


def pick(tab, radio_id: str, label: str) -> None:
    tab.locator(f"#{radio_id}").get_by_text(label, exact=True).click()


def has_text(tab, selector: str, text: str) -> None:
    """Wait until the element exists and its text contains ``text``."""
    tab.wait_for_function("([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text])


def wait_title(tab, text: str) -> None:
    has_text(tab, "#study-header", text)


def test_participant_follows_the_link_to_the_completion_code(browser, running):
    tab = new_tab(browser, running.url + "?study=toy-study&code=TOY-123")
    tab.wait_for_selector("#study-agree", state="visible")  # the Study tab opened by itself
    assert "random id" in tab.locator("#study-consent").inner_text()
    tab.click("#study-agree")
    wait_title(tab, "About you")
    tab.click("#study-next")  # demographics are optional
    for label in ("List A", "List B", "List C"):
        wait_title(tab, label)
        tab.wait_for_selector("#study-card-3 .mc", state="visible")
        text = tab.locator("#study-task").inner_text() + tab.locator("#study-header").inner_text()
        assert "arm_" not in text and "score" not in text.lower()  # blinded
        if label == "List A":  # Next without answering: told what is missing, nothing stored
            tab.click("#study-next")
            tab.wait_for_selector(".study-error")
            assert running.count(StudyRating, StudyRating.rank.is_not(None)) == 0
        for n in (1, 2, 3):
            pick(tab, f"study-card-{n}-q1", "4")
            pick(tab, f"study-card-{n}-q2", "No")
        pick(tab, "study-q1", "3")
        tab.click("#study-next")
        wait_title(tab, f"About {label}")
        pick(tab, "study-q1", "5")
        tab.click("#study-next")
    wait_title(tab, "Last questions")
    pick(tab, "study-q1", "List B")
    tab.click("#study-next")
    tab.wait_for_selector("#completion-code")
    assert tab.locator("#completion-code").inner_text() == "DONE-777"
    assert running.count(StudyRating, StudyRating.rank.is_not(None)) == 3 * 3 * 2
    tab.reload()  # the browser remembers the participant: back to their last screen
    tab.wait_for_selector("#completion-code", state="visible")


def test_researcher_needs_the_secret_and_downloads_the_ratings(browser, running):
    tab = new_tab(browser, running.url + "?study=toy-study&code=TOY-123")
    tab.click("#study-agree")
    wait_title(tab, "About you")
    pick(tab, "study-q1", "35+")
    tab.click("#study-next")
    tab.wait_for_selector("#study-card-1 .mc", state="visible")

    tab.click("#study-researchers")
    tab.fill("#study-secret input", "not-the-secret")
    tab.click("#study-open-report")
    has_text(tab, "#study-report", "Refused")
    assert not tab.locator("#study-csv").is_visible()

    tab.fill("#study-secret input", SECRET)
    tab.click("#study-open-report")
    tab.wait_for_selector("#study-csv", state="visible")
    assert "1 participants" in tab.locator("#study-report").inner_text()
    with tab.expect_download() as download:
        tab.click("#study-csv")
    rows = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert [(r["question"], r["answer"]) for r in rows] == [("age_group", "35+")]
    assert SECRET not in open(download.value.path(), encoding="utf-8").read()


def test_a_person_sees_and_deletes_their_data(browser, running):
    tab = new_tab(browser, running.url)
    tab.wait_for_selector("#card-1 .mc")
    tab.fill("#message textarea", "something funny")
    tab.keyboard.press("Enter")
    tab.wait_for_selector("#chat [data-testid=bot]")
    tab.get_by_role("tab", name="My data").click()
    tab.click("#my-data-show")
    tab.wait_for_selector("#my-data-download", state="visible")
    with tab.expect_download() as download:
        tab.click("#my-data-download")
    data = json.loads(open(download.value.path(), encoding="utf-8").read())
    person = data["identities"][0]
    assert "something funny" in [m["text"] for m in person["messages"]]

    tab.click("#my-data-delete")  # not confirmed yet
    has_text(tab, "#my-data-message", "Tick the box")
    assert running.count(User, User.public_id == person["user"]["public_id"]) == 1
    tab.locator("#my-data-confirm input").check()
    tab.click("#my-data-delete")
    has_text(tab, "#my-data-message", "deleted")
    assert running.count(User, User.public_id == person["user"]["public_id"]) == 0
    tab.get_by_role("tab", name="Movies").click()
    tab.wait_for_selector("#card-1 .mc")
    assert tab.locator("#chat [data-testid=user]").count() == 0
    tab.reload()  # the browser now holds the fresh identity, not the deleted one
    tab.wait_for_selector("#card-1 .mc")
    assert running.count(User, User.kind == "person") == 1


def test_presenter_resets_a_persona(browser, tmp_path, db_url, toy_catalog):
    personas = tmp_path / "personas.json"
    personas.write_text(json.dumps({"personas": [
        {"id": "scifi", "name": "Sci-fi fan", "emoji": "🚀", "likes": [11, 12, 13], "dislikes": [3, 4]},
        {"id": "family", "name": "Family night", "likes": [6, 7, 8], "dislikes": [23]}]}))
    server = Running(tmp_path, db_url, toy_catalog, mode="demo", personas_file=personas)
    try:
        tab = new_tab(browser, server.url)
        has_text(tab, "#persona-now", "Sci-fi fan")
        tab.wait_for_selector("#card-1 .mc")
        assert not tab.locator("#alpha").is_visible() and not tab.locator("#quick-start").is_visible()
        tab.click("#persona-family")
        has_text(tab, "#profile", "3 👍 · 1 👎")
        tab.click("#like-1")
        has_text(tab, "#profile", "4 👍 · 1 👎")
        tab.click("#demo-reset")
        has_text(tab, "#profile", "3 👍 · 1 👎")
        assert "Family night" in tab.locator("#persona-now").inner_text()
        assert server.count(User, User.kind == "persona") == 1
    finally:
        server.demo.close()
