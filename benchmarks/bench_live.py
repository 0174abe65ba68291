"""Live figures, measured in a simulated session (`alphagen sim-session` on the sim day):
closed bar -> order at the stand-in broker, quote crossing a stop/target -> closing order,
the engine's own time per minute, and the minute runs' start overhead. Seconds are real
(wall-clock) seconds; the session runs at --speed simulated seconds per real second.
Twice, in one invocation: with streamed market data (the default) and with REST polling
(ALPHAGEN_MARKET_STREAM=false), so the two compare on the same machine state."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from pathlib import Path

from alphagen_dagster.service import run_sim_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed", type=float, default=6.0)
    parser.add_argument("--until", default="10:03")
    args = parser.parse_args()
    for stream in ("true", "false"):
        report(args, stream)


def report(args: argparse.Namespace, stream: str) -> None:
    with tempfile.TemporaryDirectory(prefix="alphagen-bench-live-") as tmp:
        summary = run_sim_session(dt.date(2024, 12, 12), Path(tmp), source=None, speed=args.speed,
                                  start=dt.time(9, 33), until=dt.time.fromisoformat(args.until), ui=False,
                                  port=0, echo=lambda *_: None, settings={"ALPHAGEN_MARKET_STREAM": stream})
    lat = summary["latency"]
    rows = [
        ("closed bar -> order at the broker (s)", lat["closed_bar_to_order_s"], "p95 < 10 s"),
        ("quote crossing stop/target -> closing order (s)", lat["stop_to_closing_order_s"], "p95 < 2 s"),
        ("engine per minute (ms)", lat["engine_ms_per_minute"], "< 20 ms"),
        ("minute run created -> RUN_START (s)", lat["run_start_overhead_s"], ""),
    ]
    source = "streamed" if stream == "true" else "polled (REST)"
    print(f"live, sim day 2024-12-12 at x{args.speed:g}, market data {source}, {lat['minute_runs']} minute runs")
    for name, s, target in rows:
        print(f"  {name:<50} n={s['n']:<3} p50={s['p50']}  p95={s['p95']}  max={s['max']}  {target}")
    print(json.dumps(lat))


if __name__ == "__main__":
    main()
