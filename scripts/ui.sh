#!/usr/bin/env bash
# The Dagster UI (webserver) and daemon on the project's workspace, bound to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
# Create and initialise the home once, under its lock, before two processes open it at once.
.venv/bin/python -c "from alphagen_dagster.instance import dagster_home; dagster_home()"
# One service per home (alphagen_dagster/service.py, SERVICE_LOCK): a second daemon would run
# every sensor twice. The daemon and the webserver inherit descriptor 9, so the lock lasts while
# either lives.
exec 9<>"$DAGSTER_HOME/.alphagen-service.lock"
if ! flock -n 9; then
  echo "another service (started by pid $(head -c 32 <&9 || true)) already serves the Dagster home $DAGSTER_HOME:" \
       "a second daemon would run every sensor twice; stop that one first" >&2
  exit 1
fi
truncate -s 0 "$DAGSTER_HOME/.alphagen-service.lock"
echo "$$" >&9
.venv/bin/dagster-daemon run -w workspace.yaml &
daemon=$!
trap 'kill $daemon 2>/dev/null' EXIT
.venv/bin/dagster-webserver -w workspace.yaml -h "${ALPHAGEN_UI_HOST:-127.0.0.1}" -p "${ALPHAGEN_UI_PORT:-3000}"
