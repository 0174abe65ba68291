"""The warm dbt worker (`alphagen_dagster/dbt_executable.py`): a build handed to it through
`alphagen-dbt`, as DbtCliResource runs it, gives what dbt's own process gives (the nodes and
their results, the marts, the exit code), and the worker never outlives the process that
started it. dbt's JSON log lines carry the pid of the process that ran dbt: the worker's, or
the `alphagen-dbt` process's own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from alphagen_core.operations.settings import Settings
from alphagen_core.persistence.store import RowMeta, Store
from alphagen_dagster import dbt_executable
from alphagen_dagster.dbt import run_dbt, start_warm_dbt, warm_dbt_builds
from alphagen_dagster.dbt_executable import (
    DBT_PROJECT_DIR,
    DUCKDB_PATH_VARIABLE,
    PARSE_DUCKDB_PATH,
    SETUP_PARSE_STATE,
    WORKER_VARIABLE,
    DbtMissing,
    WarmDbt,
    dbt_python,
    dbt_version,
    parse_path,
    worker_command,
)
from tests.test_dbt_pnl import CALL, DAY2, V_NEW, at, execution, read, write_good_data

pytestmark = pytest.mark.integration


def build(db: Path, target: Path, worker: WarmDbt | None = None) -> tuple[int, dict[str, str], set[int]]:
    """`dbt build` through DbtCliResource: its exit code, each node's status, and the pids that
    logged."""
    previous = os.environ.pop(WORKER_VARIABLE, None)
    if worker is not None:
        os.environ[WORKER_VARIABLE] = str(worker.socket_path)
    try:
        invocation = run_dbt(["build", "--exclude-resource-type", "unit_test"], db, target, raise_on_error=False)
        events = [event.raw_event for event in invocation.stream_raw_events()]
    finally:
        os.environ.pop(WORKER_VARIABLE, None)
        if previous is not None:
            os.environ[WORKER_VARIABLE] = previous
    results = {e["data"]["node_info"]["unique_id"]: e["data"]["node_info"]["node_status"]
               for e in events if e["info"]["name"] in ("LogModelResult", "LogTestResult")}
    return invocation.process.returncode, results, {e["info"]["pid"] for e in events}


def twin_files(tmp_path: Path, broken: bool = False, name: str = "a.duckdb") -> tuple[Path, Path]:
    """Two DuckDB files named `name` with the same rows (with an execution whose intent is
    missing, if broken)."""
    first = tmp_path / "first" / name
    first.parent.mkdir()
    store = Store(first)
    write_good_data(store)
    if broken:
        orphan = execution("orphan-e1", "no-such-intent", "p4", at(DAY2, 11, 0), CALL,
                           "SELL_TO_OPEN", "CANCELED", 1, None, 0.0, 0.0)  # fmt: skip
        store.write({"executions": [orphan]}, RowMeta("replay", DAY2, V_NEW, "run-day2"))
    second = tmp_path / "second" / name
    second.parent.mkdir()
    shutil.copy(first, second)
    return first.resolve(), second.resolve()


def marts(db: Path) -> dict[str, list[dict] | None]:
    """Each mart's rows, or None where the build made no such table."""
    made = {r["table_name"] for r in read(str(db), "SELECT table_name FROM information_schema.tables")}
    return {t: read(str(db), f"SELECT * FROM {t} ORDER BY ALL") if t in made else None
            for t in ("daily_pnl", "trades", "performance_summary")}


# A file named as setup's parse file is parsed from setup's state (dbt_executable.parse_path),
# another in full under its own path: both builds must be dbt's own.
@pytest.mark.parametrize(("broken", "name"), [(False, PARSE_DUCKDB_PATH.name), (True, "research.duckdb")],
                         ids=["passing", "a failing test"])
def test_a_build_in_the_worker_equals_dbts_own(tmp_path: Path, broken: bool, name: str):
    in_worker, by_dbt = twin_files(tmp_path, broken, name)
    target = tmp_path / "target"
    worker = WarmDbt(in_worker, target)
    try:
        code, results, pids = build(in_worker, target, worker)
    finally:
        worker.close()
    own_code, own_results, own_pids = build(by_dbt, tmp_path / "own-target")
    assert pids == {worker.pid} and worker.pid not in own_pids  # the worker ran it; dbt's own process the other
    assert (code, results) == (own_code, own_results)
    assert code == (1 if broken else 0) and len(results) > 20
    assert ("fail" in results.values()) == broken
    built = marts(in_worker)
    assert built == marts(by_dbt)
    assert bool(built["daily_pnl"]) != broken  # a failed test skips the marts after it


def test_a_file_named_as_setups_is_parsed_from_setups_state_and_another_under_its_own_path(tmp_path: Path):
    target = tmp_path / "target"
    other = str(tmp_path / "research.duckdb")
    assert parse_path(other, target) == other and not target.exists()
    assert parse_path(str(tmp_path / PARSE_DUCKDB_PATH.name), target) == str(PARSE_DUCKDB_PATH.resolve())
    state = target / SETUP_PARSE_STATE.name
    assert state.read_bytes() == SETUP_PARSE_STATE.read_bytes()
    state.write_bytes(b"a later parse")  # the target's own state is left alone
    assert parse_path(str(tmp_path / PARSE_DUCKDB_PATH.name), target) == str(PARSE_DUCKDB_PATH.resolve())
    assert state.read_bytes() == b"a later parse" and sorted(p.name for p in target.iterdir()) == [state.name]


def test_a_build_that_comes_before_the_worker_listens_waits_for_it(tmp_path: Path):
    """On a loaded machine the dbt step's build can come before the worker has bound its socket
    (its folder, made by the run, is there): the build waits for it rather than start dbt."""
    db, _ = twin_files(tmp_path)
    socket_path = Path(tempfile.mkdtemp(prefix="alphagen-dbt-")) / "worker.sock"  # as WarmDbt makes it
    built: list[tuple[int, dict[str, str], set[int]]] = []
    builder = threading.Thread(target=lambda: built.append(build(db, tmp_path / "target", SimpleNamespace(
        socket_path=socket_path))))
    builder.start()
    time.sleep(2)  # `alphagen-dbt build` has started and is waiting for the socket
    worker = subprocess.Popen(worker_command(socket_path, tmp_path / "target"), stdin=subprocess.PIPE,
                              cwd=DBT_PROJECT_DIR, env={**os.environ, DUCKDB_PATH_VARIABLE: str(db)},
                              start_new_session=True)
    try:
        builder.join(timeout=300)
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
    [(code, results, pids)] = built
    assert code == 0 and results and pids == {worker.pid}


def test_a_worker_whose_parse_failed_declines_and_dbt_runs_itself(tmp_path: Path):
    db, _ = twin_files(tmp_path)
    worker = WarmDbt(Path("relative/alphagen.duckdb"), tmp_path / "target")  # the profile refuses it: no parse
    try:
        code, results, pids = build(db, tmp_path / "target", worker)
    finally:
        worker.close()
    assert code == 0 and results and worker.pid not in pids


def test_a_build_interrupted_by_ctrl_c_leaves_the_worker_building_again_and_the_file_free(tmp_path: Path):
    """(dbt's own process, sent SIGINT as its first node starts, may end 0 or 2: only what
    follows is checked.)"""
    db, _ = twin_files(tmp_path)
    target = tmp_path / "target"
    worker = WarmDbt(db, target)
    env = {**os.environ, WORKER_VARIABLE: str(worker.socket_path), DUCKDB_PATH_VARIABLE: str(db),
           "DBT_LOG_FORMAT": "json", "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR), "DBT_TARGET_PATH": str(target)}
    command = [str(Path(sys.executable).with_name("alphagen-dbt")), "build", "--exclude-resource-type", "unit_test"]
    try:
        interrupted = subprocess.Popen(command, cwd=DBT_PROJECT_DIR, env=env, stdout=subprocess.PIPE, text=True)
        for line in interrupted.stdout:  # the build has begun: its first node started
            if json.loads(line)["info"]["name"] == "NodeStart":
                break
        interrupted.send_signal(signal.SIGINT)
        interrupted.communicate(timeout=120)
        again = subprocess.run(command, cwd=DBT_PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120)
        pids = {json.loads(line)["info"]["pid"] for line in again.stdout.splitlines()}
    finally:
        worker.close()
    assert again.returncode == 0 and pids == {worker.pid}
    assert read(str(db), "SELECT count(*) AS n FROM daily_pnl")[0]["n"] > 0  # and the file is free


def test_without_a_temp_folder_for_its_socket_the_build_starts_dbt_as_usual(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    cfg = Settings(alphagen_cache_dir=tmp_path / "cache")
    start_warm_dbt(cfg, tmp_path / "x.duckdb")  # does not raise
    with warm_dbt_builds(cfg, tmp_path / "x.duckdb") as warm:
        assert warm is False


STARTER = """
import sys, time
from pathlib import Path
from alphagen_dagster.dbt_executable import WarmDbt
worker = WarmDbt(Path(sys.argv[1]), Path(sys.argv[2]))
print(worker.pid, worker.socket_path, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ", 1)[1].startswith("Z"))


def test_the_worker_ends_with_the_process_that_started_it(tmp_path: Path):
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path / "x.duckdb"), str(tmp_path / "target")],
                               stdout=subprocess.PIPE, text=True)
    pid, socket_path = starter.stdout.readline().split()
    deadline = time.monotonic() + 60
    while not Path(socket_path).exists():  # it is listening
        assert time.monotonic() < deadline and _alive(int(pid)), "the worker never listened"
        time.sleep(0.05)
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    deadline = time.monotonic() + 60
    while _alive(int(pid)):
        assert time.monotonic() < deadline, "the worker outlived the process that started it"
        time.sleep(0.05)
    assert not Path(socket_path).parent.exists()


def test_alphagen_dbt_answers_the_version_of_dbts_environment_without_dbt():
    done = subprocess.run([str(Path(sys.executable).with_name("alphagen-dbt")), "--version"],
                          capture_output=True, text=True, timeout=30, check=True)
    asked = subprocess.run([str(dbt_python()), "-c",
                            "from importlib.metadata import version; print(version('dbt-core'))"],
                           capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.startswith(f"Core:\n  - installed: {asked.stdout.strip()}\n")
    assert dbt_version("dbt-core") == asked.stdout.strip()


def test_without_dbts_environment_the_error_says_to_run_make_setup(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(dbt_executable, "DBT", tmp_path / "bin" / "dbt")  # a link to nothing
    with pytest.raises(DbtMissing, match=rf"dbt-core is not installed in {tmp_path} \(run `make setup`\)"):
        dbt_version("dbt-core")


def test_the_dagster_processes_import_no_dbt():
    """dbt's environment is its own: the main code location, loaded as a code server or a
    replay loads it, leaves dbt-core out (dagster-dbt finds none to import)."""
    probe = "import sys, alphagen_dagster.definitions; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dbt'))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert loaded.stdout.strip() == "[]"
