"""The deployment recipes stay true to the repository: the systemd units verify (with
`systemd-analyze verify` where systemd is installed, else structurally) and run what exists,
the Dockerfile copies only files that exist and starts a command the CLI has, and the backup
script's snapshot imports back into a new DuckDB file."""

from __future__ import annotations

import ast
import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from alphagen_dagster.dbt_executable import dbt_python
from alphagen_dagster.instance import PROJECT_DIR

DEPLOY = PROJECT_DIR / "deploy"
INSTALLED_AT = "/opt/alphagen"  # where the units expect the project


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text())
    return parser


def project_path(path: str) -> Path:
    assert path.startswith(INSTALLED_AT + "/"), path
    return PROJECT_DIR / path.removeprefix(INSTALLED_AT + "/")


@pytest.mark.unit
def test_the_service_unit_restarts_on_failure_and_runs_the_service():
    service = unit("alphagen.service")
    assert service["Service"]["Restart"] == "on-failure"
    assert service["Service"]["KillMode"] == "mixed" and "143" in service["Service"]["SuccessExitStatus"]
    assert service["Install"]["WantedBy"] == "multi-user.target"
    command = shlex.split(service["Service"]["ExecStart"])
    assert command[1:] == ["run"]
    assert os.access(project_path(command[0]), os.X_OK)  # the venv's console script (make setup)
    assert service["Service"]["WorkingDirectory"] == INSTALLED_AT
    example = (DEPLOY / "alphagen.env.example").read_text()
    for name in ("DAGSTER_HOME", "ALPHAGEN_DUCKDB_PATH", "SCHWAB_TOKEN_PATH", "ALPHAGEN_PG_PASSWORD"):
        assert f"\n{name}=" in example
    backup = unit("alphagen-backup.service")
    assert os.access(project_path(shlex.split(backup["Service"]["ExecStart"])[0]), os.X_OK)
    assert unit("alphagen-backup.timer")["Timer"]["OnCalendar"].startswith("Mon..Fri")


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed here")
def test_systemd_analyze_verifies_the_units(tmp_path):
    """The units as installed in this checkout (their /opt/alphagen paths pointed here)."""
    names = ("alphagen.service", "alphagen-backup.service", "alphagen-backup.timer")
    for name in names:
        (tmp_path / name).write_text((DEPLOY / name).read_text().replace(INSTALLED_AT, str(PROJECT_DIR)))
    done = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in names)],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if any(n in line for n in names)]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
            current = ""
    return lines


@pytest.mark.unit
def test_the_dockerfile_copies_files_that_exist_and_starts_a_real_command():
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    ignored = {line.strip() for line in (PROJECT_DIR / ".dockerignore").read_text().splitlines() if line.strip()}
    sources = [source for word, args in instructions if word in ("COPY", "ADD")
               for source in [p for p in shlex.split(args) if not p.startswith("--")][:-1]]  # the last is the target
    for source in sources:
        assert (PROJECT_DIR / source).exists(), f"COPY {source}: no such file in the repository"
        assert source.rstrip("/") not in ignored, f"COPY {source} is excluded by .dockerignore"
    copied = [source.rstrip("/") for source in sources]
    # the files `make setup` needs are all in the image
    for needed in ("requirements.lock", "pyproject.toml", "alphagen_core", "alphagen_dagster", "dbt_pnl",
                   "dagster.yaml", "dagster.postgres.yaml", "workspace.yaml", "deploy/alphagen-gc.pth"):
        assert needed in copied, needed
    [cmd] = [yaml.safe_load(args) for word, args in instructions if word == "CMD"]  # exec form is a JSON list
    from alphagen_dagster.cli import main

    assert cmd[0] == "alphagen" and cmd[1] in main.commands
    options = {opt for p in main.commands[cmd[1]].params for opt in p.opts}
    assert {a for a in cmd[2:] if a.startswith("--")} <= options
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    build = compose["services"]["alphagen"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
    assert compose["services"]["alphagen"]["restart"] == "on-failure"
    assert "deploy/alphagen.env" in (PROJECT_DIR / ".gitignore").read_text()


@pytest.mark.integration
def test_the_backup_script_exports_a_snapshot_that_imports_back(tmp_path):
    source = tmp_path / "alphagen.duckdb"
    with duckdb.connect(str(source)) as con:
        con.execute("CREATE TABLE executions AS SELECT range AS n, 'paper' AS mode FROM range(100)")
    env = {**os.environ, "ALPHAGEN_DUCKDB_PATH": str(source)}
    done = subprocess.run([str(PROJECT_DIR / "scripts" / "backup-duckdb.sh"), str(tmp_path / "backups")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [snapshot] = (tmp_path / "backups").iterdir()
    with duckdb.connect(str(tmp_path / "restored.duckdb")) as con:
        con.execute(f"IMPORT DATABASE '{snapshot}'")
        assert con.execute("SELECT count(*), sum(n) FROM executions WHERE mode = 'paper'").fetchone() == (100, 4950)


@pytest.mark.integration  # the wrapper script, in a subprocess
def test_alphagen_as_service_reads_the_settings_file(tmp_path):
    settings = tmp_path / "alphagen.env"
    settings.write_text("ALPHAGEN_MODE=not-a-mode\n")
    done = subprocess.run([str(DEPLOY / "alphagen-as-service"), "halt"], capture_output=True, text=True,
                          env={**os.environ, "ALPHAGEN_ENV_FILE": str(settings)}, timeout=120)
    assert done.returncode == 1 and "ALPHAGEN_MODE" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.integration  # new interpreters, in subprocesses
def test_every_python_of_both_venvs_starts_with_the_collectors_thresholds():
    """As `make setup` installs them: the CLI's interpreter, a child started as Dagster's code
    servers start a run (multiprocessing's spawn), and dbt's, started as the dbt worker is (-I)."""
    [line] = [line for line in (DEPLOY / "alphagen-gc.pth").read_text().splitlines() if line.startswith("import")]
    thresholds = ast.literal_eval(line.split("gc.set_threshold", 1)[1])
    assert thresholds[0] > 700  # CPython's default
    ask = "import gc; print(gc.get_threshold())"
    in_a_spawned_child = ("import gc, multiprocessing as mp\n"
                          "with mp.get_context('spawn').Pool(1) as pool: print(pool.apply(gc.get_threshold))")
    for command in ([sys.executable, "-c", ask], [sys.executable, "-c", in_a_spawned_child],
                    [str(dbt_python()), "-I", "-c", ask]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        assert ast.literal_eval(done.stdout.strip()) == thresholds, command
