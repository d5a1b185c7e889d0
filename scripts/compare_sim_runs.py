"""Two simulation runs of the same people, paired per person across the runs (e.g. two adapter pairs).

Each run is the JSON ``python -m recsys.simulate`` writes (same dataset, people, rounds and seed; run with
``--adapters-dir`` pointing at each pair). Prints, for every scenario and every condition both runs have,
new − old per person with a 95% t-interval over people (``recsys.sim.report.runs_table``). Conditions that
do not use the LLM come out as exactly 0 when both runs trained the same SASRec, which checks the pairing.
When NEW simulated fewer people, all among OLD's (``--users 100`` against an earlier ``--users 200`` run with the
same seed draws its first 100), OLD is cut to them.
More NEW OLD pairs (e.g. the same two adapter pairs on another dataset) print their own tables, then one over
all their people together (``recsys.sim.report.pooled_runs``).

    .venv/bin/python scripts/compare_sim_runs.py runs/sim/ml-100k_new.json runs/sim/ml-100k_old.json \
        [runs/sim/ml-latest-small_new.json runs/sim/ml-latest-small_old.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.sim.report import pooled_runs, restricted, runs_table  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+", metavar="NEW OLD", help="one or more pairs of result JSONs")
    args = p.parse_args(argv)
    if len(args.runs) % 2:
        p.error("give the runs in pairs: NEW OLD [NEW OLD ...]")
    loaded = [json.loads(path.read_text()) for path in args.runs]
    pairs = [(new, cut_to(new, old)) for new, old in zip(loaded[::2], loaded[1::2], strict=True)]
    for new, old in pairs:
        print(f"new: `{new['command']}` ({new['date']}, {new['machine']})")  # noqa: T201
        print(f"old: `{old['command']}` ({old['date']}, {old['machine']})")  # noqa: T201
        for scenario in (s for s in new["per_user"] if s in old["per_user"]):
            print(f"\n**{scenario}**, {new['config']['dataset']}, {len(new['users']['test'])} people, "  # noqa: T201
                  "new − old per person\n")
            print("\n".join(runs_table(new, old, scenario)) + "\n")  # noqa: T201
    if len(pairs) > 1:
        for scenario in (s for s in pairs[0][0]["per_user"] if all(s in r["per_user"] for r in loaded)):
            new, old = pooled_runs(pairs, scenario)
            print(f"**{scenario}**, pooled: {new['config']['dataset']}, {len(new['users']['test'])} people, "  # noqa: T201
                  "new − old per person\n")
            print("\n".join(runs_table(new, old, scenario)))  # noqa: T201


def cut_to(new: dict, old: dict) -> dict:
    """``old`` cut to ``new``'s people when those are fewer and all among its own (``recsys.sim.report.restricted``)."""
    people, theirs = new["users"]["test"], old["users"]["test"]
    if people == theirs or not set(people) < set(theirs):
        return old  # the same people, or runs_table refuses the pair
    print(f"(old cut to new's {len(people)} of its {len(theirs)} people)")  # noqa: T201
    return restricted(old, people)


if __name__ == "__main__":
    main()
