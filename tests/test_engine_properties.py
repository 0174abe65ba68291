"""Property tests of the engine over random sessions (the spec's strategy rules).

Each example is a whole NYSE session (a normal 16:00 close or a 13:00 early close, from the
real calendar) of random one-minute QQQ bars: a Gaussian random walk of closes with random
highs, lows, volumes and (sometimes) a per-bar VWAP. The option chain (tests/builders.chain,
every $1 strike over the day's range, calls and puts, minute aggregates with a half-spread)
is re-priced each minute from the underlying's own o/h/l/c (intrinsic value plus a decaying time value),
with random wicks, so that prices double and halve inside a holding period: stops, targets,
reversals and flattens all happen. Some examples drop random option minutes (no trades),
so that entries get cancelled and exits wait for data.

A path is a pure function of its parameters (and, for the look-ahead test, of a second seed
used from a given bar on), so one example can be replayed with its future changed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphagen_core.domain.calendar import session
from alphagen_core.domain.engine import Engine, StepOutput, StrategyConfig
from alphagen_core.domain.fills import PaperBroker
from alphagen_core.domain.models import (
    MINUTE,
    Action,
    Bar,
    MinuteSlice,
    OptionQuote,
    OrderStatus,
)
from alphagen_core.domain.risk import RiskConfig
from tests.builders import HALF_SPREAD, chain

pytestmark = [pytest.mark.unit, pytest.mark.spare_cpu]

NORMAL_DAYS = (dt.date(2024, 2, 12), dt.date(2024, 6, 14))  # close 16:00 (EST / EDT)
EARLY_DAYS = (dt.date(2024, 11, 29), dt.date(2024, 7, 3))  # close 13:00
PROPERTY_SETTINGS = settings(
    max_examples=45,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class PathParams:
    day: dt.date
    seed: int
    vol: float  # standard deviation of a one-minute move of QQQ, dollars
    richness: float  # at-the-money time value at the open, dollars
    wick_p: float  # probability that an option minute has a random spike in its range
    gap_p: float  # probability that an option minute is missing (no trades)
    bar_vwap: bool  # whether bars carry their own VWAP (Polygon `vw`)
    cooldown_s: int
    strike_offset: int

    def config(self) -> StrategyConfig:
        return StrategyConfig(
            risk=RiskConfig(),
            cooldown=dt.timedelta(seconds=self.cooldown_s),
            strike_offset=self.strike_offset,
        )


def path_params(days=NORMAL_DAYS + EARLY_DAYS, gaps: bool = True) -> st.SearchStrategy[PathParams]:
    return st.builds(
        PathParams,
        day=st.sampled_from(days),
        seed=st.integers(0, 2**32 - 1),
        vol=st.sampled_from([0.05, 0.12, 0.25, 0.5]),
        richness=st.sampled_from([0.3, 0.8, 2.0]),
        wick_p=st.sampled_from([0.0, 0.05, 0.3]),
        gap_p=st.sampled_from([0.0, 0.02, 0.1]) if gaps else st.just(0.0),
        bar_vwap=st.booleans(),
        cooldown_s=st.sampled_from([0, 30, 180, 600]),
        strike_offset=st.sampled_from([0, 0, 1, 2]),
    )


def _draws(seed: int, bars: int, contracts: int) -> dict[str, np.ndarray]:
    """Every random number of a session, one row per bar."""
    rng = np.random.default_rng(seed)
    return {
        "moves": rng.normal(0.0, 1.0, (bars, 4)),
        "volume": rng.integers(100, 20_000, bars),
        "vw": rng.random(bars),
        "spike_up": rng.random((bars, contracts)),
        "spike_up_size": rng.uniform(0.0, 1.5, (bars, contracts)),
        "spike_down": rng.random((bars, contracts)),
        "spike_down_size": rng.uniform(0.0, 0.7, (bars, contracts)),
        "missing": rng.random((bars, contracts)),
    }


def _option_prices(rights: np.ndarray, strikes: np.ndarray, s: np.ndarray, minutes_left: np.ndarray,
                   richness: float) -> np.ndarray:
    """Intrinsic value plus a time value that decays to the close and away from the money;
    one row per bar, one column per contract."""
    s = s[:, None]
    intrinsic = np.where(rights == "P", np.maximum(strikes - s, 0.0), np.maximum(s - strikes, 0.0))
    decay = np.sqrt(np.maximum(minutes_left, 1.0) / 390.0)[:, None]
    return np.round(intrinsic + richness * decay * np.exp(-np.abs(s - strikes) / 1.5) + 0.01, 2)


def build_slices(
    p: PathParams,
    *,
    future_from: int | None = None,
    future_seed: int | None = None,
    no_gaps_after: dt.datetime | None = None,
) -> list[MinuteSlice]:
    """The session's slices. From bar `future_from` on, everything (QQQ bars, volumes, option
    prices and gaps) is drawn from `future_seed` instead: the same past, another future."""
    sess = session(p.day)
    bars = sess.minutes
    s0 = 400.0
    strikes = range(int(s0) - 15, int(s0) + 16)  # QQQ is kept inside the grid
    # The chain's contracts (symbols, half-spread) come from the builders; each minute
    # re-prices them as builders.aggregate does (bid/ask = close -/+ half-spread).
    templates = list(chain(p.day, sess.open, strikes).values())
    rights = np.array([q.contract.right.value for q in templates])
    strike_arr = np.array([q.contract.strike for q in templates])
    r = _draws(p.seed, bars, len(templates))
    if future_from is not None:
        past = r
        other = _draws(future_seed, bars, len(templates))
        r = {k: np.concatenate([v[:future_from], other[k][future_from:]]) for k, v in past.items()}
        # With a quiet path and prices in cents a redrawn bar can equal the old one by chance;
        # one more share than the original volume makes every future bar differ for certain.
        r["volume"] = np.concatenate([past["volume"][:future_from], past["volume"][future_from:] + 1])

    starts = [sess.open + i * MINUTE for i in range(bars)]
    ohlc = np.empty((bars, 4))
    bar_list: list[Bar] = []
    close = s0
    for i, start in enumerate(starts):
        step, gap, up, down = r["moves"][i].tolist()
        open_ = round(close + gap * p.vol / 5, 2)
        close = round(min(max(open_ + step * p.vol, s0 - 12), s0 + 12), 2)
        high = round(max(open_, close) + abs(up) * p.vol / 2, 2)
        low = round(min(open_, close) - abs(down) * p.vol / 2, 2)
        vw = round(low + float(r["vw"][i]) * (high - low), 4) if p.bar_vwap else None
        bar_list.append(Bar("QQQ", start, open_, high, low, close, float(r["volume"][i]), vwap=vw))
        ohlc[i] = (open_, high, low, close)

    left = np.array([(sess.close - t) / MINUTE for t in starts])
    o, h, l, c = (_option_prices(rights, strike_arr, ohlc[:, j], left, p.richness) for j in range(4))
    hi = np.maximum.reduce([o, h, l, c])
    lo = np.minimum.reduce([o, h, l, c])
    hi = np.where(r["spike_up"] < p.wick_p, np.round(hi * (1 + r["spike_up_size"]), 2), hi)
    lo = np.where(r["spike_down"] < p.wick_p, np.round(np.maximum(lo * (1 - r["spike_down_size"]), 0.01), 2), lo)
    missing = r["missing"] < p.gap_p
    if no_gaps_after is not None:
        missing[[t >= no_gaps_after for t in starts]] = False

    bid = np.round(np.maximum(c - HALF_SPREAD, 0.0), 4)
    ask = np.round(c + HALF_SPREAD, 4)
    rows = zip(bar_list, missing.tolist(), o.tolist(), hi.tolist(), lo.tolist(), c.tolist(), bid.tolist(), ask.tolist())
    return [MinuteSlice(bar, LazyQuotes(templates, bar.start, [i for i, g in enumerate(gone) if not g], prices))
            for bar, gone, *prices in rows]


class LazyQuotes(Mapping[str, OptionQuote]):
    """A minute's chain whose quotes are built when first read. The engine reads the held
    contract every minute and the whole chain only at a signal; building all of them, 62 a
    minute, was most of an example's time. Equal to a dict of the same quotes."""

    __slots__ = ("_templates", "_start", "_index", "_prices", "_built")

    def __init__(self, templates: list[OptionQuote], start: dt.datetime, present: list[int],
                 prices: list[list[float]]) -> None:
        self._templates, self._start, self._prices = templates, start, prices  # o, h, l, c, bid, ask
        self._index = {templates[i].symbol: i for i in present}
        self._built: dict[str, OptionQuote] = {}

    def __getitem__(self, symbol: str) -> OptionQuote:
        if (quote := self._built.get(symbol)) is None:
            i = self._index[symbol]
            q = self._templates[i]
            o, h, lo, c, bid, ask = (column[i] for column in self._prices)
            quote = OptionQuote(q.symbol, q.contract, self._start, bid, ask, c, o, h, lo, q.volume, HALF_SPREAD)
            self._built[symbol] = quote
        return quote

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LazyQuotes):
            return super().__eq__(other)
        # the quotes are a function of these: comparing them compares the quotes, unbuilt
        present = list(self._index.values())
        return (self._start == other._start and present == list(other._index.values())
                and [self._templates[i] for i in present] == [other._templates[i] for i in present]
                and all([col[i] for i in present] == [theirs[i] for i in present]
                        for col, theirs in zip(self._prices, other._prices, strict=True)))


def run_session(p: PathParams, slices: list[MinuteSlice]) -> tuple[Engine, list[StepOutput]]:
    """Feed the whole session, then `finish` at the close; one StepOutput per call."""
    sess = session(p.day)
    cfg = p.config()
    engine = Engine(p.day, sess.close, cfg, PaperBroker(cfg.risk), session_open=sess.open)
    outs = [engine.on_slice(s) for s in slices]
    outs.append(engine.finish(sess.close))
    return engine, outs


def fills(outs: list[StepOutput]):
    return [e for o in outs for e in o.executions if e.status is OrderStatus.FILLED]


# ---- properties ----------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(path_params())
def test_never_more_than_one_open_position(p: PathParams):
    engine, outs = run_session(p, build_slices(p))
    open_ids: set[str] = set()
    books, disagreeing = 0, []  # minutes whose own book (none after the close) disagrees with the fills
    for minute, out in enumerate(outs):
        for e in out.executions:
            if e.status is not OrderStatus.FILLED:
                continue
            opens = e.action is Action.SELL_TO_OPEN
            # an entry opens a position that is not open yet, an exit closes one that is
            assert (e.position_id in open_ids) is not opens, e
            open_ids ^= {e.position_id}
        assert len(open_ids) <= 1, f"minute {minute}: open positions {sorted(open_ids)}"
        assert len(out.broker_positions) <= 1, out.broker_positions
        if out.position is not None:
            books += 1
            if (out.position.net_quantity != 0) != bool(open_ids):
                disagreeing.append(minute)
    assert books >= len(outs) - 1 and disagreeing == []
    assert not open_ids and engine.position is None


@PROPERTY_SETTINGS
@given(path_params())
def test_never_an_entry_in_the_no_entry_window(p: PathParams):
    cfg = p.config()
    cutoff = session(p.day).close - cfg.no_entry_before_close
    _, outs = run_session(p, build_slices(p))
    entries = [i for o in outs for i in o.intents if i.action is Action.SELL_TO_OPEN]
    assert [i for i in entries if i.est_timestamp >= cutoff] == []
    assert [e for e in fills(outs) if e.action is Action.SELL_TO_OPEN and e.est_timestamp >= cutoff] == []
    acted_late = [
        s for o in outs for s in o.signals if s.est_timestamp >= cutoff and s.option_symbol is not None
    ]
    assert acted_late == []


@PROPERTY_SETTINGS
@given(path_params(days=NORMAL_DAYS + EARLY_DAYS))
def test_flat_before_close_minus_flatten_buffer(p: PathParams):
    sess = session(p.day)
    cfg = p.config()
    flatten_at = sess.close - cfg.flatten_before_close
    assert flatten_at.time() == (dt.time(12, 55) if sess.early_close else dt.time(15, 55))
    # Option data may be missing at random, but not in the last half hour: an exit waiting
    # for data (a contract that does not trade) may legitimately fill late.
    slices = build_slices(p, no_gaps_after=sess.close - dt.timedelta(minutes=35))
    engine, outs = run_session(p, slices)
    closes = [e for e in fills(outs) if e.action is Action.BUY_TO_CLOSE]
    opens = [e for e in fills(outs) if e.action is Action.SELL_TO_OPEN]
    assert len(closes) == len(opens)
    assert all(e.est_timestamp < flatten_at for o in outs for e in o.executions)  # the closes among them
    assert outs[-1].executions == [] and outs[-1].intents == []  # finish() had nothing to do
    assert engine.position is None and engine.broker.positions() == []
    last_minute = outs[-2]
    assert last_minute.position.net_quantity == 0 and last_minute.position.symbol is None
    assert [o.position for o in outs[:-1] if o.position.est_timestamp >= flatten_at and o.position.net_quantity] == []


@PROPERTY_SETTINGS
@given(path_params(), st.booleans(), st.integers(0, 10**6), st.integers(0, 2**32 - 2))
def test_no_look_ahead(p: PathParams, at_an_event: bool, pick: int, future_seed: int):
    """Change everything after bar t: what was known at bar t's end must not change.

    t is either any bar or, to aim at the boundary where look-ahead would show, the bar just
    before one on which something happened (a fill, a stop or target, a signal)."""
    sess = session(p.day)
    base = build_slices(p)
    _, out_a = run_session(p, base)
    if at_an_event:
        busy = sorted({i for i, o in enumerate(out_a[:-1]) if o.executions or o.signals or o.intents} - {0})
        t = busy[pick % len(busy)] - 1 if busy else pick % sess.minutes
    else:
        t = pick % sess.minutes
    future_seed = (p.seed + 1 + future_seed) % 2**32  # never the past's own seed
    other = build_slices(p, future_from=t + 1, future_seed=future_seed)
    assert base[: t + 1] == other[: t + 1]
    future = list(zip(base[t + 1 :], other[t + 1 :]))
    assert all(a.bar != b.bar for a, b in future)  # every later bar changed...
    # ... and the option data (cent prices of a quiet path may repeat in a single minute)
    assert not future or any(a.quotes != b.quotes for a, b in future)
    _, out_b = run_session(p, other)
    known_at = base[t].bar.end  # bar t is usable from its end on

    def decided_by(outs, name):
        return [x for o in outs for x in getattr(o, name) if x.est_timestamp <= known_at]

    assert decided_by(out_a, "signals") == decided_by(out_b, "signals")
    assert decided_by(out_a, "intents") == decided_by(out_b, "intents")
    before_next = [e for o in out_a for e in o.executions if e.est_timestamp < known_at]
    assert before_next == [e for o in out_b for e in o.executions if e.est_timestamp < known_at]
    # and the per-minute records of bars 0..t
    for a, b in zip(out_a[: t + 1], out_b[: t + 1]):
        assert (a.tick, a.position, a.rejections) == (b.tick, b.position, b.rejections)


@PROPERTY_SETTINGS
@given(path_params())
def test_realized_pnl_equals_round_trips_from_fills(p: PathParams):
    cfg = p.config()
    engine, outs = run_session(p, build_slices(p))
    by_position: dict[str, list] = defaultdict(list)
    for e in fills(outs):
        by_position[e.position_id].append(e)
    total = 0.0
    for position_id, events in by_position.items():
        entries = [e for e in events if e.action is Action.SELL_TO_OPEN]
        exits = [e for e in events if e.action is Action.BUY_TO_CLOSE]
        assert len(entries) == 1 and len(exits) == 1, (position_id, events)
        entry, exit_ = entries[0], exits[0]
        assert entry.qty == exit_.qty > 0
        expected_fees = 2 * entry.qty * (cfg.risk.fee_per_contract + cfg.risk.fee_regulatory_per_contract)
        fees = sum(e.fees for e in events)
        assert math.isclose(fees, expected_fees, abs_tol=0.011)
        round_trip = (entry.fill_price - exit_.fill_price) * 100 * entry.qty - fees
        assert math.isclose(sum(e.pnl_contrib for e in events), round_trip, abs_tol=0.011)
        total += round_trip
    assert math.isclose(engine.realized_pnl, total, abs_tol=0.011 * max(len(by_position), 1))
    assert math.isclose(sum(e.pnl_contrib for o in outs for e in o.executions), engine.realized_pnl, abs_tol=0.011)
    # the last minute's book, plus what finish() closed at the close
    at_close = sum(e.pnl_contrib for e in outs[-1].executions)
    assert math.isclose(outs[-2].position.realized_pnl + at_close, engine.realized_pnl, abs_tol=0.011)


@PROPERTY_SETTINGS
@given(path_params())
def test_same_input_same_output(p: PathParams):
    slices = build_slices(p)
    engine_a, out_a = run_session(p, slices)
    engine_b, out_b = run_session(p, slices)
    assert out_a == out_b
    assert engine_a.realized_pnl == engine_b.realized_pnl


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(path_params(gaps=False))
def test_signals_exactly_at_independent_crossings(p: PathParams):
    """An independent VWAP/MA9 (math.fsum, no shared code) finds the same crossings."""
    slices = build_slices(p)
    _, outs = run_session(p, slices)
    expected, side = [], 0
    pv = v = 0.0
    closes: list[float] = []
    for s in slices:
        b = s.bar
        price = b.vwap if b.vwap is not None else (b.high + b.low + b.close) / 3
        pv, v = pv + price * b.volume, v + b.volume
        closes.append(b.close)
        if len(closes) < 9:
            continue
        diff = math.fsum(closes[-9:]) / 9 - pv / v
        if abs(diff) < 1e-9:  # too close to call in floating point: keep the side
            continue
        new_side = 1 if diff > 0 else -1
        if side and new_side != side:
            expected.append((b.end, "bullish" if new_side > 0 else "bearish"))
        side = new_side
    got = [(sig.est_timestamp, sig.signal_type.value) for o in outs for sig in o.signals]
    assert got == expected
