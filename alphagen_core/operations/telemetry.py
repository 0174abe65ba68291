"""The session job's figures for the health server: a small JSON file beside its heartbeat
(`session-<date>.status.json`), rewritten at most once a second, read by `/health` and
`/metrics` in the service's own process (which never opens the DuckDB file for them)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

MAX_LATENCIES = 500  # the newest, for the latency histogram


def status_path(directory: Path, day: str) -> Path:
    return Path(directory) / f"session-{day}.status.json"


def write_session_status(directory: Path, day: str, status: dict[str, Any]) -> None:
    path = status_path(directory, day)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**status, "at": time.time()}, default=str))
    tmp.replace(path)


def read_session_status(directory: Path, day: str) -> dict[str, Any] | None:
    try:
        return json.loads(status_path(directory, day).read_text())
    except (OSError, ValueError):
        return None


COUNTERS = ("orders_sent", "fills", "rejections")


def carried_counts(previous: dict[str, Any] | None, run_id: str) -> dict[str, int]:
    """The day's counts of the session runs before this one (a relaunched job goes on
    counting where the dead one stopped: the metrics are counters of the session)."""
    if not previous or previous.get("run_id") == run_id:
        return {k: 0 for k in COUNTERS}
    return {k: int(previous.get(k) or 0) for k in COUNTERS}


def trader_status(trader: Any, run_id: str, carried: dict[str, int] | None = None) -> dict[str, Any]:
    """What `/health` and `/metrics` show of a running SessionTrader."""
    s = trader.stats
    carried = carried or {}
    return {
        "run_id": run_id,
        "orders_sent": s.orders_sent + carried.get("orders_sent", 0),
        "fills": s.fills + carried.get("fills", 0),
        "rejections": s.rejections + carried.get("rejections", 0),
        "reconciled_orders": s.reconciled_orders,
        "realized_pnl": round(s.realized_pnl, 2),
        "trading_state": trader.state.value,
        "broker_reachable": s.broker_reachable,
        "position_mismatch_polls": trader.mismatches,
        "held": trader.held.symbol if trader.held else None,
        "bar_to_order_s": [round(x, 3) for x in s.bar_to_order_s[-MAX_LATENCIES:]],
    }
