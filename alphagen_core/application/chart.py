"""The charts: the day's (QQQ, session VWAP and MA9, with entries and exits marked) and the
performance chart (the equity curve of each mode and variant, its drawdown below it)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from alphagen_core.domain.models import Action, Execution, NormalizedTick, OrderStatus

# One point of an equity curve: (trade_date, cumulative P/L, drawdown), dollars.
CurvePoint = tuple[dt.date, float, float]


def write_day_chart(day: dt.date, ticks: Sequence[NormalizedTick], executions: Sequence[Execution],
                    path: str) -> str:
    """Render the day's chart into `path` (a PNG); returns the path. Picklable, so a replay
    can render its charts in a worker process beside the replay itself."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(day_chart_png(day, ticks, executions))
    return str(out)


def _pyplot():
    # Imported here: matplotlib costs about a second, and Dagster re-imports the code location
    # for every run.
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    """The figure as PNG bytes, the same bytes for the same picture: no Software entry (the
    matplotlib version) in the file's metadata."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def performance_figure(curves: Mapping[str, Sequence[CurvePoint]]):
    """Cumulative P/L per curve (a line each, labelled by the mapping's key) over the drawdown
    panel (the same colours); fixed size and margins, so equal data draws equal pixels. The
    caller closes the figure."""
    plt = _pyplot()
    import matplotlib.dates as mdates
    from matplotlib.ticker import StrMethodFormatter

    fig, (equity, drawdown) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), dpi=80,
                                           gridspec_kw={"height_ratios": [2, 1]})
    fig.subplots_adjust(left=0.1, right=0.98, top=0.93, bottom=0.1, hspace=0.08)
    for label, points in curves.items():
        days = [p[0] for p in points]
        line, = equity.plot(days, [p[1] for p in points], lw=1.4, marker="o", ms=3, label=label)
        drawdown.fill_between(days, [p[2] for p in points], 0, alpha=0.3, color=line.get_color())
        drawdown.plot(days, [p[2] for p in points], lw=1, color=line.get_color(), label=label)
    equity.set_title("Equity curve (cumulative realized P/L) and drawdown")
    equity.set_ylabel("cumulative P/L ($)")
    drawdown.set_ylabel("drawdown ($)")
    for ax in (equity, drawdown):
        ax.axhline(0, color="#888", lw=0.8)
        ax.grid(alpha=0.3)
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    drawdown.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    equity.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


def performance_chart_png(curves: Mapping[str, Sequence[CurvePoint]]) -> bytes:
    plt = _pyplot()
    fig = performance_figure(curves)
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def day_chart_png(day: dt.date, ticks: Sequence[NormalizedTick], executions: Sequence[Execution]) -> bytes:
    plt = _pyplot()
    import matplotlib.dates as mdates

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=90)
    # Fixed margins and the legend in a row under the plot: tight_layout and loc="best" were
    # half of the render time (a chart a day, in a worker beside the replay).
    fig.subplots_adjust(left=0.07, right=0.98, top=0.92, bottom=0.16)
    try:
        times = [t.period_start for t in ticks]
        ax.plot(times, [t.underlying_price for t in ticks], color="#444", lw=1, label="QQQ close")
        ax.plot(times, [t.vwap for t in ticks], color="#1f77b4", lw=1.2, label="session VWAP")
        ax.plot(times, [t.ma9 for t in ticks], color="#ff7f0e", lw=1.2, label="MA9")
        price_at = {t.period_start: t.underlying_price for t in ticks}
        fills = [e for e in executions if e.status is OrderStatus.FILLED]
        for action, marker, color, label in (
            (Action.SELL_TO_OPEN, "v", "#d62728", "sell to open"),
            (Action.BUY_TO_CLOSE, "^", "#2ca02c", "buy to close"),
        ):
            pts = [(e.est_timestamp, price_at.get(e.est_timestamp)) for e in fills if e.action is action]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color, s=60, zorder=3, label=label)
        pnl = sum(e.pnl_contrib for e in executions)
        ax.set_title(f"{day:%Y-%m-%d}  realized P/L ${pnl:,.2f}  ({len(fills)} fills)")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=times[0].tzinfo if times else None))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncols=5, fontsize=8, frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
