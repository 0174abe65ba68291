"""`alphagen replay` stopped as a user stops it: killed by each signal a user sends, then run
again. Real processes of the installed CLI, as in test_replay_cli.py (whose helpers these are);
a module of its own so that its long chain of replays runs beside that module's (and the
refusals of test_replay_cli_refusals.py beside it). Not spare_cpu: a stopped replay has a minute
to build its marts, one dbt run per model during US market hours (the live window), which a
starved moment beside the simulated sessions can exceed."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.test_replay_cli import (
    EIGHT_DAYS,
    REPLAY_TIMEOUT,
    Cli,
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
