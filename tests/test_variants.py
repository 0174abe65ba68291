"""Named variants end to end: generated sessions replayed by the `alphagen` CLI under a variant
and then under base, into one DuckDB file, with dbt's marts per (mode, variant) checked against
figures computed here from `daily_pnl` and `trades`, and the versions table read back."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from alphagen_core.operations.variants import VARIANT_KEYS
from alphagen_core.sim.sample import generate
from tests.test_dbt_pnl import recomputed_summary, summary_figures
from tests.test_replay_cli import Cli

pytestmark = [pytest.mark.e2e, pytest.mark.spare_cpu]

FIRST, LAST = dt.date(2024, 11, 25), dt.date(2024, 11, 27)  # three sessions
VARIANT, STOP = "stop_1.5", "1.5"  # a tighter stop than base's 2.0
ALL_FIGURES = ("sessions", "trades", "wins", "losses", "total_pnl", "max_drawdown", "win_rate",
               "profit_factor", "expectancy", "sharpe", "sortino", "return_on_capital", "exits_stop_loss")


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Cli:
    """The variant replayed first, then base over the same days: each must keep its own."""
    root = tmp_path_factory.mktemp("variants")
    generate(FIRST, LAST, root / "flatfiles")
    cli = Cli(root / "user", root / "flatfiles")
    code, out = cli.run("replay", "--start", str(FIRST), "--end", str(LAST), "--source", str(cli.source),
                        "--variant", VARIANT, "--set", f"RISK_STOP_LOSS_MULTIPLE={STOP}")
    assert code == 0, out
    code, out = cli.replay(FIRST, LAST)
    assert code == 0, out
    return cli


def rows(cli: Cli, sql: str, params: list[object] | None = None) -> list[dict]:
    with duckdb.connect(str(cli.db), read_only=True) as con:
        result = con.execute(sql, params)
        names = [d[0] for d in result.description]
        return [dict(zip(names, r)) for r in result.fetchall()]


def test_each_variant_keeps_every_day_and_its_own_figures(cli):
    daily = rows(cli, "SELECT variant, trade_date, realized_pnl FROM daily_pnl WHERE mode = 'replay' "
                      "ORDER BY variant, trade_date")
    days = {v: [r["trade_date"] for r in daily if r["variant"] == v] for v in ("base", VARIANT)}
    assert days == {"base": [FIRST, dt.date(2024, 11, 26), LAST], VARIANT: [FIRST, dt.date(2024, 11, 26), LAST]}
    pnl = {v: [r["realized_pnl"] for r in daily if r["variant"] == v] for v in days}
    assert pnl["base"] != pnl[VARIANT]  # a tighter stop trades differently on these days


@pytest.mark.parametrize("variant", ["base", VARIANT])
def test_performance_summary_of_each_variant_recomputes_from_its_daily_pnl_and_trades(cli, variant):
    selected = "mode = 'replay' AND variant = ?"
    daily = rows(cli, f"SELECT trade_date, realized_pnl FROM daily_pnl WHERE {selected} ORDER BY trade_date",
                 [variant])
    trades = rows(cli, f"SELECT pnl, exit_reason FROM trades WHERE {selected}", [variant])
    [summary] = rows(cli, f"SELECT * FROM performance_summary WHERE {selected}", [variant])
    curve = rows(cli, f"SELECT cumulative_pnl, peak, drawdown FROM equity_curve WHERE {selected} "
                      "ORDER BY trade_date", [variant])
    expected_curve, expected = recomputed_summary(daily, trades)
    assert set(expected) == set(ALL_FIGURES)
    assert expected["trades"] > 0 and expected["losses"] > 0  # every ratio is defined on these days
    assert [(float(c["cumulative_pnl"]), float(c["peak"]), float(c["drawdown"])) for c in curve] == expected_curve
    assert summary_figures(summary, expected) == pytest.approx(expected, abs=1e-4)


def test_the_versions_rows_hold_what_each_variant_ran_with(cli):
    versions = rows(cli, "SELECT session_date, version, variant, settings, code_version FROM versions "
                         "WHERE mode = 'replay' ORDER BY variant, session_date")
    assert [(r["variant"], r["session_date"]) for r in versions] == [
        (v, d) for v in ("base", VARIANT) for d in (FIRST, dt.date(2024, 11, 26), LAST)]
    base, variant = ({r["session_date"]: json.loads(r["settings"]) for r in versions if r["variant"] == v}
                     for v in ("base", VARIANT))
    assert all(set(s) == set(VARIANT_KEYS) for s in [*base.values(), *variant.values()])
    assert {s["RISK_STOP_LOSS_MULTIPLE"] for s in base.values()} == {2.0}
    assert {s["RISK_STOP_LOSS_MULTIPLE"] for s in variant.values()} == {1.5}
    assert {json.dumps({**s, "RISK_STOP_LOSS_MULTIPLE": 2.0}, sort_keys=True) for s in variant.values()} == {
        json.dumps(s, sort_keys=True) for s in base.values()}  # nothing else changed
    assert len({r["code_version"] for r in versions}) == 1
    # each row names the version the marts read for its variant and day
    marts = rows(cli, "SELECT variant, trade_date AS session_date, version FROM daily_pnl ORDER BY variant, trade_date")
    assert marts == [{k: r[k] for k in ("variant", "session_date", "version")} for r in versions]


def test_report_shows_each_variant_apart(cli):
    code, out = cli.run("report", timeout=60)
    assert code == 0, out
    totals = [line.split()[:3] for line in out.splitlines() if line.startswith("total")]
    assert totals == [["total", "replay", "base"], ["total", "replay", VARIANT]]


def test_chart_draws_a_variants_day_and_names_a_missing_one(cli, tmp_path):
    out = tmp_path / "variant.png"
    code, text = cli.run("chart", "--for-date", str(FIRST), "--variant", VARIANT, "--out", str(out), timeout=60)
    assert code == 0 and out.read_bytes().startswith(b"\x89PNG"), text
    code, text = cli.run("chart", "--for-date", str(FIRST), "--variant", "never_replayed", timeout=60)
    assert code == 1 and f"no replay data of variant never_replayed for {FIRST}" in text


def test_a_sweep_replays_each_combination_as_a_variant_in_one_run(cli, tmp_path):
    """Each of the sweep's variants gets the figures a replay of it alone got (the module's
    replays: the variant with stop 1.5, and base, whose stop is 2.0)."""
    sweep = Cli(tmp_path, cli.source)
    code, out = sweep.run("replay", "--start", str(FIRST), "--source", str(cli.source),
                          "--sweep", f"RISK_STOP_LOSS_MULTIPLE={STOP},2")
    assert code == 0, out
    names = ["risk_stop_loss_multiple=1.5", "risk_stop_loss_multiple=2"]
    assert [line.split(": ")[0].split(") ")[-1] for line in out.splitlines() if "round trips" in line] == names
    assert len(sweep.runs()) == 1
    day = "SELECT variant, realized_pnl, fees, trades, wins, losses FROM daily_pnl WHERE trade_date = ? ORDER BY variant"
    swept = [{**r, "variant": None} for r in rows(sweep, day, [FIRST])]
    alone = {r["variant"]: {**r, "variant": None} for r in rows(cli, day, [FIRST])}
    assert swept == [alone[VARIANT], alone["base"]]
    versions = rows(sweep, "SELECT variant, version, settings FROM versions ORDER BY variant")
    assert [r["variant"] for r in versions] == names and len({r["version"] for r in versions}) == 2
    assert [json.loads(r["settings"])["RISK_STOP_LOSS_MULTIPLE"] for r in versions] == [1.5, 2.0]
    # the day's partition in the UI: each variant's figures, and the rows of all of them
    with DagsterInstance.from_config(str(sweep.home)) as instance:
        (event,) = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("executions"), asset_partitions=[str(FIRST)]), limit=1).records
    meta = event.asset_materialization.metadata
    by_variant = meta["by_variant"].value
    daily = {r["variant"]: r for r in rows(sweep, day, [FIRST])}
    assert set(by_variant) == set(names) == set(daily)
    for name in names:
        assert by_variant[name] == {"round_trips": daily[name]["trades"],
                                    "realized_pnl": pytest.approx(float(daily[name]["realized_pnl"]))}
    assert meta["rows"].value == rows(sweep, "SELECT count(*) AS n FROM executions WHERE session_date = ?",
                                      [FIRST])[0]["n"]


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "RISK_STOP_LOSS_MULTIPLE=3"], "--set needs --variant NAME"),
    (["--variant", "x", "--sweep", "RISK_STOP_LOSS_MULTIPLE=1.5,3"], "--sweep names its own variants"),
    (["--variant", "x", "--set", "POLYGON_API_KEY=sentinel-0042"], "not a strategy or risk setting: POLYGON_API_KEY"),
    (["--variant", "x", "--set", "RISK_STOP_LOSS_MULTIPLE=0.5"],
     "invalid setting RISK_STOP_LOSS_MULTIPLE: Input should be greater than 1"),
    (["--variant", "base", "--set", "RISK_STOP_LOSS_MULTIPLE=3"], "variant 'base' is the environment's settings"),
])
def test_a_variant_that_cannot_run_is_a_usage_error_before_anything_starts(tmp_path, args, message):
    cli = Cli(tmp_path, tmp_path / "no-flatfiles")
    code, out = cli.run("replay", "--start", str(FIRST), *args, timeout=60)
    assert code == 2 and f"Error: {message}" in out, out
    assert "sentinel-0042" not in out
    assert not cli.home.exists() and not cli.db.exists()
