"""The report's figures over a date range (the marts' macros over the range's rows of a real
DuckDB file of hand-made marts), its messages, and the equity curve's PNG."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from decimal import Decimal

import polars as pl
import pytest

from alphagen_core.application.chart import performance_chart_png, performance_figure
from alphagen_core.persistence.store import Store
from alphagen_dagster.report import (
    ReportError,
    Selection,
    open_marts,
    performance_png,
    read_performance,
    stats_markdown,
    stats_text,
)
from tests.hand_marts import write_hand_marts

pytestmark = pytest.mark.unit

D = dt.date
CAPITAL = 5_000_000
ROOT_252 = math.sqrt(252)


@pytest.fixture
def marts(tmp_path) -> Store:
    return Store(write_hand_marts(tmp_path / "marts.duckdb"))


def summary_of(store: Store, selection: Selection, **key) -> dict:
    rows = read_performance(store, selection).summary.filter(**key).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def test_a_range_restarts_the_curve_and_its_peak_at_its_first_session(marts):
    # replay/base from 2024-01-04: d = 30, -60, 0; round trips +30 (take_profit), -60 (close)
    s = summary_of(marts, Selection(start=D(2024, 1, 4), end=D(2024, 1, 8)), mode="replay", variant="base")
    d = [30, -60, 0]
    assert (s["first_date"], s["last_date"], s["sessions"]) == (D(2024, 1, 4), D(2024, 1, 8), 3)
    assert (s["trades"], s["wins"], s["losses"]) == (2, 1, 1)
    assert (s["win_rate"], s["avg_win"], s["avg_loss"]) == (0.5, Decimal("30.00"), Decimal("-60.00"))
    assert (s["profit_factor"], s["expectancy"], s["total_pnl"]) == (0.5, Decimal("-15.00"), Decimal("-30.00"))
    # cumulative 30, -30, -30 from a peak of 30; over every session the drawdown is -110
    assert s["max_drawdown"] == Decimal("-60.00")
    assert (s["best_day"], s["worst_day"]) == (Decimal("30.00"), Decimal("-60.00"))
    assert s["sharpe"] == round(statistics.mean(d) / statistics.stdev(d) * ROOT_252, 4)
    assert s["sortino"] == round(statistics.mean(d) / math.sqrt(sum(min(x, 0) ** 2 for x in d) / 3) * ROOT_252, 4)
    assert s["return_on_capital"] == round(-30 / CAPITAL, 6)
    assert (s["exits_take_profit"], s["exits_close"], s["exits_stop_loss"], s["exits_reversal"]) == (1, 1, 0, 0)
    curve = read_performance(marts, Selection(modes=("replay",), variants=("base",), start=D(2024, 1, 4))).curves
    assert curve["cumulative_pnl"].cast(pl.Float64).to_list() == [30, -30, -30]
    assert curve["drawdown"].cast(pl.Float64).to_list() == [0, -60, -60]
    whole = summary_of(marts, Selection(), mode="replay", variant="base")
    assert whole["max_drawdown"] == Decimal("-110.00")


def test_one_session_has_no_deviation_so_no_sharpe(marts):
    s = summary_of(marts, Selection(start=D(2024, 1, 5), end=D(2024, 1, 5)), mode="replay", variant="base")
    assert (s["sessions"], s["trades"], s["wins"], s["losses"]) == (1, 1, 0, 1)
    assert s["sharpe"] is None
    assert s["sortino"] == round(-60 / 60 * ROOT_252, 4)
    assert (s["win_rate"], s["profit_factor"], s["avg_win"]) == (0.0, 0.0, None)
    assert (s["max_drawdown"], s["best_day"], s["worst_day"]) == (Decimal("-60.00"),) * 3


def test_no_trades_and_a_flat_curve_leave_every_ratio_undefined(marts):
    s = summary_of(marts, Selection(start=D(2024, 1, 1), end=D(2024, 1, 31)), mode="paper")
    assert (s["sessions"], s["trades"], s["total_pnl"], s["max_drawdown"]) == (2, 0, Decimal("0.00"), Decimal("0.00"))
    for ratio in ("win_rate", "avg_win", "avg_loss", "profit_factor", "expectancy", "sharpe", "sortino"):
        assert s[ratio] is None, ratio
    assert s["exits_take_profit"] == 0


def test_no_losses_leave_profit_factor_and_sortino_undefined(marts):
    s = summary_of(marts, Selection(start=D(2024, 1, 2)), mode="live")
    assert (s["wins"], s["losses"], s["avg_loss"], s["profit_factor"], s["sortino"]) == (2, 0, None, None, None)
    assert s["sharpe"] == round(75 / statistics.stdev([100, 50]) * ROOT_252, 4)
    assert (s["exits_take_profit"], s["exits_flatten"]) == (1, 1)


def test_variants_side_by_side_and_the_selection(marts):
    frame = read_performance(marts, Selection(modes=("replay",), start=D(2024, 1, 2), end=D(2024, 1, 3)))
    assert frame.summary.select("variant", "trades", "total_pnl").rows() == [
        ("base", 3, Decimal("20.00")), ("wide_stop", 1, Decimal("40.00"))]
    only = read_performance(marts, Selection(variants=("wide_stop",)))
    assert only.summary.select("mode", "variant").rows() == [("replay", "wide_stop")]
    assert only.curves["trade_date"].to_list() == [D(2024, 1, 2), D(2024, 1, 3)]


def test_marts_of_an_earlier_version_ask_for_a_rebuild_before_a_range(tmp_path):
    store = Store(write_hand_marts(tmp_path / "old.duckdb", before_variants=True))
    with pytest.raises(ReportError, match=r"no trading_capital in daily_pnl.*alphagen replay"):
        read_performance(store, Selection(start=D(2024, 1, 2), end=D(2024, 1, 3)))


def test_return_on_capital_is_on_the_capital_each_variant_ran_with(marts):
    for variant, capital in (("base", 5_000_000), ("wide_stop", 1_000_000)):
        for selection in (Selection(), Selection(start=D(2024, 1, 2), end=D(2024, 1, 3))):
            s = summary_of(marts, selection, mode="replay", variant=variant)
            assert s["return_on_capital"] == round(float(s["total_pnl"]) / capital, 6), (variant, selection)


def test_the_whole_range_equals_the_mart(marts):
    every_day = Selection(start=D(2024, 1, 1), end=D(2024, 12, 31))
    assert read_performance(marts, every_day).summary.equals(read_performance(marts, Selection()).summary)


@pytest.mark.parametrize(("selection", "message"), [
    (Selection(variants=("tight", "base")), "unknown variant(s) tight; the marts hold: base, wide_stop"),
    (Selection(start=D(2025, 1, 1)), "no sessions between 2025-01-01 and the last session "
                                     "(the marts hold 2024-01-02 .. 2024-01-08)"),
    (Selection(modes=("paper",), variants=("wide_stop",)), "no sessions of mode paper of variant wide_stop "
                                                           "(the marts hold 2024-01-02 .. 2024-01-08)"),
])
def test_a_selection_with_nothing_in_it_says_what_the_marts_hold(marts, selection, message):
    with pytest.raises(ReportError) as raised:
        read_performance(marts, selection)
    assert str(raised.value) == message


@pytest.mark.parametrize(("args", "message"), [
    (("--stats", "--start", "2024-02-01", "--end", "2024-01-01"), "--start 2024-02-01 is after --end 2024-01-01"),
    (("--variant", "base"), "--variant, --start, --end and --png go with --stats"),
    (("--png", "x.png"), "--variant, --start, --end and --png go with --stats"),
])
def test_the_report_command_refuses_options_that_do_not_fit(args, message):
    from click.testing import CliRunner

    from alphagen_dagster.cli import report

    done = CliRunner().invoke(report, list(args))
    assert done.exit_code == 2 and done.output.splitlines()[-1] == f"Error: {message}"


def test_without_a_file_or_marts_it_says_to_replay_first(tmp_path):
    with pytest.raises(ReportError, match="no P/L marts yet: run `alphagen replay`"):
        open_marts(tmp_path / "missing.duckdb")
    assert not (tmp_path / "missing.duckdb").exists()
    with pytest.raises(ReportError, match="no P/L marts yet"):
        read_performance(Store(tmp_path / "empty.duckdb"), Selection())


def test_text_and_markdown_put_the_variants_side_by_side_and_the_exits_apart(marts):
    summary = read_performance(marts, Selection(modes=("replay",))).summary
    text = stats_text(summary).splitlines()
    assert text[0].split() == ["replay/base", "replay/wide_stop"]
    assert text[text.index("exits by reason") + 1].split() == ["take_profit", "2", "1"]
    assert next(line for line in text if line.startswith("total_pnl")).split()[1:] == ["-10.00", "40.00"]
    markdown = stats_markdown(summary).splitlines()
    assert markdown[0] == "| figure | replay/base | replay/wide_stop |"
    assert "| exits: stop_loss | 1 | 0 |" in markdown and "| total_pnl | -10.00 | 40.00 |" in markdown


CURVES = {"replay/base": [(D(2024, 1, 2), 100.0, 0.0), (D(2024, 1, 3), 20.0, -80.0), (D(2024, 1, 4), 50.0, -50.0)],
          "paper/base": [(D(2024, 1, 2), 0.0, 0.0), (D(2024, 1, 3), -10.0, -10.0)]}


def test_the_chart_is_the_same_file_for_the_same_curves_and_another_for_others():
    first = performance_chart_png(CURVES)
    assert first.startswith(b"\x89PNG") and b"Software" not in first
    assert performance_chart_png(CURVES) == first
    moved = {**CURVES, "paper/base": [(D(2024, 1, 2), 0.0, 0.0), (D(2024, 1, 3), -11.0, -11.0)]}
    assert performance_chart_png(moved) != first


def test_the_chart_draws_each_curve_above_its_drawdown():
    import matplotlib.pyplot as plt

    fig = performance_figure(CURVES)
    try:
        equity, drawdown = fig.axes
        assert equity.get_ylabel() == "cumulative P/L ($)" and drawdown.get_ylabel() == "drawdown ($)"
        lines = {line.get_label(): line for line in equity.get_lines() if not line.get_label().startswith("_")}
        assert set(lines) == set(CURVES)
        assert list(lines["replay/base"].get_ydata()) == [100.0, 20.0, 50.0]
        below = {line.get_label(): list(line.get_ydata()) for line in drawdown.get_lines()
                 if not line.get_label().startswith("_")}
        assert below == {"replay/base": [0.0, -80.0, -50.0], "paper/base": [0.0, -10.0]}
        assert [t.get_text() for t in equity.get_legend().get_texts()] == ["replay/base", "paper/base"]
    finally:
        plt.close(fig)


def test_the_report_chart_has_a_line_per_mode_and_variant(marts):
    curves = read_performance(marts, Selection(modes=("replay",))).curves
    png = performance_png(curves)
    assert png == performance_png(curves) and png != performance_png(curves.filter(pl.col("variant") == "base"))


def test_a_report_that_cannot_be_made_is_a_warning_and_the_materialization_stays_as_dbt_gave_it(tmp_path, capfd):
    from dagster import MetadataValue, Output, build_asset_context

    from alphagen_core.operations.settings import Settings
    from alphagen_dagster.dbt import with_performance

    output = Output(None, output_name="performance_summary", metadata={"invocation_id": MetadataValue.text("x")})
    settings = Settings(alphagen_chart_dir=tmp_path / "charts")
    with build_asset_context() as context:
        events = list(with_performance(context, [output], Store(tmp_path / "no-marts.duckdb"), settings))
    assert len(events) == 1 and set(events[0].metadata) == {"invocation_id"}
    warning = "WARNING - system - performance_summary is built, but its figures and chart are not attached: "
    assert warning + "no P/L marts yet" in capfd.readouterr().err
    assert not (tmp_path / "charts").exists()


def test_the_materialization_carries_the_table_and_the_chart(marts, tmp_path):
    from dagster import Output, build_asset_context

    from alphagen_core.operations.settings import Settings
    from alphagen_dagster.dbt import with_performance

    settings = Settings(alphagen_chart_dir=tmp_path / "charts")
    with build_asset_context() as context:
        [event] = with_performance(context, [Output(None, output_name="performance_summary")], marts, settings)
    png = tmp_path / "charts" / "performance.png"
    assert event.metadata["equity_curve_png"].value == str(png)
    assert event.metadata["performance"].value.splitlines()[0] == (
        "| figure | live/base | paper/base | replay/base | replay/wide_stop |")
