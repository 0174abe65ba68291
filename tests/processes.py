"""Helpers for tests that start processes or servers: the venv's executables (found next to the
interpreter running the tests, never by a `.venv` path), an environment without the project's
settings, and free loopback ports. Fixtures built on these are in tests/conftest.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# Settings a developer's shell may carry; a test sets the ones it needs.
SETTINGS_PREFIXES = ("ALPHAGEN_", "DAGSTER_", "FEATURE_", "RISK_", "ORDER_", "POLYGON_", "SCHWAB_", "PAPER_",
                     "STRATEGY_")


def venv_bin(name: str) -> str:
    """An executable installed beside the running interpreter (alphagen, dbt, dagster-webserver)."""
    path = VENV_BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed beside {sys.executable}")
    return str(path)


def clean_environ(**env: str) -> dict[str, str]:
    """os.environ without any of the project's settings, plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith(SETTINGS_PREFIXES)}
    return {**base, **env}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    if len(sys.argv) > 3:
        open(sys.argv[3], "w").write(repr(time.time()))
    """
)


def hold_duckdb_lock(db: Path, seconds: float, released: Path | None = None) -> subprocess.Popen:
    """Another process holding the DuckDB file `db` for `seconds`; returns once it holds it.
    With `released`, it writes there the time.time() at which it let go."""
    extra = [str(released)] if released else []
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db), str(seconds), *extra], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder
