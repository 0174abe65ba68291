"""`alphagen-dbt`, the dbt executable `DbtCliResource` runs, and the warm dbt worker it hands
builds to.

`alphagen-dbt ARGS`:
- `--version` is answered from the metadata of dbt's environment. DbtCliResource asks it once
  per resource instance (every Dagster step) to tell dbt-core from dbt Fusion, and dbt answers
  by importing its whole CLI and asking PyPI for the latest release. The answer here has the
  same form (`Core: - installed: X.Y.Z`), from the same installed dbt-core.
- `build ...`, when the run started a warm worker (`WORKER_VARIABLE` names its socket), is run
  by that worker (one still starting is waited for a few seconds); when there is none, or it
  cannot take the build, by dbt itself as below.
- anything else is dbt itself (`exec`, same process).

dbt lives in an environment of its own (`.venv-dbt`, from `dbt_pnl/requirements.lock`), which
`make setup` links as `.venv/bin/dbt`: the Dagster processes then import dagster-dbt without
dbt-core, which would otherwise import most of dbt into each of them (ARCHITECTURE.md, "dbt in an
environment of its own"). So this module imports nothing but the standard library: the worker
runs it as a script on dbt's interpreter.

Why a warm worker: a dbt process spends most of its time starting, importing dbt-core and
parsing the project, and the build itself is short (BENCHMARKS.md, "The warm dbt worker").
The replay step starts the worker as the run begins, so that work happens on the other core
while the days replay; the dbt step's build then runs on the parsed manifest
(`dbtRunner(manifest=...)`, dbt's programmatic API). The build gets this process's command
line, environment, working directory, stdout and stderr (the descriptors, passed over the
socket), so DbtCliResource reads dbt's own JSON log lines and exit code either way.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

# Set, while the dbt step runs dbt, to the socket of the worker the run started.
WORKER_VARIABLE = "ALPHAGEN_DBT_WORKER"
# How long a build waits for a worker that is still starting (on a loaded machine the build can
# come before the worker listens); a worker that takes longer is not worth waiting for.
WORKER_START_WAIT_S = 10.0
DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_pnl"
# The profile reads the DuckDB file from this variable (an absolute path).
DUCKDB_PATH_VARIABLE = "ALPHAGEN_DUCKDB_PATH"
# Parsing never opens the file, but the profile wants an absolute path; its name is the
# database the manifest gives each table (`dagster/table_name`): the default file's.
PARSE_DUCKDB_PATH = Path("/tmp/alphagen-dbt-parse/alphagen.duckdb")
# dbt's executable, which `make setup` links to dbt's environment (.venv-dbt).
DBT = Path(sys.executable).with_name("dbt")
# dbt's partial-parse state of the project as `make setup` parsed it, under PARSE_DUCKDB_PATH.
SETUP_PARSE_STATE = DBT_PROJECT_DIR / "target" / "partial_parse.msgpack"
_QUIET = ("--log-level", "none", "--log-level-file", "none", "--no-use-colors")


class DbtMissing(RuntimeError):
    """dbt's environment lacks a package (never made, or removed)."""


def main() -> None:
    args = sys.argv[1:]
    if args in (["--version"], ["-v"]):
        try:
            print(f"Core:\n  - installed: {dbt_version('dbt-core')}\n\nPlugins:\n  - duckdb: {dbt_version('dbt-duckdb')}")
        except DbtMissing as exc:
            sys.exit(f"alphagen-dbt: {exc}")
        return
    if args[:1] == ["build"] and (worker := os.environ.get(WORKER_VARIABLE)):
        code = _build_in_worker(worker, args)
        if code is not None:
            sys.exit(code)
    os.execv(DBT, [str(DBT), *args])


def dbt_environment() -> Path:
    """The virtual environment dbt is installed in (the link's target is its bin/dbt)."""
    return DBT.resolve().parent.parent


def dbt_python() -> Path:
    """The interpreter of dbt's environment."""
    return dbt_environment() / "bin" / "python"


def dbt_version(package: str) -> str:
    """The version of `package` (dbt-core, dbt-duckdb) installed in dbt's environment."""
    environment = dbt_environment()
    site = environment / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    for dist in distributions(name=package, path=[str(site)]):
        return dist.version
    raise DbtMissing(f"{package} is not installed in {environment} (run `make setup`)")


def _build_in_worker(socket_path: str, args: list[str]) -> int | None:
    """The build's exit code from the worker, or None when no worker takes it (it has ended, or
    its parse failed: dbt itself then runs here and reports the parse's errors)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            _connect(sock, socket_path)
            socket.send_fds(sock, [b"."], [sys.stdout.fileno(), sys.stderr.fileno()])
            request = {"args": args, "cwd": os.getcwd(), "env": dict(os.environ)}
            sock.sendall(json.dumps(request).encode() + b"\n")
            replies = sock.makefile("r")
            if replies.readline().strip() != "accepted":
                return None
            worker_pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
        except OSError:
            return None
        # A Ctrl-C or a cancelled run's signal reaches this process, not the worker (it has a
        # session of its own): passed on as SIGINT, dbt stops as its own process would.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: os.kill(worker_pid, signal.SIGINT))
        code = replies.readline().strip()
    if not code:
        print("alphagen-dbt: the dbt worker ended before the build did", file=sys.stderr)
        return 2
    return int(code)


def _connect(sock: socket.socket, socket_path: str) -> None:
    """Connect to the worker, waiting for one that is still starting: its folder is there (the
    run made it; the worker removes it as it ends) but its socket is not listening yet."""
    deadline = time.monotonic() + WORKER_START_WAIT_S
    while True:
        try:
            sock.connect(socket_path)
            return
        except (FileNotFoundError, ConnectionRefusedError):
            if not Path(socket_path).parent.is_dir() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class WarmDbt:
    """The run's handle on its worker: started before the days replay, handed the dbt step's
    builds, ended with `close` (or when this process ends: the worker exits on its stdin's
    EOF, so it never outlives the run, even one that is killed)."""

    def __init__(self, db_path: Path, target: Path) -> None:
        # a folder of mode 0700: the socket is the run's alone (the worker removes it as it ends)
        self.socket_path = Path(tempfile.mkdtemp(prefix="alphagen-dbt-")) / "worker.sock"
        self._proc = subprocess.Popen(
            worker_command(self.socket_path, target),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=DBT_PROJECT_DIR,
            env={**os.environ, DUCKDB_PATH_VARIABLE: str(db_path)},
            # Not in the terminal's process group: Ctrl-C is the replay's to handle (it stops at
            # a day boundary and still builds the marts).
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def worker_command(socket_path: Path, target: Path) -> list[str]:
    """This file as a script on dbt's interpreter, isolated: with `-I` neither PYTHONPATH nor the
    script's own folder is on its path (there `alphagen_dagster/dbt.py` would stand for dbt)."""
    return [str(dbt_python()), "-I", __file__, str(socket_path), str(target)]


# --- the worker ---------------------------------------------------------------------------------

def _serve(socket_path: str, target: str) -> None:
    threading.Thread(target=_exit_when_the_run_ends, args=(Path(socket_path).parent,), daemon=True).start()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen()  # a build that comes before the parse is done waits here for it
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    os.environ[DUCKDB_PATH_VARIABLE] = parse_path(os.environ[DUCKDB_PATH_VARIABLE], Path(target))
    parsed = dbtRunner().invoke(["parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
                                 str(DBT_PROJECT_DIR), "--target-path", target, *_QUIET])
    runner = dbtRunner(manifest=parsed.result) if parsed.success else None
    quiet = os.dup(1)  # /dev/null: the worker's own descriptors, restored after each build
    while True:
        conn, _ = server.accept()
        with conn, contextlib.suppress(OSError):  # a caller that went away: wait for the next
            _serve_one(conn, runner, quiet, DuckDBConnectionManager.close_all_connections)


def parse_path(db_path: str, target: Path) -> str:
    """The DuckDB path the worker parses the project under. dbt's partial parse is keyed on the
    profile, the file's path included, so each new file would parse the project in full. A file
    of the name setup parsed for has the same manifest (a DuckDB file's name is its database's),
    so it is parsed under setup's path, from a copy of setup's state when its target has none.
    The builds then run on the manifest against the file itself (each request's environment)."""
    path = Path(db_path)
    if not (path.is_absolute() and path.name == PARSE_DUCKDB_PATH.name and SETUP_PARSE_STATE.exists()):
        return db_path  # a relative path fails the parse, as the profile says why
    state = target / SETUP_PARSE_STATE.name
    if not state.exists():
        target.mkdir(parents=True, exist_ok=True)
        copy = target / f".{state.name}.{os.getpid()}"
        shutil.copyfile(SETUP_PARSE_STATE, copy)
        copy.replace(state)  # whole or not at all, for a second run on the same file
    return str(PARSE_DUCKDB_PATH.resolve())  # as setup's parse spelled it (dbt.duckdb_path_for_dbt)


def _serve_one(conn: socket.socket, runner: Any, quiet: int, release_file: Any) -> None:
    fds: list[int] = []
    try:
        _, fds, _, _ = socket.recv_fds(conn, 1, 2)
        request: dict[str, Any] | None = json.loads(conn.makefile("r").readline())
    except ValueError:
        request = None
    if runner is None or request is None or len(fds) != 2:
        for fd in fds:  # the caller's stdout: its reader waits for every copy to close
            os.close(fd)
        conn.sendall(b"declined\n")
        return
    for fd, into in zip(fds, (1, 2), strict=True):
        os.dup2(fd, into)
        os.close(fd)
    try:
        os.environ.clear()
        os.environ.update(request["env"])  # dbt reads DbtCliResource's flags (DBT_...) from it
        os.chdir(request["cwd"])
        conn.sendall(b"accepted\n")
        try:
            result = runner.invoke(request["args"])
        finally:  # dbt-duckdb keeps the file open until the process ends otherwise
            release_file()
        if result.exception is not None:
            print(f"Encountered an error:\n{str(result.exception) or type(result.exception).__name__}", file=sys.stderr)
    finally:
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
    # dbt's own exit codes: 0 success, 1 a failed node, 2 an error
    conn.sendall(b"0\n" if result.success else b"2\n" if result.exception is not None else b"1\n")


def _exit_when_the_run_ends(socket_dir: Path) -> None:
    sys.stdin.buffer.read()  # returns at EOF: the run closed it, or ended
    shutil.rmtree(socket_dir, ignore_errors=True)
    os._exit(0)  # mid-build too: the build's caller then reports that the worker ended


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
