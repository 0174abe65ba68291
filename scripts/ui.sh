#!/usr/bin/env bash
# `make ui`: the Dagster UI (webserver) and daemon on the project's workspace and Dagster home,
# bound to 127.0.0.1 (ALPHAGEN_UI_HOST, ALPHAGEN_UI_PORT), as one service
# (alphagen_dagster/service.py: one per Dagster home, stopped as a whole by Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -c "from alphagen_dagster.service import serve_ui; serve_ui()"
