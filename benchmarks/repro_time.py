"""The README's main job timed: `dvc repro` of the default (smoke) profile in a fresh clone, twice.

benchmarks/repro_time.sh clones this checkout, runs `dvc repro` once (every stage runs) and again
(nothing changed: no stage may run), then hands the timestamps and stage counts to `record`, which
writes reports/repro_time.json in this checkout:

    bash benchmarks/repro_time.sh [clone-dir]

(the shell script runs `python benchmarks/repro_time.py T0 T1 T2 N1 N2 COMMIT CPUS OUT` itself).
dgc/bench/registry.py renders it in docs/speed.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dgc.io import write_json_atomic
from dgc.measure.provenance import provenance


def record(t0: float, t1: float, t2: float, stages_first: int, stages_second: int, commit: str, cpus: int,
           out: str | Path) -> dict[str, Any]:
    """Write the two runs' seconds and stage counts to `out` (with the provenance of this machine)."""
    result = {"commit": commit, "cpus": cpus, "first_s": t1 - t0, "second_s": t2 - t1,
              "stages_first": stages_first, "stages_second": stages_second, "provenance": provenance("CPU")}
    write_json_atomic(out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("t0", "t1", "t2"):
        parser.add_argument(name, type=float, help="seconds since the epoch: start, end of run 1, end of run 2")
    parser.add_argument("stages_first", type=int, help="stages the first run ran")
    parser.add_argument("stages_second", type=int, help="stages the second run ran")
    parser.add_argument("commit", help="the clone's commit")
    parser.add_argument("cpus", type=int)
    parser.add_argument("out", help="the JSON to write (reports/repro_time.json)")
    args = parser.parse_args(argv)
    r = record(args.t0, args.t1, args.t2, args.stages_first, args.stages_second, args.commit, args.cpus,
               args.out)
    print(f"first dvc repro (all stages): {r['first_s']:.0f} s ({r['first_s'] / 60:.1f} min), "
          f"{r['stages_first']} stages")
    print(f"second dvc repro (nothing changed): {r['second_s']:.1f} s, {r['stages_second']} stages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
