"""`alphagen replay` refused or stopped by what a user or a machine got wrong: a reversed range,
a bad setting, missing files, a path DuckDB cannot open, a full disk, a Dagster home that is a
file or was broken before the lock. Each is a short message, no traceback, and leaves nothing
half-made. Real processes of the installed CLI, as in test_replay_cli.py (whose helpers these
are)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from alphagen_core.adapters.polygon.flatfiles import stocks_key
from tests.test_replay_cli import FIRST, FLAT, A, B, Cli, last_lines, write_flatfiles

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def flatfiles(tmp_path_factory) -> Path:
    return write_flatfiles(tmp_path_factory.mktemp("flatfiles"), old_week=False)


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
