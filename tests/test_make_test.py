"""One `make test` at a time on a machine: a second one (another terminal, another clone)
waits for the first, saying so, since the simulated sessions' deadlines assume the CPU is
theirs. The script is run from a copy in an empty folder, so that were it not to wait it
would find no `.venv` and end at once instead of starting a second suite."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.processes import PROJECT_DIR, clean_environ

pytestmark = pytest.mark.integration


def _script_in(folder) -> str:
    """A copy of scripts/test.sh in `folder`, which has no `.venv`."""
    (folder / "scripts").mkdir()
    return str(shutil.copy(PROJECT_DIR / "scripts" / "test.sh", folder / "scripts" / "test.sh"))


def test_a_second_make_test_waits_for_the_first_and_says_whose_turn_it_is(tmp_path):
    lock = tmp_path / "make-test.lock"
    with open(lock, "w") as held:  # the first make test
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        second = subprocess.Popen(["bash", _script_in(tmp_path)], cwd=tmp_path,
                                  env=clean_environ(ALPHAGEN_TESTS_LOCK=str(lock)), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            first_line = second.stdout.readline()
            time.sleep(1.0)
            still_waiting = second.poll() is None
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    try:
        rest, _ = second.communicate(timeout=60)  # its turn: no .venv here, so it ends at once
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    assert "another make test (pid 4242) is running on this machine" in first_line, first_line
    assert still_waiting, rest
    assert second.returncode != 0 and ".venv/bin/python" in rest, rest
    assert lock.read_text().strip() == str(second.pid)  # the lock now names the second


def test_a_lock_file_that_cannot_be_opened_is_named_and_nothing_runs(tmp_path):
    lock = tmp_path / "no-such-folder" / "make-test.lock"
    done = subprocess.run(["bash", _script_in(tmp_path)], cwd=tmp_path,
                          env=clean_environ(ALPHAGEN_TESTS_LOCK=str(lock)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert done.stdout.strip().splitlines()[-1] == \
        f"make test: cannot open its lock file {lock} (is TMPDIR a writable folder?)", done.stdout
    assert "another make test" not in done.stdout and ".venv" not in done.stdout + done.stderr
