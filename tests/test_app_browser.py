"""The app in a real headless Chromium (Playwright): type a request, 👎 a card, watch the list and the
profile change, restart the app, reload and get the same page back. Fake models, toy catalog, real SQLite file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import app
from settings import Settings
from tests.fakes import FakeRanker
from tests.test_app_client import free_port
from tests.test_app_handlers import fake_services

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None,
                       reason=f"Debian chromium is not installed at {CHROMIUM} (apt-get install chromium)"),
]


class Server:
    """The app on a fixed port; ``restart`` starts a new app process-state (new services, same DB)."""

    def __init__(self, db_url: str, tmp_path, catalog):
        self.settings = Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache")
        self.catalog, self.port, self.demo = catalog, free_port(), None
        self.start()

    def start(self) -> None:
        services = fake_services(self.settings, self.catalog, ranker=FakeRanker(self.catalog))
        self.demo = app.build_app(services, self.settings, secret="test-secret").queue()
        options = {k: v for k, v in app.launch_options(self.settings).items() if k in ("css", "theme")}
        self.demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=self.port,
                         **options)

    def restart(self) -> None:
        self.demo.close()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture
def server(db_url, tmp_path, toy_catalog):
    running = Server(db_url, tmp_path, toy_catalog)
    yield running
    running.demo.close()


@pytest.fixture
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(20_000)
        tab.goto(server.url)
        yield tab
        browser.close()


def titles(page) -> list[str]:
    return page.locator(".card-slot:visible .mc-title").all_inner_texts()


def settle(page) -> None:
    """Wait until the fused list has replaced the quick one."""
    page.wait_for_function("!document.querySelector('#notices .notice-busy')")


def test_request_dislike_profile_and_restart(page, server):
    page.wait_for_selector("#card-1 .mc")
    page.fill("#message textarea", "something funny")
    page.keyboard.press("Enter")
    page.wait_for_selector("#chat [data-testid=bot]")
    settle(page)
    before = titles(page)
    assert before and "Toy Story" in before and "Alien" not in before

    page.click("#dislike-1")
    page.wait_for_function("t => ![...document.querySelectorAll('.mc-title')].some(e => e.innerText === t)", arg=before[0])
    settle(page)
    assert before[0] not in titles(page)
    assert before[0] in page.locator("#profile .pf-dislikes").inner_text()
    assert "1 👎" in page.locator("#profile").inner_text()

    shown = titles(page)
    server.restart()  # a new app process-state on the same port and database
    page.reload()  # same browser: the person, their list and their profile come back
    page.wait_for_selector("#card-1 .mc")
    assert titles(page) == shown and before[0] in page.locator("#profile .pf-dislikes").inner_text()


def test_typed_markup_is_shown_as_text(page):
    page.wait_for_selector("#card-1 .mc")
    page.fill("#message textarea", '<img src=x onerror="window.pwned=1"> <b>hi</b>')
    page.keyboard.press("Enter")
    page.wait_for_selector("#chat [data-testid=bot]")
    user = page.locator("#chat [data-testid=user]").inner_text()
    assert "<img" in user and page.locator("#chat img[src=x], #chat b").count() == 0
    assert page.evaluate("window.pwned") is None
