"""`alphagen replay` and `alphagen report` as a user runs them: real processes of the installed
CLI, sample flat files on disk, a real DuckDB file and a real Dagster home, each process
bounded by a timeout. Every test here stands for a failure a user saw before the fix."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import os
import re
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import duckdb
import polars as pl
import pytest

from alphagen_core.adapters.polygon.flatfiles import options_key, stocks_key
from alphagen_core.sim.sample import generate
from tests.processes import clean_environ, venv_bin

pytestmark = [pytest.mark.e2e, pytest.mark.spare_cpu]

ALPHAGEN = venv_bin("alphagen")
FIRST, LAST = dt.date(2024, 2, 5), dt.date(2024, 2, 16)
FLAT = dt.date(2024, 2, 7)  # QQQ does not move all day: no crossover, no trade
A, B = dt.date(2024, 2, 8), dt.date(2024, 2, 9)
EIGHT_DAYS = (FIRST, dt.date(2024, 2, 14))
OLD = (dt.date(2016, 3, 7), dt.date(2016, 3, 11))  # QQQ lists Friday expiries only: 2016-03-11
REPLAY_TIMEOUT = 180


class Cli:
    """One user's setup: a Dagster home, a DuckDB file, caches, all under `root` (none created
    until a command creates them), and the CLI run from `root` (no project .env)."""

    def __init__(self, root: Path, source: Path, db: Path | None = None, **env: str) -> None:
        self.root, self.source = root, source
        root.mkdir(parents=True, exist_ok=True)
        self.home, self.db = root / "dagster_home", db or root / "alphagen.duckdb"
        self.env = clean_environ(DAGSTER_HOME=str(self.home), ALPHAGEN_DUCKDB_PATH=str(self.db),
                                 ALPHAGEN_CACHE_DIR=str(root / "cache"), ALPHAGEN_CHART_DIR=str(root / "charts"),
                                 FEATURE_ENABLE_CHART="false", **env)

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen([ALPHAGEN, *args], env={**self.env, **env}, cwd=self.root, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def run(self, *args: str, timeout: float = REPLAY_TIMEOUT, **env: str) -> tuple[int, str]:
        """Exit code and everything printed (stdout and stderr, in order) until the output closes."""
        proc = self.popen(*args, **env)
        return finish(proc, timeout)

    def replay(self, start: dt.date, end: dt.date, source: Path | None = None, **env: str) -> tuple[int, str]:
        return self.run("replay", "--start", str(start), "--end", str(end), "--source", str(source or self.source),
                        **env)

    def report(self, day: dt.date | None = None) -> dict[str, tuple[int, float]]:
        code, out = self.run("report", *(["--for-date", str(day)] if day else []), timeout=60)
        assert code == 0, out
        return report_rows(out)

    def query(self, sql: str, params: list[object] | None = None) -> list[tuple]:
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute(sql, params).fetchall()

    def runs(self) -> list:
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(self.home)) as instance:
            return list(instance.get_runs())

    def assert_nothing_held(self) -> None:
        """No run left STARTED (or starting, or canceling), and the DuckDB pool's slot free."""
        from dagster import DagsterInstance, DagsterRunStatus

        unfinished = {DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.CANCELING}
        with DagsterInstance.from_config(str(self.home)) as instance:
            assert [(r.run_id, r.status) for r in instance.get_runs() if r.status in unfinished] == []
            assert instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots == []


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"{proc.args} did not end within {timeout}s; its output:\n{out}")
    return proc.returncode, out


def report_rows(text: str) -> dict[str, tuple[int, float]]:
    """`alphagen report`'s rows of base: date -> (trades, realized P/L)."""
    rows = {}
    for line in text.splitlines():
        if m := re.match(r"(\d{4}-\d\d-\d\d)\s+replay\s+base\s+(\d+)\s+\d+\s+\d+\s+[-\d,.]+\s+([-\d,.]+)$", line):
            rows[m[1]] = (int(m[2]), float(m[3].replace(",", "")))
    return rows


def last_lines(text: str, n: int) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def flatten_qqq(root: Path, day: dt.date, price: float = 480.0) -> None:
    """Rewrite the day's stocks file with QQQ's open, high, low and close all one price."""
    path = root / stocks_key(day)
    frame = pl.read_csv(path)
    is_qqq = pl.col("ticker") == "QQQ"
    frame = frame.with_columns(pl.when(is_qqq).then(pl.lit(price)).otherwise(pl.col(c)).alias(c)
                               for c in ("open", "high", "low", "close"))
    assert frame.columns == ["ticker", "volume", "open", "close", "high", "low", "window_start", "transactions"]
    with gzip.open(path, "wb") as out:
        frame.write_csv(out)


def write_flatfiles(root: Path, *, old_week: bool = True) -> Path:
    """The sample days FIRST .. LAST with FLAT made flat, and (old_week) the week of 2016."""
    generate(FIRST, LAST, root)
    if old_week:
        generate(*OLD, root)
    flatten_qqq(root, FLAT)
    return root


@pytest.fixture(scope="module")
def flatfiles(tmp_path_factory) -> Path:
    return write_flatfiles(tmp_path_factory.mktemp("flatfiles"))


@pytest.fixture(scope="module")
def crowded_home(tmp_path_factory, flatfiles):
    """A new Dagster home that two replays of FLAT .. B start on at once, then a third replay
    in it: the week of 2016 (shared by the new-home, no-trade, corrupt-day and before-2024
    tests)."""
    cli = Cli(tmp_path_factory.mktemp("crowded"), flatfiles)
    together = [cli.popen("replay", "--start", str(FLAT), "--end", str(B), "--source", str(flatfiles))
                for _ in range(2)]
    together = [finish(proc, REPLAY_TIMEOUT) for proc in together]
    return cli, together, cli.replay(*OLD)


@pytest.fixture(scope="module")
def quiet_day_replayed(crowded_home):
    """FLAT .. B replayed (twice, at once) into a new DuckDB file, beside the week of 2016."""
    cli, together, _ = crowded_home
    return cli, *together[0]


def test_a_day_without_a_crossover_replays_and_the_marts_are_built(quiet_day_replayed):
    cli, code, out = quiet_day_replayed
    assert code == 0, out
    assert "3 of 3 days replayed" in out
    assert cli.query("SELECT count(*) FROM signals WHERE session_date = ?", [FLAT]) == [(0,)]
    assert cli.query("SELECT count(*) FROM executions WHERE session_date = ?", [FLAT]) == [(0,)]
    rows = cli.report()
    assert rows[str(FLAT)] == (0, 0.0)
    assert rows[str(A)][0] > 0 and rows[str(B)][0] > 0
    assert cli.query("SELECT count(*) FROM daily_pnl WHERE trade_date BETWEEN ? AND ?", [FLAT, B]) == [(3,)]
    # the quiet day counts as a session with 0 in the performance summary (the spec): every
    # replayed day (the week of 2016 too) is a session
    code, stats = cli.run("report", "--stats", timeout=60)
    assert code == 0, stats
    figures = dict(parts for line in stats.splitlines()[1:] if len(parts := line.split(None, 1)) == 2)
    assert len(rows) == 8 and figures["sessions"].strip() == "8" and figures["worst_day"].strip() != "-"
    assert figures["trades"].strip() == f"{sum(trades for trades, _ in rows.values()):,}"


def test_days_before_2024_replay_with_their_listed_expiry(tmp_path, flatfiles, crowded_home):
    cli, _, (code, out) = crowded_home
    assert code == 0, out
    assert "5 of 5 days replayed" in out
    symbols = cli.query("SELECT DISTINCT session_date, option_symbol FROM executions WHERE session_date < ?",
                        [FIRST])
    assert {str(day) for day, _ in symbols} == {f"2016-03-{d:02d}" for d in range(7, 12)}
    assert [s for _, s in symbols if not re.fullmatch(r"O:QQQ160311[CP]\d{8}", s)] == []
    assert [day for day in cli.report() if day.startswith("2016")] == [f"2016-03-{d:02d}" for d in range(7, 12)]

    later = Cli(tmp_path, flatfiles)
    code, out = later.replay(*OLD, ALPHAGEN_FLATFILES_FIRST_DAY="2017-01-03")
    assert code != 0
    assert len(out.strip().splitlines()) == 1 and "ALPHAGEN_FLATFILES_FIRST_DAY" in out, out
    assert not later.db.exists()


def test_a_corrupt_day_fails_alone_and_a_new_version_of_the_other_wins(tmp_path, flatfiles, quiet_day_replayed):
    cli, code, _ = quiet_day_replayed
    assert code == 0
    before = cli.report()
    x = before[str(A)][1]
    second = tmp_path / "second"
    generate(A, A, second, seed=8)  # another day A
    for key in (stocks_key(B), options_key(B)):
        (second / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flatfiles / key, second / key)
    broken = second / options_key(B)
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])

    code, out = cli.replay(A, B, second)
    assert code == 1, out
    tail = last_lines(out, 3)
    assert str(B) in tail and options_key(B) in tail, out
    y = cli.report(A)[str(A)][1]
    assert y != x
    (contrib,) = cli.query(
        """SELECT round(sum(pnl_contrib), 2) FROM executions
           WHERE mode = 'replay' AND session_date = $day AND status = 'FILLED' AND version =
                 (SELECT max(version) FROM normalized_ticks WHERE mode = 'replay' AND session_date = $day)""",
        {"day": A},
    )[0]
    assert y == contrib
    assert cli.report(B)[str(B)] == before[str(B)]  # the corrupt day kept its previous version


def test_two_replays_started_together_on_a_new_home(crowded_home):
    cli, together, third = crowded_home
    assert [code for code, _ in together] == [0, 0], together
    assert third[0] == 0, third[1]
    stamps = {}
    for db in cli.home.rglob("*.db"):
        with contextlib.closing(sqlite3.connect(db)) as con:
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchall():
                stamps[str(db.relative_to(cli.home))] = con.execute("SELECT * FROM alembic_version").fetchall()
    assert {"history/runs.db", "history/runs/index.db", "schedules/schedules.db"} <= stamps.keys()
    assert {name: len(rows) for name, rows in stamps.items() if len(rows) != 1} == {}
