"""The Dagster UI shows the eight tables and the dbt marts in one lineage graph: a real
dagster-webserver on loopback, read through GraphQL and through headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from alphagen_core.persistence.tables import TABLES
from tests.processes import PROJECT_DIR, clean_environ, free_port, venv_bin

pytestmark = pytest.mark.e2e
EXPECTED = set(TABLES) | {"daily_pnl", "trades"}


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copyfile(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = clean_environ(DAGSTER_HOME=str(home), ALPHAGEN_DUCKDB_PATH=str(home / "alphagen.duckdb"))
    proc = subprocess.Popen(
        [venv_bin("dagster-webserver"), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"webserver did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def graphql(base: str, query: str) -> dict:
    req = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())["data"]


def test_lineage_graph_joins_tables_and_dbt_marts(webserver):
    deadline = time.monotonic() + 60
    while True:  # the code location loads in the background after the server answers
        nodes = graphql(webserver, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")["assetNodes"]
        if nodes or time.monotonic() > deadline:
            break
        time.sleep(1)
    deps = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    assert EXPECTED <= set(deps)
    assert deps["normalized_ticks"] == {"equity_bars", "option_quotes"}
    assert "executions" in deps["staging/stg_executions"]  # dbt source joined to the asset
    assert "staging/stg_executions" in deps["daily_pnl"]


def test_lineage_page_in_headless_chromium_shows_tables_and_daily_pnl(webserver, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required: `make test` installs it (scripts/ensure-chromium.sh)"
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
         "--dump-dom", f"{webserver}/asset-groups"],
        capture_output=True, text=True, timeout=120,
    ).stdout
    missing = [name for name in sorted(EXPECTED) if name not in dom]
    assert not missing, f"not in the rendered lineage page: {missing}"
