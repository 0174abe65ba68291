"""One service per Dagster home: `alphagen run` and `make ui` (scripts/ui.sh) refuse to start
a second daemon on a home another service serves, since it would evaluate every sensor twice.
The lock lives as long as any of the service's processes, and no longer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from alphagen_dagster.service import (
    SERVICE_LOCK,
    ServiceRunningError,
    hold_service_lock,
)
from tests.processes import PROJECT_DIR, clean_environ, venv_bin

# A starter that takes the lock and hands it to a child (as the service hands it to the daemon
# and the webserver), then waits to be killed.
_STARTER = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from alphagen_dagster.service import hold_service_lock
    fd = hold_service_lock(Path(sys.argv[1]))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], pass_fds=(fd,))
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def _refused_message(home, pid: int) -> str:
    return (f"another service (started by pid {pid}) already serves the Dagster home {home}: a second daemon "
            "would run every sensor twice; stop that one first")


@pytest.mark.integration
def test_the_lock_outlives_a_killed_starter_while_its_child_lives_and_no_longer(tmp_path):
    starter = subprocess.Popen([sys.executable, "-c", _STARTER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    child = int(starter.stdout.readline())
    try:
        with pytest.raises(ServiceRunningError) as refused:
            hold_service_lock(tmp_path)
        assert str(refused.value) == _refused_message(tmp_path, starter.pid)
        starter.kill()
        starter.wait(timeout=30)
        with pytest.raises(ServiceRunningError) as refused:  # the child still holds it, and is named
            hold_service_lock(tmp_path)
        assert f"(started by pid {starter.pid}, which has exited; held by pid {child} python" in str(refused.value)
    finally:
        os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        try:
            fd = hold_service_lock(tmp_path)
            break
        except ServiceRunningError:
            assert time.monotonic() < deadline, "the lock outlived every process holding it"
            time.sleep(0.1)
    os.close(fd)
    assert (tmp_path / SERVICE_LOCK).read_text() == f"{os.getpid()}\n"


@pytest.mark.e2e
def test_alphagen_run_and_make_ui_refuse_a_home_another_service_serves(tmp_path):
    home = tmp_path / "dagster_home"
    env = clean_environ(DAGSTER_HOME=str(home), ALPHAGEN_DUCKDB_PATH=str(tmp_path / "alphagen.duckdb"),
                        ALPHAGEN_UI_PORT="1")  # never bound: both must stop before serving anything
    subprocess.run([sys.executable, "-c", "from alphagen_dagster.instance import dagster_home; dagster_home()"],
                   env=env, check=True, timeout=120)
    held = hold_service_lock(home)
    try:
        for command in ([venv_bin("alphagen"), "run", "--port", "1"], ["bash", "scripts/ui.sh"]):
            done = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 1 and not done.stdout.strip(), (command, done.stdout, done.stderr)
            assert done.stderr.strip().splitlines()[-1].endswith(_refused_message(home, os.getpid())), done.stderr
        assert not (home / "service-logs").exists()  # `alphagen run` started nothing
    finally:
        os.close(held)
