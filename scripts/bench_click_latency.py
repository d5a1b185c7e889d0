"""Click latency of the real app, end to end over HTTP: 👍/👎 -> updated cards.

Starts ``app.py`` in a subprocess (real SASRec, sentence encoder, the LLM ranker if it loads) on a
temporary SQLite file, waits until it answers, then drives it with gradio_client: every click goes
through the app's ``/feedback`` endpoint (the same handler as the card buttons) and the time to the
first update (the retriever's quick list) and to the last one (the fused list) is measured.
Prints a markdown table with the command, machine and date.

    .venv/bin/python scripts/bench_click_latency.py --clicks 60
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(db: Path, port: int, timeout: float) -> tuple[subprocess.Popen, str, float, float, list[str]]:
    """Launch app.py; (process, url, s until the page answered, s until the models were ready, log lines)."""
    env = os.environ | {"DATABASE_URL": f"sqlite:///{db}", "RECSYS_PORT": str(port), "RECSYS_HOST": "127.0.0.1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    serving = None
    while time.perf_counter() - t0 < timeout:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line and proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{''.join(log[-20:])}")
        log.append(line)
        if "Running on local URL" in line:
            serving = time.perf_counter() - t0
        if "language models ready" in line and serving is not None:
            return proc, f"http://127.0.0.1:{port}/", serving, time.perf_counter() - t0, log
    proc.kill()
    raise TimeoutError(f"app.py did not start within {timeout} s")


def llm_note(log: list[str]) -> str:
    line = next((x for x in log if "language models ready" in x), "")
    return line.split(": ", 2)[-1].strip() if line else "unknown"


def timed_click(client: Client, rank: int, kind: str, alpha: float) -> tuple[float, float, int]:
    """(ms to the first update, ms to the last update, number of updates) for one click."""
    t0 = time.perf_counter()
    job = client.submit(rank, kind, alpha, api_name="/feedback")
    stamps = [time.perf_counter() for _ in job]
    if not stamps:
        raise RuntimeError(f"no update for click {kind} #{rank}: {job.status()}")
    return 1000 * (stamps[0] - t0), 1000 * (stamps[-1] - t0), len(stamps)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(clicks: int, warmup: int, alpha: float, seed: int, timeout: float) -> str:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, serving, ready, log = start_app(Path(tmp) / "bench.db", free_port(), timeout)
        try:
            client = Client(url, verbose=False)
            client.predict("", api_name="/start")
            client.predict("something like Alien but funnier", alpha, api_name="/send")
            quick, fused = [], []
            for i in range(warmup + clicks):
                kind = rng.choice(("like", "like", "dislike", "dislike", "undo"))
                first, final, n = timed_click(client, rng.randint(1, 10), kind, alpha)
                if i >= warmup:
                    quick.append(first)
                    if n > 1:
                        fused.append(final)
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    return report(clicks, (serving, ready), quick, fused, llm_note(log))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}; load average {load}"


def report(clicks: int, started: tuple[float, float], quick: list[float], fused: list[float], llm: str) -> str:
    def row(name: str, values: list[float]) -> str:
        if not values:
            return f"| {name} | 0 | – | – | – |"
        return (f"| {name} | {len(values)} | {statistics.median(values):.0f} | {percentile(values, 0.95):.0f} |"
                f" {max(values):.0f} |")

    settings = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("RECSYS_"))
    lines = [
        f"Command: `{' '.join([*([settings] if settings else []), Path(sys.executable).name, *sys.argv])}`  ",
        f"Machine: {machine()}  ",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"App start (process spawn -> page served / language models ready): {started[0]:.1f} s / {started[1]:.1f} s  ",
        f"Preference models: {llm}",
        "",
        "| click -> updated cards | clicks | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|---|",
        row("quick list (retriever order)", quick),
        row("fused list (preference models)", fused),
    ]
    if not fused:
        lines.append("\nNo fused list was produced (preference models not loaded), so only the quick list is timed.")
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clicks", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--alpha", type=float, default=0.6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start-timeout", type=float, default=600.0)
    return p


if __name__ == "__main__":
    args = make_parser().parse_args()
    print(run(args.clicks, args.warmup, args.alpha, args.seed, args.start_timeout))
