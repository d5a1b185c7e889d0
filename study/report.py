"""Everything a researcher downloads for one study, written to a folder: the ratings as CSV and JSONL,
the results plot as PNG, plus the progress and per-condition summaries to show on the page.

The caller checks the admin secret first (study/access.py) and picks the folder (a fresh temp folder).
Not for: computing the numbers (study/export.py, study/results.py) or gradio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from study import export, results
from study.config import StudyConfig


@dataclass(frozen=True)
class Report:
    progress: results.Progress
    summaries: tuple[results.Summary, ...]
    n_ratings: int
    csv_path: Path
    jsonl_path: Path
    plot_path: Path


def build_report(sessions: sessionmaker[Session], study: StudyConfig, folder: Path) -> Report:
    with sessions() as s:
        progress = results.progress(s, study)
        rows = export.rating_rows(s, study)
    summaries = results.summarise(study, rows)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{study.id}-ratings.csv"
    jsonl_path = folder / f"{study.id}-ratings.jsonl"
    plot_path = folder / f"{study.id}-results.png"
    csv_path.write_text(export.to_csv(rows, export.columns(study)), encoding="utf-8")
    jsonl_path.write_text(export.to_jsonl(rows), encoding="utf-8")
    plot_path.write_bytes(results.plot_png(study, summaries))
    return Report(progress, tuple(summaries), len(rows), csv_path, jsonl_path, plot_path)
