"""Load test: N simulated people chat and click at once through the launched app, then the database is
checked against the log of acknowledged clicks (0 lost, 0 duplicated).

Two subcommands:
  serve  launch the app on 127.0.0.1 (``--models fake``: the real catalog with the test fakes, instant;
         ``--models real``: app.py's own services, RECSYS_USE_LLM decides whether the LLM ranks);
  run    launch ``serve`` as a subprocess (or use ``--url``), drive ``--people`` threads of gradio_client,
         each making ``--clicks`` 👍/👎 clicks on its cards and a chat message every ``--chat-every`` clicks;
         report throughput and p50/p95 latency, then check the database.
Example: ``.venv/bin/python scripts/load_test.py run --people 50 --clicks 20 --models real --use-llm false``.
Loopback only; the number of people is capped at 200 and each run at ``--deadline`` seconds.
Not for: benchmarking the ranker itself (scripts/bench_llm_latency.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere

log = logging.getLogger("load_test")

MAX_PEOPLE = 200
CHAT_LINES = ("something funny", "a space movie from the 90s", "no horror please", "why #2?", "more like #1")


# ------------------------------------------------------------------------------------------ serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_services(settings: Any) -> Any:  # imports kept local: `run` must not load the app's modules
    """The real catalog (or the toy one) with the fakes from tests/: no model files, instant ranking."""
    import pandas as pd

    from recsys.catalog import Catalog
    from storage.db import init_db, make_engine, make_sessionmaker
    from tests.conftest import TOY_MOVIES
    from tests.fakes import FakeEncoder, FakeRanker, FakeRetriever
    from webapp.services import services_from_parts

    path = settings.retriever_dir / "catalog.csv"
    toy = pd.DataFrame(TOY_MOVIES, columns=["item_id", "title", "year", "genres"])
    catalog = Catalog.from_csv(path) if path.exists() else Catalog(toy)
    engine = make_engine(settings.database_url)
    init_db(engine)
    return services_from_parts(
        settings, catalog, FakeRetriever(catalog), make_sessionmaker(engine),
        ranker=FakeRanker(catalog) if settings.use_llm else None, encoder=FakeEncoder(), model_version="fake",
    )


def serve(models: str, port: int) -> None:
    """Launch the app in this process until killed; Settings come from the environment (DATABASE_URL...)."""
    import app
    from settings import Settings

    settings = Settings(port=port, host="127.0.0.1")
    services = app.build_services(settings) if models == "real" else fake_services(settings)
    blocks = app.build_app(services, settings).queue(default_concurrency_limit=8)
    blocks.launch(**app.launch_options(settings), quiet=True)


def launch(models: str, db_url: str, use_llm: bool, port: int, cache_dir: Path) -> subprocess.Popen[bytes]:
    """``serve`` in a child process (its own process group, so it can be killed with its children)."""
    env = {**os.environ, "DATABASE_URL": db_url, "RECSYS_USE_LLM": str(use_llm).lower(),
           "RECSYS_CACHE_DIR": str(cache_dir), "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "serve", "--models", models, "--port", str(port)]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_until_up(url: str, child: subprocess.Popen[bytes] | None, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            raise RuntimeError(f"app exited with {child.returncode}: {child.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/config", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"app at {url} not up after {timeout:.0f} s")


# ------------------------------------------------------------------------------------------ drive


def card_ids(outputs: object) -> list[int]:
    """Item ids of the cards, in rank order, from a view's outputs (the card bodies carry data-item)."""
    return [int(m.group(1)) for m in re.finditer(r'data-item="(\d+)"', str(outputs))]


@dataclass
class Person:
    """One simulated person's log: what the app acknowledged, and how long each call took."""

    public_id: str = ""
    acked: list[tuple[int, str]] = field(default_factory=list)  # (item id, kind) the app said it saved
    latencies: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def timed(person: Person, name: str, client: Any, *args: Any, api_name: str) -> Any:
    """``client.predict(*args, api_name=...)``, its latency logged under ``name``."""
    started = time.perf_counter()
    out = client.predict(*args, api_name=api_name)
    person.latencies.append((name, time.perf_counter() - started))
    return out


def drive(url: str, clicks: int, chat_every: int, seed: int, stop_at: float) -> Person:
    """One person: page load, then clicks (like or dislike on a random card) and a chat message now and then."""
    from gradio_client import Client

    rng, person = random.Random(seed), Person()
    try:
        client = Client(url, verbose=False)
        out = timed(person, "start", client, "", api_name="/start")
        person.public_id, shown = out[0], card_ids(out)
        for n in range(clicks):
            if time.monotonic() > stop_at:
                person.errors.append("deadline")
                break
            if chat_every and n and n % chat_every == 0:
                out = timed(person, "send", client, rng.choice(CHAT_LINES), 0.6, api_name="/send")
                shown = card_ids(out) or shown
            rank, kind = rng.randint(1, min(10, len(shown))), rng.choice(("like", "dislike"))
            out = timed(person, "click", client, rank, kind, 0.6, api_name="/feedback")
            if "saved." in str(out[0]):  # the first output is the notices: "👍 <title> saved."
                person.acked.append((shown[rank - 1], kind))
            shown = card_ids(out) or shown
    except Exception as exc:  # noqa: BLE001 - a failed person is reported, not fatal to the run
        person.errors.append(f"{type(exc).__name__}: {exc}"[:300])
    return person


def drive_all(url: str, people: int, clicks: int, chat_every: int, deadline: float) -> tuple[list[Person], float]:
    results: list[Person | None] = [None] * people
    stop_at = time.monotonic() + deadline

    def worker(i: int) -> None:
        results[i] = drive(url, clicks, chat_every, seed=i, stop_at=stop_at)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(people)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, stop_at - time.monotonic() + 30))
    elapsed = time.perf_counter() - started
    return [p or Person(errors=["thread did not finish"]) for p in results], elapsed


# ------------------------------------------------------------------------------------------ check


def check_database(db_url: str, people: list[Person]) -> dict[str, int]:
    """Compare every person's acknowledged clicks with the feedback events stored for them."""
    from sqlalchemy import select

    from storage.db import make_engine, make_sessionmaker
    from storage.models import FeedbackEvent, User

    lost = duplicated = unexpected = 0
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        for person in people:
            if not person.public_id:
                continue
            user = s.scalars(select(User).where(User.public_id == person.public_id)).one()
            stored = Counter((e.item_id, e.kind) for e in s.scalars(
                select(FeedbackEvent).where(FeedbackEvent.user_id == user.id, FeedbackEvent.kind != "undo")))
            acked = Counter(person.acked)
            lost += sum((acked - stored).values())
            duplicated += sum(n - 1 for n in stored.values() if n > 1)
            unexpected += sum((Counter(set(stored)) - acked).values())
    engine.dispose()
    return {"acknowledged": sum(len(p.acked) for p in people), "lost": lost, "duplicated": duplicated,
            "unacknowledged_stored": unexpected}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(people: list[Person], elapsed: float, check: dict[str, int]) -> str:
    rows = ["| call | n | p50 (s) | p95 (s) |", "|---|---:|---:|---:|"]
    for name in ("start", "click", "send"):
        values = [t for p in people for n, t in p.latencies if n == name]
        rows.append(f"| {name} | {len(values)} | {percentile(values, 50):.3f} | {percentile(values, 95):.3f} |")
    n_calls = sum(len(p.latencies) for p in people)
    errors = Counter(e.split(":")[0] for p in people for e in p.errors)
    rows += ["", f"wall time {elapsed:.1f} s, {n_calls} calls, {n_calls / elapsed:.1f} calls/s, "
             f"{sum(len(p.acked) for p in people) / elapsed:.1f} saved clicks/s",
             f"errors: {dict(errors) or 0}", f"database check: {check}"]
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    people = min(args.people, MAX_PEOPLE)
    child = None
    with tempfile.TemporaryDirectory(prefix="load_test_") as tmp:
        db_url = args.db or f"sqlite:///{Path(tmp) / 'load.db'}"
        url = args.url
        if url is None:
            port = free_port()
            child = launch(args.models, db_url, args.use_llm == "true", port, Path(tmp) / "cache")
            url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url, child, timeout=args.startup)
            people_log, elapsed = drive_all(url, people, args.clicks, args.chat_every, args.deadline)
        finally:
            if child is not None:
                os.killpg(child.pid, 9)
                child.wait()
        check = check_database(db_url, people_log)
        text = report(people_log, elapsed, check)
        sys.stdout.write(text + "\n")
    ok = check["lost"] == 0 and check["duplicated"] == 0 and not any(p.errors for p in people_log)
    return 0 if ok else 1


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="launch the app on 127.0.0.1 (DATABASE_URL from the environment)")
    s.add_argument("--models", choices=("fake", "real"), default="fake")
    s.add_argument("--port", type=int, default=7860)
    r = sub.add_parser("run", help="drive simulated people and check the database")
    r.add_argument("--people", type=int, default=50)
    r.add_argument("--clicks", type=int, default=20)
    r.add_argument("--chat-every", type=int, default=5)
    r.add_argument("--models", choices=("fake", "real"), default="real")
    r.add_argument("--use-llm", choices=("true", "false"), default="false")
    r.add_argument("--url", help="an app already running (then --db must name its database)")
    r.add_argument("--db", help="DATABASE_URL (default: a fresh SQLite file in a temp folder)")
    r.add_argument("--deadline", type=float, default=900.0, help="seconds of driving at most")
    r.add_argument("--startup", type=float, default=300.0, help="seconds to wait for the app to start")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    arguments = make_parser().parse_args()
    if arguments.command == "serve":
        serve(arguments.models, arguments.port)
    else:
        sys.exit(run(arguments))
