"""dbt in a process of its own, started before it is needed and kept waiting (no Dagster in it).

Importing dbt-core costs about 2.5 s of CPU and its partial parse about 0.5 s. In the step's
process they held the GIL against the replay (and, through dagster-dbt, sat on every run's
start). Started when a replay starts, this worker imports dbt and parses the project on the
other core, then waits on its stdin for the build; the dbt step reads the results back.

Protocol, one JSON object per line. Worker -> parent (on the worker's original stdout; its
fd 1 is pointed at stderr so that nothing else lands in the stream):
  {"parsed": bool, "seconds": float, "errors": [...]}          once, when ready
  {"log": str} | {"result": {...}}                               while `dbt build` runs
  {"done": bool, "errors": [...]}                                last
Parent -> worker (stdin): {"build": [[dbt selection args], ...]}, one `dbt build` each. On EOF instead (the parent is done
or gone) the worker exits, so it never outlives the run.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alphagen_dagster.teardown import exit_without_teardown

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_pnl"
# No dbt.log (dbt scrubs every line of it for secrets: ~0.4 s), no colours; what dbt says
# comes back as {"log": ...} lines and the step prints it.
_QUIET = ("--log-level", "none", "--log-level-file", "none", "--no-use-colors")
# dbt's structured events that carry a node's result.
_RESULT_EVENTS = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"})


def target_dir(cache_dir: Path | str, db_path: str) -> Path:
    """One dbt target folder per DuckDB file, kept between runs: dbt's partial parse is keyed
    on the profile (the file's path included), so a kept target skips the ~4 s full parse."""
    digest = hashlib.sha1(db_path.encode()).hexdigest()[:12]
    return Path(cache_dir).resolve() / "dbt-target" / digest


def dbt_args(target: Path) -> list[str]:
    """The project, profile and target arguments every dbt command here takes."""
    return ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(target), "--log-path", str(target), *_QUIET]


class DbtProcess:
    """The parent's handle on one worker: start it, then `build` once."""

    def __init__(self, db_path: str, cache_dir: Path | str) -> None:
        self.target = target_dir(cache_dir, db_path)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.target)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "ALPHAGEN_DUCKDB_PATH": db_path},  # the profile reads it (absolute)
            cwd=DBT_PROJECT_DIR,
            # Not in the terminal's process group: Ctrl-C is the replay's to handle (it stops at a
            # day boundary and still builds the marts); the worker ends on its stdin's EOF.
            start_new_session=True,
        )

    def build(self, steps: list[list[str]]) -> Iterator[dict[str, Any]]:
        """Run `dbt build` once per selection in `steps`, in order, releasing the DuckDB file
        between them and stopping at the first failure; yields the worker's messages up to
        "done"."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"build": steps}) + "\n")
        self._proc.stdin.flush()
        for line in self._proc.stdout:
            message = json.loads(line)
            yield message
            if "done" in message:
                break
        else:
            code = self._proc.wait()
            raise RuntimeError(f"the dbt worker exited with code {code} before dbt finished (its stderr is above)")
        self.close()

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # EOF: an idle worker exits
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


_waiting: dict[tuple[str, Path], DbtProcess] = {}


def _key(db_path: str, cache_dir: Path | str) -> tuple[str, Path]:
    return db_path, target_dir(cache_dir, db_path)


def start(db_path: str, cache_dir: Path | str) -> None:
    """Start a worker for this DuckDB file now, for a later `take` (idempotent)."""
    if _key(db_path, cache_dir) not in _waiting:
        _waiting[_key(db_path, cache_dir)] = DbtProcess(db_path, cache_dir)


def take(db_path: str, cache_dir: Path | str) -> DbtProcess:
    """The worker `start` began for this file, or a new one."""
    return _waiting.pop(_key(db_path, cache_dir), None) or DbtProcess(db_path, cache_dir)


@atexit.register
def _close_unused() -> None:
    while _waiting:
        _waiting.popitem()[1].close()


# --- the worker side -------------------------------------------------------------------------

def _serve(target: str) -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything dbt or a library prints goes to stderr, not into the protocol

    def send(**message: Any) -> None:
        try:
            out.write(json.dumps(message, default=str) + "\n")
        except BrokenPipeError:  # the parent is gone (it ended, or was killed): so are we, quietly
            exit_without_teardown(0)

    args = dbt_args(Path(target))
    errors: list[str] = []
    started = time.perf_counter()
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import msg_to_dict

    def on_parse_event(msg: Any) -> None:
        if msg.info.level == "error" and msg.info.msg:
            errors.append(msg.info.msg)

    parsed = dbtRunner(callbacks=[on_parse_event]).invoke(["parse", *args])
    manifest = parsed.result if parsed.success else None  # None: `build` parses again and reports
    send(parsed=manifest is not None, seconds=round(time.perf_counter() - started, 2), errors=errors)

    request = sys.stdin.readline()
    if not request:
        return 0
    errors = []

    def on_event(msg: Any) -> None:
        level, text = msg.info.level, msg.info.msg
        if level in ("info", "warn", "error") and text:
            send(log=text)
        if level == "error" and text:
            errors.append(text)
        if msg.info.name in _RESULT_EVENTS:
            data = msg_to_dict(msg)["data"]
            info = data["node_info"]
            send(result={"unique_id": info["unique_id"], "status": info["node_status"],
                         "failures": data.get("num_failures"), "seconds": data.get("execution_time")})

    runner = dbtRunner(manifest=manifest, callbacks=[on_event])
    for selection in json.loads(request)["build"]:
        try:
            # dbt's unit tests check the SQL on hand-made rows, not the data: the test suite runs them.
            built = runner.invoke(["build", *args, "--no-write-json", "--exclude-resource-type", "unit_test",
                                   *selection])
        finally:  # dbt-duckdb keeps the file open until process exit otherwise
            DuckDBConnectionManager.close_all_connections()
        if built.exception is not None:
            errors.append(f"{type(built.exception).__name__}: {built.exception}")
        if not built.success and not errors:
            errors.append("dbt build reported failure (see the dbt output above)")
        if errors:
            break
    send(done=not errors, errors=errors)
    out.close()
    exit_without_teardown(0)  # dbt is done and the file released; unloading dbt takes ~0.5 s


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1]))
