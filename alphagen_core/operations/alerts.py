"""Alerts: a Slack-compatible JSON POST to ALPHAGEN_ALERT_WEBHOOK_URL.

Each alert once, never a storm, and a webhook that is down never slows trading:
- an alert has a dedupe key (`run_failed:<run id>`, `heartbeat_lost:<day>:<run id>`,
  `session_summary:<mode>:<day>`...). The first process to claim the key appends it to the
  ledger ``<ALPHAGEN_CACHE_DIR>/alerts/alerts.jsonl`` (append-only, under an exclusive file
  lock, shared by every process of the service: sensors, the session job, the post-close run)
  and only that process sends it; a key already in the ledger is never sent again;
- at most MAX_PER_HOUR alerts per process an hour are queued; beyond that they are recorded
  in the ledger as suppressed;
- `send` only claims the key and puts the alert on a bounded queue: a daemon thread POSTs it
  with a short timeout and a few retries (ALPHAGEN_ALERT_TIMEOUT_S, ALPHAGEN_ALERT_RETRIES),
  then appends the outcome (delivered / failed) to the ledger. The caller never waits;
  `flush` (called at process exit, bounded) gives queued alerts a last chance.

With no webhook configured alerts are claimed, logged and recorded all the same.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from alphagen_core.operations.redaction import REDACTOR

log = structlog.get_logger(__name__)

MAX_PER_HOUR = 30
QUEUE_SIZE = 100
BACKOFF_S = (0.5, 1.0, 2.0, 4.0)


@dataclass
class Alert:
    key: str
    kind: str  # run_failed | heartbeat_lost | halt | position_mismatch | token_expiry | session_summary
    title: str
    text: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """Slack's incoming-webhook shape (`text`, plus blocks) and the figures for machines."""
        body = f"*{self.title}*" + (f"\n{self.text}" if self.text else "")
        return {
            "text": REDACTOR.redact(body),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": REDACTOR.redact(body)}}],
            "alphagen": REDACTOR.redact_value({"kind": self.kind, "key": self.key, **self.fields}),
        }


class Ledger:
    """The append-only record of alerts: one JSON line per claim and per outcome."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _locked(self):  # noqa: ANN202 - a file object holding the exclusive lock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - closed by the caller
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        return f

    def claim(self, alert: Alert, status: str = "claimed") -> bool:
        """Append the claim unless the key is already recorded; True when this call claimed it."""
        with self._locked() as f:
            f.seek(0)
            for line in f:
                try:
                    if json.loads(line).get("key") == alert.key:
                        return False
                except ValueError:
                    continue
            f.write(json.dumps({"at": time.time(), "key": alert.key, "kind": alert.kind, "status": status,
                                "title": REDACTOR.redact(alert.title)}) + "\n")
            f.flush()
            return True

    def record(self, key: str, status: str, **extra: Any) -> None:
        with self._locked() as f:
            f.write(json.dumps({"at": time.time(), "key": key, "status": status, **extra}, default=str) + "\n")

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


class Alerter:
    def __init__(self, url: str, ledger_path: Path, *, timeout_s: float = 2.0, retries: int = 3) -> None:
        self.url = url
        self.ledger = Ledger(ledger_path)
        self.timeout_s, self.retries = timeout_s, retries
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._recent: deque[float] = deque()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def send(self, key: str, kind: str, title: str, text: str = "", **fields: Any) -> bool:
        """Claim and queue the alert (never blocks); False if it was already sent or dropped."""
        alert = Alert(key, kind, title, text, fields)
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] > 3600:
                self._recent.popleft()
            storm = len(self._recent) >= MAX_PER_HOUR
        try:
            if not self.ledger.claim(alert, "suppressed" if storm else "claimed"):
                return False
        except OSError as exc:
            log.warning("alert.ledger_unavailable", key=key, error=type(exc).__name__)
            return False
        if storm:
            log.warning("alert.suppressed", key=key, kind=kind, title=title)
            return False
        with self._lock:
            self._recent.append(now)
        log.warning("alert", key=key, kind=kind, title=title, text=text)
        if not self.url:
            self.ledger.record(key, "logged")
            return True
        try:
            self._idle.clear()
            self._queue.put_nowait(alert)
        except queue.Full:
            self.ledger.record(key, "dropped", reason="queue full")
            return False
        self._start()
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="alphagen-alerts", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while True:
                try:
                    alert = self._queue.get(timeout=1.0)
                except queue.Empty:
                    self._idle.set()
                    continue
                if alert is None:
                    self._idle.set()
                    return
                self._deliver(client, alert)
                if self._queue.empty():
                    self._idle.set()

    def _deliver(self, client: httpx.Client, alert: Alert) -> None:
        error = ""
        for attempt in range(self.retries + 1):
            try:
                response = client.post(self.url, json=alert.payload())
                if response.status_code < 300:
                    self.ledger.record(alert.key, "delivered", attempts=attempt + 1)
                    return
                error = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # the webhook refuses this alert: retrying changes nothing
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            if attempt < self.retries:
                time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        self.ledger.record(alert.key, "failed", error=error)
        log.warning("alert.not_delivered", key=alert.key, error=error)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait (bounded) until the queued alerts are delivered or given up."""
        if self._thread is None:
            return True
        return self._idle.wait(timeout_s)


_alerters: dict[tuple[str, str], Alerter] = {}
_alerters_lock = threading.Lock()


def ledger_path(cache_dir: Path | str) -> Path:
    return Path(cache_dir).resolve() / "alerts" / "alerts.jsonl"


def alerter(settings: Any) -> Alerter:
    """This process's alerter for the settings' webhook and cache folder."""
    url = settings.alphagen_alert_webhook_url.get_secret_value()
    REDACTOR.add(url)
    path = ledger_path(settings.alphagen_cache_dir)
    with _alerters_lock:
        found = _alerters.get((url, str(path)))
        if found is None:
            found = _alerters[(url, str(path))] = Alerter(
                url, path, timeout_s=settings.alphagen_alert_timeout_s, retries=settings.alphagen_alert_retries)
        return found


def send(settings: Any, key: str, kind: str, title: str, text: str = "", **fields: Any) -> bool:
    """Send an alert once (see the module's doc); never raises, never blocks."""
    try:
        return alerter(settings).send(key, kind, title, text, **fields)
    except Exception as exc:  # noqa: BLE001 - alerting must never break what it reports on
        log.warning("alert.failed", key=key, error=type(exc).__name__)
        return False


@atexit.register
def flush_all(timeout_s: float = 5.0) -> None:
    """Give every queued alert of this process a last, bounded chance."""
    deadline = time.monotonic() + timeout_s
    for a in list(_alerters.values()):
        a.flush(max(0.0, deadline - time.monotonic()))
