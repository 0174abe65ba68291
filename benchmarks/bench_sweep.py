"""A sweep of three values against one variant's replay of the same 20 generated sessions.

    .venv/bin/python benchmarks/bench_sweep.py [--runs 3]

Both are `alphagen replay` processes of this checkout with their own Dagster home, flat-file
cache and dbt target (after one warm-up run each, as a user's replays keep them) and an empty
DuckDB file per run, run in turns; charts off for both (a sweep draws none). The variant:
`--variant risk_stop_loss_multiple=1.5 --set RISK_STOP_LOSS_MULTIPLE=1.5`; the sweep:
`--sweep RISK_STOP_LOSS_MULTIPLE=1.5,2,3`. Prints each run (wall, CPU with children, the replay
and dbt steps) and the ratio of the medians of the wall times; the target is at most 2.2.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_before_after import END, START, replay  # noqa: E402

ALPHAGEN = ROOT / ".venv" / "bin" / "alphagen"
SIDES = {
    "variant": ["--variant", "risk_stop_loss_multiple=1.5", "--set", "RISK_STOP_LOSS_MULTIPLE=1.5"],
    "sweep of 3": ["--sweep", "RISK_STOP_LOSS_MULTIPLE=1.5,2,3"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="alphagen-bench-sweep-") as tmp:
        flatfiles = Path(tmp) / "flatfiles"
        subprocess.run([str(ALPHAGEN), "sample", "--start", str(START), "--end", str(END), "--out", str(flatfiles)],
                       check=True, stdout=subprocess.DEVNULL)
        for side, options in SIDES.items():
            replay(ROOT, Path(tmp) / side.replace(" ", "_"), flatfiles, -1, options,
                   FEATURE_ENABLE_CHART="false")  # warm-up: home, caches, dbt target
        print("| run | side | wall | CPU (with children) | replay step | dbt step | load when it started |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for run in range(args.runs):
            for side, options in SIDES.items():
                r = replay(ROOT, Path(tmp) / side.replace(" ", "_"), flatfiles, run, options,
                           FEATURE_ENABLE_CHART="false")
                walls[side].append(r["wall"])
                print(f"| {run} | {side} | {r['wall']:.1f} s | {r['cpu']:.1f} s | {r['replay step']:.1f} s "
                      f"| {r['dbt step']:.1f} s | {r['load']:.1f} |", flush=True)
    medians = {side: statistics.median(w) for side, w in walls.items()}
    ratio = medians["sweep of 3"] / medians["variant"]
    print(f"\nmedian wall: variant {medians['variant']:.1f} s, sweep of 3 {medians['sweep of 3']:.1f} s: "
          f"{ratio:.2f}x (target <= 2.2x)")


if __name__ == "__main__":
    main()
