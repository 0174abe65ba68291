"""`alphagen replay` stopped as a user stops it or as a machine does: killed by each signal a
user sends, on a full disk, by the user's own mistakes, in a home broken before the lock.
Real processes of the installed CLI, as in test_replay_cli.py (whose helpers these are); a
module of its own so that its long chain of replays runs beside that module's. Not spare_cpu:
a stopped replay has a minute to build its marts, one dbt run per model during US market hours
(the live window), which a starved moment beside the simulated sessions can exceed."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alphagen_core.adapters.polygon.flatfiles import stocks_key
from tests.test_replay_cli import (
    EIGHT_DAYS,
    FIRST,
    FLAT,
    REPLAY_TIMEOUT,
    A,
    B,
    Cli,
    last_lines,
    write_flatfiles,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def flatfiles(tmp_path_factory) -> Path:
    return write_flatfiles(tmp_path_factory.mktemp("flatfiles"), old_week=False)


class Lines:
    """A process's output lines as they come, read by a thread (a read never blocks the test)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.seen, self._queue = proc, [], queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def until(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.seen):
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {needle!r} within {timeout}s:\n{''.join(self.seen)}")
            if line is None:
                pytest.fail(f"the process ended before printing {needle!r}:\n{''.join(self.seen)}")
            self.seen.append(line)

    def rest(self, timeout: float = 15) -> str:
        """What came after, until the output closes (or `timeout`: a killed process's
        children may hold it)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        return "".join(self.seen)


def _interrupt_replay(cli: Cli, sig: signal.Signals, group: bool = False) -> tuple[subprocess.Popen[str], Lines]:
    """A replay of eight days, sent `sig` once its first day is done: to its process, as `kill`
    does, or (`group`) to its whole process group, as a terminal's Ctrl-C does."""
    proc = cli.popen("replay", "--start", str(EIGHT_DAYS[0]), "--end", str(EIGHT_DAYS[1]),
                     "--source", str(cli.source))
    lines = Lines(proc)
    try:
        lines.until("[1/", REPLAY_TIMEOUT)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    (os.killpg if group else os.kill)(proc.pid, sig)
    return proc, lines


def test_killed_replays_leave_nothing_held_and_the_next_replay_runs(tmp_path, flatfiles):
    """One chain: SIGKILL, SIGTERM, SIGINT, Ctrl-C (SIGINT to the process group), then a replay
    to the end. Each interrupted replay must get past the one before it (its first day needs
    the DuckDB pool's slot)."""
    cli = Cli(tmp_path, flatfiles)

    proc, _ = _interrupt_replay(cli, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    from dagster import DagsterRunStatus

    (killed,) = [r.run_id for r in cli.runs() if r.status == DagsterRunStatus.STARTED]

    outputs = {}
    for sig, group in ((signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)):
        proc, lines = _interrupt_replay(cli, sig, group)
        sent = time.monotonic()
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{sig.name}: still running 60 s later:\n{lines.rest()}")
        out = lines.rest()
        outputs[sig, group] = out
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
        assert f"{sig.name} received: stopping after the current day" in out, out
        assert code != 0, out
        assert time.monotonic() - sent < 60
        # Stopped at a day boundary: the days it names as replayed are in the file, whole.
        assert f"not replayed: {sig.name} received" in out, out
        outcome = re.search(r"run ([-0-9a-f]{36}) FAILED .*: (\d) of 8 days replayed", out)
        assert outcome and 1 <= int(outcome[2]) < 8, out
        days = int(outcome[2])
        written = cli.query("""SELECT count(DISTINCT session_date), count(DISTINCT version), count(*)
                               FROM normalized_ticks WHERE run_id = ?""", [outcome[1]])
        assert written == [(days, 1, 390 * days)]  # 390 minutes a day
        cli.assert_nothing_held()

    # The replay after the SIGKILL said, in one line, that it released the dead run.
    released = [line for line in outputs[signal.SIGTERM, False].splitlines() if killed in line]
    assert len(released) == 1 and "marked failed" in released[0] and "slot freed" in released[0], outputs
    assert {r.run_id: r.status for r in cli.runs()}[killed] == DagsterRunStatus.FAILURE

    code, out = cli.replay(*EIGHT_DAYS)
    assert code == 0, out
    assert "8 of 8 days replayed" in out
    cli.assert_nothing_held()


def test_user_errors_are_short_messages_that_leave_nothing_behind(tmp_path, flatfiles):
    cli = Cli(tmp_path, flatfiles)
    code, out = cli.replay(B, A)
    assert code != 0 and "reversed" in out and len(out.strip().splitlines()) <= 2, out
    assert not cli.db.exists() and not cli.home.exists()

    code, out = cli.replay(A, A, RISK_MAX_POSITION_SIZE="abc")
    assert code != 0 and "RISK_MAX_POSITION_SIZE" in out and len(out.strip().splitlines()) <= 3, out
    assert "Traceback" not in out

    missing = dt.date(2024, 3, 4), dt.date(2024, 3, 5)  # no files generated for March
    code, out = cli.replay(*missing)
    assert code != 0, out
    assert stocks_key(missing[0]) in out and "Traceback" not in out and "leaked" not in out, out
    assert len(out.strip().splitlines()) < 15, out
    assert "0 of 2 days replayed" in out
    assert not cli.db.exists()


@pytest.mark.parametrize("not_duckdb", ["a text file", "a folder"])
def test_a_duckdb_path_that_is_no_duckdb_file_is_named_with_the_reason(tmp_path, flatfiles, not_duckdb):
    """ALPHAGEN_DUCKDB_PATH at a file DuckDB cannot open: the replay's last lines and the
    report's one line name the file and DuckDB's reason (not Dagster's "Error occurred while
    executing op"), with no traceback, and the file is left as it was."""
    db = tmp_path / "alphagen.duckdb"
    if not_duckdb == "a folder":
        db.mkdir()
        reason = "Is a directory"
    else:
        db.write_text("not a database\n")
        reason = "not a valid DuckDB database file"
    cli = Cli(tmp_path, flatfiles, db=db)
    code, out = cli.replay(A, A)
    assert code == 1, out
    assert f"cannot open the DuckDB file {db}" in last_lines(out, 3) and reason in out, out
    assert "Error occurred while executing" not in out and "Traceback" not in out, out
    code, out = cli.run("report", timeout=60)
    assert code == 1 and len(out.strip().splitlines()) == 1, out
    assert out.startswith(f"Error: cannot open the DuckDB file {db}: ") and reason in out, out
    assert db.is_dir() if not_duckdb == "a folder" else db.read_text() == "not a database\n"


def test_a_full_disk_fails_the_replay_with_a_plain_message(tmp_path, flatfiles):
    assert os.geteuid() == 0, "mounting a small tmpfs needs root (developers and CI run as root here)"
    small = tmp_path / "small"
    small.mkdir()
    # 10 MB: the first day commits (a 2.6 MB file), the second does not fit.
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(small)],
                             capture_output=True, text=True, timeout=30)
    assert mounted.returncode == 0, f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
    try:
        cli = Cli(tmp_path, flatfiles, db=small / "alphagen.duckdb")
        code, out = cli.replay(FIRST, B)
        assert code != 0, out
        tail = last_lines(out, 4)
        assert "disk full (No space left on device)" in tail, out
        assert "cannot rollback" not in out.lower() and "Traceback" not in out and "leaked" not in out, out
        # The days before the disk filled stand, whole; the one it filled on left nothing.
        full = re.search(r"while replaying (\d{4}-\d\d-\d\d)", out)
        assert full, out
        days = [str(d) for d in (FIRST, dt.date(2024, 2, 6), FLAT, A, B)]
        landed = cli.query("SELECT DISTINCT session_date FROM normalized_ticks ORDER BY 1")
        assert [str(day) for (day,) in landed] == days[:days.index(full[1])]
    finally:
        subprocess.run(["umount", "-l", str(small)], check=True, timeout=30)


def test_a_dagster_home_that_is_a_file_is_one_line_and_left_alone(tmp_path, flatfiles):
    cli = Cli(tmp_path, flatfiles)
    cli.home.write_text("not a folder\n")
    code, out = cli.replay(A, A)
    assert code == 1 and out.strip() == f"Error: DAGSTER_HOME {cli.home} is a file, not a folder: point " \
        "DAGSTER_HOME at a folder (a new one is created)", out
    assert cli.home.read_text() == "not a folder\n" and not cli.db.exists()


def test_a_home_broken_by_an_old_concurrent_first_use_is_explained(tmp_path, flatfiles):
    """A home made before the lock, by two processes at once: alembic_version with two heads.
    The command says what happened and what to do, in a line, instead of Dagster's traceback."""
    cli = Cli(tmp_path, flatfiles)
    prepare = "from alphagen_dagster.instance import dagster_home; dagster_home()"
    subprocess.run([str(Path(sys.executable)), "-c", prepare], env=cli.env, check=True, timeout=120)
    with contextlib.closing(sqlite3.connect(cli.home / "history" / "runs.db")) as con:
        con.execute("INSERT INTO alembic_version VALUES ('0da417ae1b81')")  # a second, older head
        con.commit()
    code, out = cli.replay(A, A)
    assert code != 0
    assert "initialised by two processes at once" in out and f"mv {cli.home}" in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 2, out
    assert not cli.db.exists()
