"""One session process per trading day, and its heartbeat.

The session job takes an exclusive lock on `session-<date>.lock` for its whole life (the OS
drops it when the process dies, even by SIGKILL) and rewrites `session-<date>.heartbeat`
(pid, run id, time) every second. The session sensor reads the heartbeat to tell a live job
from a dead one: Dagster's default run launcher cannot, and a killed run stays STARTED.

The lock file also tells a replay or a dbt build whether the service trades on this machine
today (`live_writers_at`): only then must they leave the DuckDB file free for its writers.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from alphagen_core.domain.calendar import live_session_at

HEARTBEAT_TIMEOUT_S = 20.0
# The last bar's minute run starts at the close and writes within seconds; after this, only a
# session job that is still alive writes.
LAST_MINUTE_RUN_WRITES = dt.timedelta(minutes=5)


class SessionAlreadyRunning(RuntimeError):
    pass


@dataclass(frozen=True)
class Heartbeat:
    pid: int
    host: str
    run_id: str
    at: float  # unix time

    def alive(self, now: float | None = None) -> bool:
        if (now or time.time()) - self.at > HEARTBEAT_TIMEOUT_S:
            return False
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
        return True


def session_dir(cache_dir: Path | str) -> Path:
    """Where the session jobs of a cache folder keep their locks and heartbeats."""
    return Path(cache_dir) / "session"


def _paths(directory: Path, day: str) -> tuple[Path, Path]:
    return directory / f"session-{day}.lock", directory / f"session-{day}.heartbeat"


def live_writers_at(cache_dir: Path | str, now: dt.datetime) -> bool:
    """Whether a live or paper session may be writing the DuckDB file at `now`: `now` is inside
    a session's live window (open - 30 min to close + 30 min), that session's job has started on
    this cache folder (its lock file exists; a killed job is relaunched until the close), and
    either the close is less than LAST_MINUTE_RUN_WRITES ago or the job is still alive (it ends
    after the close: the after-close build usually runs with no writer left). A replay or dbt
    build with another cache folder than the service's cannot see it."""
    sess = live_session_at(now)
    if sess is None:
        return False
    directory, day = session_dir(cache_dir), sess.date.isoformat()
    if not _paths(directory, day)[0].exists():
        return False
    if now < sess.close + LAST_MINUTE_RUN_WRITES:
        return True
    beat = read_heartbeat(directory, day)
    return beat is not None and beat.alive()


def read_heartbeat(directory: Path, day: str) -> Heartbeat | None:
    try:
        return Heartbeat(**json.loads(_paths(directory, day)[1].read_text()))
    except (OSError, ValueError, TypeError):
        return None


class SessionLease:
    def __init__(self, directory: Path, day: str, run_id: str, wait_s: float = 10.0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        lock_path, self._beat_path = _paths(directory, day)
        self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self._fd)
                    raise SessionAlreadyRunning(f"another session process holds {lock_path}") from None
                time.sleep(0.2)
        self._run_id = run_id
        self._last = 0.0
        self.beat(force=True)

    def beat(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last < 1.0:
            return
        self._last = now
        tmp = self._beat_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                   "run_id": self._run_id, "at": now}))
        tmp.replace(self._beat_path)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)

    def __enter__(self) -> SessionLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
