#!/usr/bin/env bash
# The Dagster UI (webserver) and daemon on the project's workspace, bound to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
# Create and initialise the home once, under its lock, before two processes open it at once.
.venv/bin/python -c "from alphagen_dagster.instance import dagster_home; dagster_home()"
.venv/bin/dagster-daemon run -w workspace.yaml &
daemon=$!
trap 'kill $daemon 2>/dev/null' EXIT
.venv/bin/dagster-webserver -w workspace.yaml -h "${ALPHAGEN_UI_HOST:-127.0.0.1}" -p "${ALPHAGEN_UI_PORT:-3000}"
