"""The live session's two jobs' work: a minute's increment of tables 1-7, and the long-running
session trader (tables 2, 7, 8). Both record their writes as materializations of the table
assets for today's partition, so the UI shows live and replay in one lineage."""


import datetime as dt
import time

from dagster import (
    AssetMaterialization,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    op,
)

from alphagen_core.adapters.venues import (
    broker_quotes,
    execution_client,
    market_data_client,
    minute_market_data,
    session_market_data,
    streams,
)
from alphagen_core.application.control import set_state
from alphagen_core.application.gate import route
from alphagen_core.application.lease import (
    SessionAlreadyRunning,
    SessionLease,
    session_dir,
)
from alphagen_core.application.live_minute import run_minute_increment, session_version
from alphagen_core.application.live_session import SessionTrader
from alphagen_core.domain.calendar import session
from alphagen_core.domain.clock import clock_from_settings
from alphagen_core.domain.models import TradingState
from alphagen_core.operations import alerts
from alphagen_core.operations.logs import bind, configure_logging
from alphagen_core.operations.telemetry import (
    carried_counts,
    read_session_status,
    trader_status,
    write_session_status,
)
from alphagen_dagster.resources import SettingsResource, StoreResource

HEARTBEAT_LOG_EVERY_S = 60.0


class MinuteConfig(Config):
    minute: str  # ISO start of the closed bar, New York time


class SessionConfig(Config):
    session_date: str


def _materialize(context: OpExecutionContext, added: dict[str, int], day: dt.date, **metadata) -> None:
    for table, rows in added.items():
        context.log_event(AssetMaterialization(
            asset_key=table, partition=day.isoformat(),
            metadata={"rows_added": rows, "version": session_version(day), **metadata},
        ))


# No "duckdb" pool here: the pool would hold each run's slot through its process start and
# serialize whole runs; minute runs take turns on a lock around their short write instead.
@op(tags={"alphagen/kind": "minute"})
def minute_increment(context: OpExecutionContext, config: MinuteConfig, store: StoreResource,
                     settings: SettingsResource) -> None:
    """Run the engine over the newly closed minute(s) and append tables 1-7."""
    cfg = settings.get()
    minute = dt.datetime.fromisoformat(config.minute)
    sess = session(minute.date())
    _bind_run(context, cfg, sess.date)
    market = minute_market_data(cfg, clock_from_settings(cfg), sess.date)
    result = run_minute_increment(store.store(), market, cfg, sess, minute, context.run_id)
    if not result.minutes:
        context.log.info(f"{minute:%H:%M}: nothing new (already processed, or the bar is not published)")
        return
    per_minute_ms = 1000 * result.engine_seconds / len(result.minutes)
    context.log.info(
        f"{minute:%H:%M}: {len(result.minutes)} minute(s), {len(result.intents)} intent(s), "
        f"engine {per_minute_ms:.2f} ms/minute"
    )
    _materialize(context, result.rows, sess.date, minute=config.minute,
                 engine_ms_per_minute=MetadataValue.float(round(per_minute_ms, 3)))


@op(tags={"alphagen/kind": "session"})
def trading_session(context: OpExecutionContext, config: SessionConfig, store: StoreResource,
                    settings: SettingsResource) -> None:
    """Trade the session: reconcile, place table 7's intents, track orders, watch the held
    quote (stops, targets, flatten), record table 8; heartbeat; end after the close."""
    cfg = settings.get()
    day = dt.date.fromisoformat(config.session_date)
    sess = session(day)
    clock = clock_from_settings(cfg)
    _bind_run(context, cfg, day)
    try:
        lease = SessionLease(session_dir(cfg.alphagen_cache_dir), config.session_date, context.run_id)
    except SessionAlreadyRunning as exc:
        raise Failure(description=str(exc)) from None
    last_logged = [0.0]
    last_status = [0.0]
    directory = session_dir(cfg.alphagen_cache_dir)
    trader: SessionTrader | None = None
    carried = carried_counts(read_session_status(directory, config.session_date), context.run_id)

    def heartbeat() -> None:
        lease.beat()
        if trader is not None and time.monotonic() - last_status[0] >= 1.0:
            last_status[0] = time.monotonic()
            write_session_status(directory, config.session_date, trader_status(trader, context.run_id, carried))
        if time.monotonic() - last_logged[0] >= HEARTBEAT_LOG_EVERY_S:
            last_logged[0] = time.monotonic()
            context.log.info(f"heartbeat {clock.now():%H:%M:%S} ET")

    traded = route(cfg)
    market = market_data_client(cfg)
    broker = execution_client(cfg, market, clock)
    with lease, session_market_data(cfg, broker_quotes(broker, market), clock, day) as quotes:
        if traded.broker == "paper":  # the fill model fills on the quotes the trader watches
            broker = execution_client(cfg, quotes, clock)
        streamed = "streamed, REST as the fallback" if streams(cfg) else "polled"
        context.log.info(f"session {day}: mode {traded.mode.value}, broker {traded.broker}, quotes {streamed}")
        trader = SessionTrader(store.store(), broker, quotes, cfg, sess, clock, context.run_id,
                               on_write=lambda added: _materialize(context, added, day),
                               heartbeat=heartbeat,
                               alert=lambda key, kind, title, **fields: alerts.send(cfg, key, kind, title, **fields))
        try:
            stats = trader.run()
        finally:
            write_session_status(directory, config.session_date,
                                 {**trader_status(trader, context.run_id, carried), "ended": True})
            alerts.flush_all(5.0)
    context.log.info(
        f"session {day} ended: {stats.orders_sent} orders sent, {stats.fills} fills, "
        f"{stats.reconciled_orders} reconciled, realized P/L ${stats.realized_pnl:,.2f}"
    )


def _bind_run(context: OpExecutionContext, cfg, day: dt.date) -> None:
    """JSON log lines of this run carry its run id, session date and mode."""
    configure_logging(cfg.alphagen_log_format, cfg.alphagen_log_level)
    bind(run_id=context.run_id, session_date=day.isoformat(), mode=route(cfg).mode.value)


class ControlConfig(Config):
    state: str = "halted"  # halted | flattening | active (`alphagen halt|flatten|resume`)
    reason: str = "operator command (Dagster UI)"
    session_date: str = ""  # default: today's session on the service's clock


@op(tags={"alphagen/kind": "control"})
def set_trading_state(context: OpExecutionContext, config: ControlConfig, store: StoreResource,
                      settings: SettingsResource) -> None:
    """Append the operator's trading state for the session to control_events; the running
    session job obeys it within 2 s, and a relaunched one on start."""
    cfg = settings.get()
    now = clock_from_settings(cfg).now()
    try:
        state = TradingState(config.state)
    except ValueError:
        raise Failure(description=f"state must be one of {[s.value for s in TradingState]}") from None
    day = dt.date.fromisoformat(config.session_date) if config.session_date else now.date()
    mode = route(cfg).mode.value
    set_state(store.store(), mode, day, state, config.reason, "operator", now, context.run_id)
    context.log.info(f"{mode} session {day}: {state.value} ({config.reason})")
