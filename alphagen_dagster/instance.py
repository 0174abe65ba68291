"""The Dagster home the CLI, the webserver and the daemon share, made safe for a CLI user:

- first use: the home is created and its storages initialised once, under a file lock, so two
  commands started together on a new home cannot both run its schema migration (which leaves
  two rows in `alembic_version` and an unusable home);
- runs the CLI starts carry the process that runs them (`alphagen/process`), so a later
  command can tell a run whose process died (SIGKILL, a stopped machine) from one still going,
  mark it failed and free the DuckDB pool slot it held.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROCESS_TAG = "alphagen/process"
# A minute run's bar close in real (unix) time, set by the minute sensor: the minute-run lag
# and the bar-to-order latency are measured from it, whatever clock the session ran on.
BAR_CLOSE_TAG = "alphagen/bar_close_unix"
POOL = "duckdb"
INITIALISED = ".alphagen-initialised"


class BrokenHomeError(RuntimeError):
    """A Dagster home whose storage cannot be used, with what to do about it."""


def dagster_home() -> Path:
    """The instance's folder (DAGSTER_HOME, default .dagster_home/ in the project), ready for
    use; exports DAGSTER_HOME for Dagster."""
    home = prepare_home(Path(os.environ.get("DAGSTER_HOME") or PROJECT_DIR / ".dagster_home"))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def prepare_home(home: Path, storage: str | None = None) -> Path:
    """Create `home` with the project's dagster.yaml (for `storage`, default
    ALPHAGEN_DAGSTER_STORAGE) and initialise its storages, once, under a file lock (a no-op
    once done)."""
    home = home.resolve()
    if (home / INITIALISED).exists():
        return home
    if home.exists() and not home.is_dir():
        raise BrokenHomeError(f"DAGSTER_HOME {home} is a file, not a folder: point DAGSTER_HOME at a folder "
                              "(a new one is created)")
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / ".alphagen-init.lock"):
        if not (home / INITIALISED).exists():
            if not (home / "dagster.yaml").exists():
                shutil.copyfile(instance_template(storage), home / "dagster.yaml")
            with open_instance(home) as instance:  # creates and stamps every storage
                instance.get_runs(limit=1)
                instance.event_log_storage.get_concurrency_keys()
                instance.all_instigator_state()
            (home / INITIALISED).touch()
    return home


def instance_template(storage: str | None = None) -> Path:
    """The dagster.yaml a new home gets: ALPHAGEN_DAGSTER_STORAGE=sqlite (the embedded
    default, dagster.yaml) or postgres (dagster.postgres.yaml; its connection from the
    ALPHAGEN_PG_* environment variables). An existing home keeps its own dagster.yaml."""
    if storage is None:
        from alphagen_core.operations.settings import load_settings

        storage = load_settings().alphagen_dagster_storage
    return PROJECT_DIR / ("dagster.postgres.yaml" if storage == "postgres" else "dagster.yaml")


def storage_kind(instance) -> str:
    """"postgres" or "sqlite": where this instance keeps its runs."""
    return "postgres" if "postgres" in type(instance.run_storage).__module__ else "sqlite"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def open_instance(home: Path | None = None, *, for_cli_run: bool = False):
    """The instance of `home` (default: DAGSTER_HOME), with a home broken by a concurrent
    first use explained.

    `for_cli_run`: the same storages, without capturing the run's stdout and stderr. Dagster's
    local capture mirrors them to the terminal through `tail -F` child processes in the
    command's process group: a Ctrl-C at the terminal killed those (two KeyboardInterrupt
    tracebacks) and the replay's lines stopped reaching the screen. A CLI run's output goes
    to the terminal and its log file instead; its events are in the UI as for any run."""
    from dagster import DagsterInstance

    home = home or Path(os.environ["DAGSTER_HOME"])
    try:
        instance = DagsterInstance.from_config(str(home), _cli_config(home) if for_cli_run else "dagster.yaml")
    except Exception as exc:
        if "more than one head" in str(exc):
            raise BrokenHomeError(
                f"the Dagster home {home} was initialised by two processes at once (before this "
                f"version) and its run history cannot be opened; move it aside "
                f"(mv {home} {home}.broken) and run again: a new home is created safely"
            ) from None
        raise
    with instance:
        yield instance


def _cli_config(home: Path) -> str:
    import yaml

    config = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
    config["compute_logs"] = {  # the module path Dagster's documentation gives for dagster.yaml
        "module": "dagster.core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}
    name = ".alphagen-cli.yaml"
    (home / name).write_text(yaml.safe_dump(config))
    return name


def this_process() -> str:
    """host:pid:start time (the start time tells a reused pid from the original process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:  # field 22 of /proc/PID/stat, after the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def _process_gone(tag: str) -> bool:
    host, pid, started = tag.rsplit(":", 2)
    if host != socket.gethostname():
        return False  # another machine's run: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return started != "?" and _start_time(int(pid)) != started


def release_dead_runs(instance, echo: Callable[[str], None]) -> list[str]:
    """Mark failed every unfinished CLI run whose process is gone, and free the pool slots
    of those runs and of any finished run that still holds one. Returns the runs released."""
    from dagster import DagsterRunStatus, RunsFilter

    released = []
    unfinished = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.CANCELING]
    for run in instance.get_runs(RunsFilter(statuses=unfinished)):
        tag = run.tags.get(PROCESS_TAG)
        if tag and _process_gone(tag):
            instance.report_run_failed(run, message="its process died (found by a later alphagen command)")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            echo(f"run {run.run_id} was left unfinished by a process that died: marked failed, "
                 f"its {POOL} slot freed")
            released.append(run.run_id)
    for run_id in set(slot_holders(instance)) - set(released):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            echo(f"run {run_id} had finished but still held the {POOL} slot: freed")
            released.append(run_id)
    return released


def sensor_states(instance) -> dict:
    """The stored state of every sensor the daemon has seen, by sensor name. Read with
    `.value`s (`state.status.value == "STOPPED"`): Dagster's enums for them are not public."""
    return {s.instigator_name: s for s in instance.all_instigator_state() if s.instigator_type.value == "SENSOR"}


def slot_holders(instance) -> list[str]:
    """The runs holding the DuckDB pool's slot now."""
    return [slot.run_id for slot in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots]
