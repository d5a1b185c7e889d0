"""Two simulation runs of the same people, paired per person across the runs (e.g. two adapter pairs).

Each run is the JSON ``python -m recsys.simulate`` writes (same dataset, people, rounds and seed; run with
``--adapters-dir`` pointing at each pair). Prints, for every scenario and every condition both runs have,
new − old per person with a 95% t-interval over people (``recsys.sim.report.runs_table``). Conditions that
do not use the LLM come out as exactly 0 when both runs trained the same SASRec, which checks the pairing.

    .venv/bin/python scripts/compare_sim_runs.py runs/sim/ml-100k_new.json runs/sim/ml-100k_old.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.sim.report import runs_table  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("new", type=Path)
    p.add_argument("old", type=Path)
    args = p.parse_args(argv)
    new, old = (json.loads(path.read_text()) for path in (args.new, args.old))
    print(f"new: `{new['command']}` ({new['date']}, {new['machine']})")  # noqa: T201
    print(f"old: `{old['command']}` ({old['date']}, {old['machine']})")  # noqa: T201
    for scenario in (s for s in new["per_user"] if s in old["per_user"]):
        print(f"\n**{scenario}**, {len(new['users']['test'])} people, new − old per person\n")  # noqa: T201
        print("\n".join(runs_table(new, old, scenario)))  # noqa: T201


if __name__ == "__main__":
    main()
