"""`alphagen doctor`: the pre-market check. One result per check, each OK, WARN, FAIL or SKIP
with a one-line detail; any FAIL means the service is not fit to trade today.

`run_checks(settings)` is the whole check, for the command, for the service's own run at
open - 30 min (`premarket_check_job`) and for whatever alerts on it. Every check is bounded by
a timeout and never raises: an exception becomes that check's FAIL, its text redacted. No
check writes a row: the DuckDB probe opens the file for writing and closes it at once, and
the market data and broker probes only read.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from alphagen_core.operations.settings import Mode, Settings

log = structlog.get_logger(__name__)

GIB = 1024**3
MIN_FREE_BYTES = 2 * GIB  # a day's tables are megabytes; Dagster's logs and caches grow faster
CLOCK_TOLERANCE_S = 1.0
TOKEN_WARN_S = 24 * 3600  # Schwab refresh tokens die after 7 days; a day ahead is time to sign in
# Daemons beat every 30 s; Dagster's own tolerance (30 min) is too late for a morning check.
DAEMON_HEARTBEAT_INTERVAL_S = 30.0
DAEMON_HEARTBEAT_TOLERANCE_S = 90.0
SENSOR_TICK_MAX_AGE_S = 120.0  # the daemon evaluates each live sensor every few seconds
LIVE_SENSORS = ("minute_sensor", "session_sensor", "premarket_check_sensor")
NETWORK_TIMEOUT_S = 5.0
DUCKDB_LOCK_WAIT_S = 10.0


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"  # works today, needs attention soon (a token expiring tomorrow)
    FAIL = "FAIL"
    SKIP = "SKIP"  # not used by this configuration


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    def line(self) -> str:
        mark = {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗", Status.SKIP: "-"}[self.status]
        return f"{mark} {self.status.value:<4}  {self.name:<18} {self.detail}"


@dataclass(frozen=True)
class Context:
    """What every check may look at: the settings (with the mode the service will trade),
    the system's clock, the Dagster home and the limits."""

    settings: Settings
    home: Path
    min_free_bytes: int = MIN_FREE_BYTES
    timeout_s: float = NETWORK_TIMEOUT_S

    @property
    def uses_schwab(self) -> bool:
        s = self.settings
        return s.alphagen_data_provider == "schwab" or s.alphagen_broker == "schwab"

    def now(self) -> dt.datetime:
        from alphagen_core.domain.clock import clock_from_settings

        return clock_from_settings(self.settings).now()


def run_checks(settings: Settings, *, mode: str | None = None, home: Path | None = None,
               min_free_bytes: int = MIN_FREE_BYTES, timeout_s: float = NETWORK_TIMEOUT_S) -> list[CheckResult]:
    """Every check, in a fixed order (run side by side: the slowest bounds the total).

    `mode`: the mode the service will trade (default: ALPHAGEN_MODE if paper or live, else
    paper, as `alphagen run`); `home`: the Dagster home (default: DAGSTER_HOME, else the
    project's .dagster_home)."""
    from alphagen_dagster.instance import PROJECT_DIR

    mode = mode or (settings.alphagen_mode.value if settings.alphagen_mode is not Mode.REPLAY else "paper")
    ctx = Context(
        settings=settings.model_copy(update={"alphagen_mode": Mode(mode)}),
        home=Path(home or os.environ.get("DAGSTER_HOME") or PROJECT_DIR / ".dagster_home").resolve(),
        min_free_bytes=min_free_bytes, timeout_s=timeout_s,
    )
    checks: list[tuple[str, Callable[[Context], tuple[Status, str]]]] = [
        ("settings", check_settings),
        ("schwab token", check_token),
        *_market_data_checks(ctx),
        ("broker", check_broker),
        ("flat files", check_flatfiles),
        ("clock", check_clock),
        ("disk space", check_disk),
        ("duckdb", check_duckdb),
        ("dagster instance", check_instance),
        ("dagster daemon", check_daemon),
        ("live sensors", check_sensors),
    ]
    _import_what_checks_use()
    with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="doctor") as pool:
        futures = [(name, pool.submit(_guarded, fn, ctx)) for name, fn in checks]
        results = [CheckResult(name, *future.result()) for name, future in futures]
    secrets = settings.secret_values() + _pg_secrets()
    return [CheckResult(r.name, r.status, _redact(r.detail, secrets)) for r in results]


def _import_what_checks_use() -> None:
    """Import here, in one thread: modules first imported by several threads at once can
    deadlock on Python's import locks (seen with dagster's and schwab-py's packages)."""
    import importlib

    for name in ("httpx", "websockets.sync.client", "dagster", "alphagen_core.persistence.store",
                 "alphagen_core.adapters.polygon.market_data", "alphagen_core.adapters.schwab.session",
                 "alphagen_core.adapters.schwab.execution", "alphagen_core.adapters.schwab.market_data",
                 "alphagen_core.adapters.schwab.ratelimit", "boto3", "botocore.config"):
        importlib.import_module(name)
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as instance:  # Dagster imports its daemons' modules on first use
        instance.get_required_daemon_types()


def failures(results: Iterable[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.failed]


def log_results(results: Iterable[CheckResult]) -> None:
    """One structlog event per check that did not pass (FAIL as error, WARN as warning)."""
    for r in results:
        if r.status is Status.FAIL:
            log.error("doctor_check_failed", check=r.name, detail=r.detail)
        elif r.status is Status.WARN:
            log.warning("doctor_check_warning", check=r.name, detail=r.detail)


def _guarded(fn: Callable[[Context], tuple[Status, str]], ctx: Context) -> tuple[Status, str]:
    try:
        return fn(ctx)
    except Exception as exc:  # noqa: BLE001 - a check that breaks is a failed check
        return Status.FAIL, _describe(exc)


class CheckFailed(RuntimeError):
    """A failure a check explains itself (printed without the exception's type)."""


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    if isinstance(exc, CheckFailed):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _redact(text: str, secrets: list[str]) -> str:
    from alphagen_core.operations.redaction import redact

    return redact(text, *secrets)


def _pg_secrets() -> list[str]:
    value = os.environ.get("ALPHAGEN_PG_PASSWORD", "")
    return [value] if value else []


def _route(settings: Settings):
    from alphagen_core.application.gate import route

    return route(settings)


# ---- settings ----------------------------------------------------------------------------------


def check_settings(ctx: Context) -> tuple[Status, str]:
    """The live gate's route (an inconsistent combination is its GateError, naming the
    settings), and the credentials the chosen venues need."""
    from alphagen_core.application.gate import GateError, is_loopback_url

    s = ctx.settings
    try:
        traded = _route(s)
    except GateError as exc:
        return Status.FAIL, str(exc)
    missing = []
    if s.alphagen_data_provider == "polygon" and not s.polygon_api_key.get_secret_value():
        missing.append("POLYGON_API_KEY")
    if ctx.uses_schwab:
        missing += [name for name, value in (
            ("SCHWAB_API_KEY", s.schwab_api_key), ("SCHWAB_API_SECRET", s.schwab_api_secret),
            ("SCHWAB_ACCOUNT_ID", s.schwab_account_id)) if not value.get_secret_value()]
    if missing:
        return Status.FAIL, f"{', '.join(missing)} not set (needed by the configured venues)"
    simulated = bool(s.alphagen_sim_start)
    if simulated and traded.broker == "schwab" and not is_loopback_url(s.schwab_base_url):
        return Status.FAIL, "ALPHAGEN_SIM_START (a simulated clock) is set while orders go to the real Schwab API"
    broker = traded.broker
    if broker == "schwab":
        broker += " (local stand-in)" if is_loopback_url(s.schwab_base_url) else " (REAL ORDERS)"
    clock = f"; simulated clock from {s.alphagen_sim_start}" if simulated else ""
    return Status.OK, f"mode {traded.mode.value}, broker {broker}, data {s.alphagen_data_provider}{clock}"


# ---- Schwab token --------------------------------------------------------------------------------


def check_token(ctx: Context) -> tuple[Status, str]:
    """The token file is there and its refresh token (7 days from the sign-in) has time left."""
    if not ctx.uses_schwab:
        return Status.SKIP, "Schwab is not used (broker paper, data polygon)"
    from alphagen_core.adapters.schwab.config import REFRESH_TOKEN_LIFETIME_S
    from alphagen_core.adapters.schwab.errors import LOGIN_COMMAND, SchwabAuthError
    from alphagen_core.adapters.schwab.tokens import TokenStore

    try:
        wrapped = TokenStore(ctx.settings.schwab_token_path).read()
    except SchwabAuthError as exc:
        return Status.FAIL, str(exc)
    expires = int(wrapped["creation_timestamp"]) + REFRESH_TOKEN_LIFETIME_S
    left = expires - time.time()
    when = f"{dt.datetime.fromtimestamp(expires, dt.UTC):%Y-%m-%d %H:%M} UTC"
    if left <= 0:
        return Status.FAIL, (f"refresh token expired {_duration(-left)} ago ({when}): "
                             f"run `{LOGIN_COMMAND}` to sign in again")
    detail = f"refresh token valid for {_duration(left)} (until {when}); the access token refreshes itself"
    if left < TOKEN_WARN_S:
        return Status.WARN, f"{detail}; run `{LOGIN_COMMAND}` before it ends"
    return Status.OK, detail


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {rest // 60}m" if hours else f"{rest // 60}m {rest % 60}s"


# ---- market data and broker ----------------------------------------------------------------------


def _market_data_checks(ctx: Context) -> list[tuple[str, Callable[[Context], tuple[Status, str]]]]:
    if ctx.settings.alphagen_data_provider == "schwab":
        return [("schwab quotes", check_schwab_quotes)]
    return [("polygon rest", check_polygon_rest), ("polygon websocket", check_polygon_websocket)]


def _bars_session(now: dt.datetime):
    """Today's session once its first bar has closed, else the last one before today."""
    from alphagen_core.domain import calendar
    from alphagen_core.domain.models import MINUTE

    day = now.date()
    if calendar.is_trading_day(day) and now >= calendar.session(day).open + MINUTE:
        return calendar.session(day)
    day -= dt.timedelta(days=1)
    while not calendar.is_trading_day(day):
        day -= dt.timedelta(days=1)
    return calendar.session(day)


def _sane_bars(bars: list[Any]) -> str | None:
    """Why these minute bars are not believable, or None."""
    for b in bars:
        prices = (b.open, b.high, b.low, b.close)
        if not all(p > 0 for p in prices):
            return f"a non-positive price in the {b.start:%H:%M} bar"
        if not b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high:
            return f"the {b.start:%H:%M} bar's high/low do not contain its open/close"
    return None


def check_polygon_rest(ctx: Context) -> tuple[Status, str]:
    """Minute bars of the latest session (the adapter's own path: the massive client), and,
    once the session is open, today's 0DTE chain with usable quotes."""
    from alphagen_core.adapters.polygon.config import PolygonConfig
    from alphagen_core.adapters.polygon.market_data import PolygonMarketData
    from alphagen_core.domain.clock import clock_from_settings

    s = ctx.settings
    clock = clock_from_settings(s)
    now = clock.now()
    sess = _bars_session(now)
    with PolygonMarketData(PolygonConfig.from_settings(s), clock=clock, attempts=2,
                           timeout_s=ctx.timeout_s) as md:
        bars = md.minute_bars(s.polygon_equity_ticker, sess.date)
        if not bars:
            return Status.FAIL, f"{s.polygon_rest_url} answered no {s.polygon_equity_ticker} bars for {sess.date}"
        if why := _sane_bars(bars):
            return Status.FAIL, f"{s.polygon_equity_ticker} bars of {sess.date} look wrong: {why}"
        detail = (f"{s.polygon_rest_url}: {len(bars)} {s.polygon_equity_ticker} bars of {sess.date}, "
                  f"last {bars[-1].start:%H:%M} close {bars[-1].close:.2f}")
        if sess.date == now.date():
            chain = md.option_chain(s.polygon_options_underlying, now.date())
            if not chain:
                return Status.FAIL, f"{detail}; but no quoted {s.polygon_options_underlying} contract expiring today"
            detail += f"; {len(chain)} quoted 0DTE contracts"
    return Status.OK, detail


def check_polygon_websocket(ctx: Context) -> tuple[Status, str]:
    """Both feeds: the status greeting, then our key accepted (auth_success)."""
    from alphagen_core.adapters.polygon.config import PolygonConfig

    config = PolygonConfig.from_settings(ctx.settings)
    answers = []
    for url in (config.stock_ws_url, config.options_ws_url):
        try:
            status, detail = _ws_handshake(url, config.api_key.get_secret_value(), ctx.timeout_s)
        except Exception as exc:  # noqa: BLE001 - refused, timed out, closed: the check fails naming the feed
            status, detail = Status.FAIL, _describe(exc)
        if status is not Status.OK:
            return status, f"{url}: {detail}"
        answers.append(url.rsplit("/", 1)[-1])
    return Status.OK, f"{' and '.join(answers)} feeds: connected, key accepted"


def _ws_handshake(url: str, key: str, timeout_s: float) -> tuple[Status, str]:
    from websockets.sync.client import connect

    with connect(url, open_timeout=timeout_s, close_timeout=1) as ws:
        greeting = json.loads(ws.recv(timeout=timeout_s))
        if not (isinstance(greeting, list) and greeting and greeting[0].get("status") == "connected"):
            return Status.FAIL, "no 'connected' status greeting"
        ws.send(json.dumps({"action": "auth", "params": key}))
        reply = json.loads(ws.recv(timeout=timeout_s))
        status = reply[0].get("status") if isinstance(reply, list) and reply else None
        if status == "auth_success":
            return Status.OK, "authenticated"
        if status == "max_connections":  # the running session holds the feed: reachable
            return Status.OK, "reachable (the running session holds the connection)"
        return Status.FAIL, f"authentication answered {status!r} (check POLYGON_API_KEY)"


def _schwab_session(ctx: Context):
    from alphagen_core.adapters.schwab.config import SchwabConfig
    from alphagen_core.adapters.schwab.ratelimit import RetryPolicy
    from alphagen_core.adapters.schwab.session import SchwabSession

    config = SchwabConfig.from_settings(ctx.settings, request_timeout_s=ctx.timeout_s)
    return SchwabSession(config, retry=RetryPolicy(max_attempts=2, base_delay_s=0.2, max_delay_s=0.5))


def check_schwab_quotes(ctx: Context) -> tuple[Status, str]:
    """Schwab as the data source: today's (else the next) 0DTE chain with sane quotes."""
    from alphagen_core.adapters.schwab.market_data import SchwabMarketData

    s = ctx.settings
    day = ctx.now().date()
    with _schwab_session(ctx) as session:
        chain = SchwabMarketData(session).option_chain(s.polygon_options_underlying, day)
    if not chain:
        return Status.FAIL, f"{s.schwab_base_url} listed no quoted {s.polygon_options_underlying} contract expiring {day}"
    crossed = [q.symbol for q in chain if q.bid > q.ask]
    if crossed:
        return Status.FAIL, f"{len(crossed)} crossed quotes in the {day} chain (first {crossed[0]})"
    return Status.OK, f"{s.schwab_base_url}: {len(chain)} quoted contracts expiring {day}"


def check_broker(ctx: Context) -> tuple[Status, str]:
    """The broker the gate routes to answers for our account (account numbers, positions)."""
    route = _route(ctx.settings)
    if route.broker != "schwab":
        return Status.OK, "paper fill model, in process: no broker to reach"
    from alphagen_core.adapters.schwab.execution import SchwabExecution

    with _schwab_session(ctx) as session:
        positions = SchwabExecution(session, live_enabled=ctx.settings.live_enabled).positions()
    shorts = sum(1 for p in positions if p.quantity < 0)
    return Status.OK, (f"{ctx.settings.schwab_base_url}: account found, {len(positions)} position(s)"
                       f"{f', {shorts} short' if shorts else ''}")


def check_flatfiles(ctx: Context) -> tuple[Status, str]:
    """The flat files replays read (a folder in key layout, or the S3 bucket): the latest
    day's stocks file. Trading does not read them, so a problem here is a warning."""
    from alphagen_core.adapters.polygon.flatfiles import STOCKS_PREFIX

    s = ctx.settings
    source = s.alphagen_flatfiles_source
    if source.strip().lower() == "s3":
        where = f"s3://{s.polygon_s3_bucket} at {s.polygon_s3_endpoint}"
        try:
            keys = _s3_stock_keys(ctx, STOCKS_PREFIX)
        except Exception as exc:  # noqa: BLE001 - reported as the check's warning
            return Status.WARN, f"{where}: {_describe(exc)} (replays need the flat files; trading does not)"
    else:
        where = str(Path(source).resolve())
        keys = sorted(str(p.relative_to(source)) for p in Path(source).glob(f"{STOCKS_PREFIX}/*/*/*.csv.gz"))
    if not keys:
        return Status.WARN, f"no stocks minute files at {where} (replays need them; trading does not)"
    latest = keys[-1].rsplit("/", 1)[-1].removesuffix(".csv.gz")
    return Status.OK, f"{where}: latest stocks day {latest}"


def _s3_stock_keys(ctx: Context, prefix: str) -> list[str]:
    import boto3
    from botocore.config import Config

    s = ctx.settings
    client = boto3.session.Session().client(
        "s3", endpoint_url=s.polygon_s3_endpoint, region_name="us-east-1",
        aws_access_key_id=s.polygon_s3_access_key.get_secret_value(),
        aws_secret_access_key=s.polygon_s3_secret_key.get_secret_value(),
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, connect_timeout=ctx.timeout_s,
                      read_timeout=ctx.timeout_s, retries={"max_attempts": 2, "mode": "standard"}))
    year = ctx.now().year
    for y in (year, year - 1):  # early January: the year's first file may not be out yet
        listed = client.list_objects_v2(Bucket=s.polygon_s3_bucket, Prefix=f"{prefix}/{y}/", MaxKeys=1000)
        keys = sorted(o["Key"] for o in listed.get("Contents", []))
        if keys:
            return keys
    return []


# ---- clock -----------------------------------------------------------------------------------------


def check_clock(ctx: Context) -> tuple[Status, str]:
    """This machine's clock against the data source's, from the HTTP `Date` header (whole
    seconds) of a few requests: each bounds the offset to an interval (server second + 1 s
    wide, widened by the round trip); their intersection narrows as the samples fall across
    second boundaries. Wall clocks are compared (a simulated session clock maps onto this
    machine's wall clock)."""
    import httpx

    s = ctx.settings
    if s.alphagen_data_provider == "schwab":
        url, headers, source = s.schwab_base_url + "/", {}, "Schwab"
    else:
        url = s.polygon_rest_url + "/v1/marketstatus/now"  # cheap, and documented upstream
        headers = {"Authorization": f"Bearer {s.polygon_api_key.get_secret_value()}"}
        source = "Polygon"
    answers: list[httpx.Response] = []

    def date_header() -> str | None:
        answers.append(httpx.get(url, headers=headers, timeout=ctx.timeout_s))
        return answers[-1].headers.get("date")

    try:
        lo, hi = offset_bounds(date_header)
    except httpx.HTTPError as exc:
        raise CheckFailed(f"{source} at {url.split('/v1/')[0]} did not answer: {_describe(exc)}") from None
    offset, spread = (lo + hi) / 2, (hi - lo) / 2
    text = f"{offset:+.2f} s ± {spread:.2f} s against {source} ({url.split('/v1/')[0]}, Date header)"
    if market := _market_status(answers[-1]):
        text += f"; {source} says the market is {market}"
    if abs(offset) > CLOCK_TOLERANCE_S:
        way = "behind" if offset > 0 else "ahead of"
        return Status.FAIL, f"this machine's clock is {abs(offset):.1f} s {way} {source}'s: fix NTP ({text})"
    return Status.OK, text


def _market_status(response) -> str | None:
    """`market` of a /v1/marketstatus/now answer (open, extended-hours, closed), if it is one."""
    try:
        body = response.json() if response.status_code == 200 else None
    except ValueError:
        return None
    market = body.get("market") if isinstance(body, dict) else None
    return market if isinstance(market, str) else None


def offset_bounds(get_date: Callable[[], str | None], samples: int = 4, gap_s: float = 0.27) -> tuple[float, float]:
    """(low, high) of server time minus local time, from `samples` Date headers."""
    lo, hi = float("-inf"), float("inf")
    for i in range(samples):
        sent = time.time()
        header = get_date()
        received = time.time()
        if not header:
            raise ValueError("the answer has no Date header")
        server = email.utils.parsedate_to_datetime(header).timestamp()
        # the server's clock read [server, server + 1) at some moment between sent and received
        lo, hi = max(lo, server - received), min(hi, server + 1 - sent)
        if i + 1 < samples:
            time.sleep(gap_s)
    if lo > hi:  # the server's clock stepped between samples: keep the latest bounds' middle
        lo = hi = (lo + hi) / 2
    return lo, hi


# ---- disk and DuckDB ----------------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check_disk(ctx: Context) -> tuple[Status, str]:
    """Free space on every filesystem the service writes to (DuckDB, the Dagster home, caches)."""
    s = ctx.settings
    paths = {"duckdb": Path(s.alphagen_duckdb_path).parent, "dagster home": ctx.home, "cache": Path(s.alphagen_cache_dir)}
    by_device: dict[int, tuple[Path, list[str]]] = {}
    for what, path in paths.items():
        where = _existing(path)
        entry = by_device.setdefault(where.stat().st_dev, (where, []))
        entry[1].append(what)
    parts, low = [], []
    for where, whats in by_device.values():
        free = shutil.disk_usage(where).free
        text = f"{free / GIB:.1f} GiB free at {where} ({', '.join(whats)})"
        parts.append(text)
        if free < ctx.min_free_bytes:
            low.append(text)
    if low:
        return Status.FAIL, f"less than {ctx.min_free_bytes / GIB:g} GiB: {'; '.join(low)}"
    return Status.OK, "; ".join(parts)


def check_duckdb(ctx: Context) -> tuple[Status, str]:
    """The file opens for writing (so no other process holds it for long) and its folder takes
    a new file. The connection is closed at once; nothing is written to the tables."""
    from alphagen_core.persistence.store import Store, StoreLockedError

    path = Path(ctx.settings.alphagen_duckdb_path).resolve()
    folder = _existing(path.parent)  # the first write creates the missing folders
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".alphagen-doctor-") as probe:
        probe.write(b"ok")
        probe.flush()
        os.fsync(probe.fileno())
    if not path.exists():
        return Status.OK, f"{path} not created yet (the first run creates it); {folder} is writable"
    started = time.monotonic()
    try:
        with Store(path, lock_timeout_s=DUCKDB_LOCK_WAIT_S).connect() as con:
            opened = time.monotonic()
            tables = con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()[0]
    except StoreLockedError:
        return Status.FAIL, f"{path} stayed locked by another process for {DUCKDB_LOCK_WAIT_S:g} s"
    held = time.monotonic() - opened
    return Status.OK, (f"{path} opened for writing after {1000 * (opened - started):.0f} ms, held "
                       f"{1000 * held:.0f} ms ({tables} tables)")


# ---- Dagster -------------------------------------------------------------------------------------


def _open(ctx: Context):
    from alphagen_dagster.instance import INITIALISED, open_instance

    if not (ctx.home / INITIALISED).exists():
        raise CheckFailed(f"no Dagster home at {ctx.home}: `alphagen run` creates it")
    return open_instance(ctx.home)


def check_instance(ctx: Context) -> tuple[Status, str]:
    """The Dagster home opens, its run storage answers, and it is the storage the settings ask for."""
    from alphagen_dagster.instance import storage_kind

    with _open(ctx) as instance:
        instance.get_runs(limit=1)
        kind = storage_kind(instance)
    wanted = ctx.settings.alphagen_dagster_storage
    if kind != wanted:
        return Status.FAIL, (f"{ctx.home} uses {kind} storage but ALPHAGEN_DAGSTER_STORAGE={wanted}: "
                             f"point DAGSTER_HOME at a {wanted} home (README, 'Production instance')")
    return Status.OK, f"{ctx.home} ({kind} storage)"


def check_daemon(ctx: Context) -> tuple[Status, str]:
    """Every daemon the instance needs has sent a heartbeat lately (a heartbeat's errors do
    not count against it)."""
    with _open(ctx) as instance:
        required = instance.get_required_daemon_types()
        beats = instance.get_daemon_heartbeats()
    now = time.time()
    ages = {t: now - beats[t].timestamp for t in required if t in beats}
    dead = sorted(t for t in required if ages.get(t, float("inf")) > DAEMON_HEARTBEAT_INTERVAL_S + DAEMON_HEARTBEAT_TOLERANCE_S)
    if dead:
        return Status.FAIL, f"no recent heartbeat from {', '.join(dead)}: is `alphagen run` (dagster-daemon) running?"
    return Status.OK, f"{len(required)} daemons alive (oldest heartbeat {max(ages.values(), default=0.0):.0f} s ago)"


def check_sensors(ctx: Context) -> tuple[Status, str]:
    """The live sensors are on and the daemon evaluated them lately."""
    from alphagen_dagster.instance import sensor_states

    with _open(ctx) as instance:
        states = sensor_states(instance)
    now, problems, ages = time.time(), [], []
    for name in LIVE_SENSORS:
        state = states.get(name)
        if state is None:
            problems.append(f"{name} never evaluated")
            continue
        if state.status.value == "STOPPED":
            problems.append(f"{name} is stopped (turn it on in the UI, or set ALPHAGEN_MODE=paper|live)")
            continue
        last = getattr(state.instigator_data, "last_tick_timestamp", None)
        if last is None or now - last > SENSOR_TICK_MAX_AGE_S:
            problems.append(f"{name} not evaluated for {f'{now - last:.0f} s' if last else 'ever'}")
            continue
        ages.append(now - last)
    if problems:
        return Status.FAIL, "; ".join(problems)
    return Status.OK, f"{', '.join(LIVE_SENSORS)} running (last evaluated {max(ages):.0f} s ago at most)"


def format_report(results: list[CheckResult]) -> str:
    bad = failures(results)
    tail = (f"{len(bad)} check(s) failed: {', '.join(r.name for r in bad)}" if bad
            else "all checks passed")
    return "\n".join([*(r.line() for r in results), tail])


def command(mode: str | None, min_free_bytes: int, echo: Callable[[str], None]) -> int:
    """`alphagen doctor`: print one line per check and the outcome; 1 if any check failed.
    Settings that do not load are the one failed check (named variables, no traceback)."""
    from alphagen_core.operations.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        echo(CheckResult("settings", Status.FAIL, " ".join(str(exc).split())).line())
        echo("1 check(s) failed: settings (nothing else can be checked without them)")
        return 1
    results = run_checks(settings, mode=mode, min_free_bytes=min_free_bytes)
    echo(format_report(results))
    return 1 if failures(results) else 0
