#!/usr/bin/env bash
# Back up the DuckDB file (ALPHAGEN_DUCKDB_PATH) as a consistent snapshot:
#   scripts/backup-duckdb.sh DEST_DIR   ->  DEST_DIR/alphagen-YYYYMMDDTHHMMSS/ (schema.sql, load.sql, Parquet)
# EXPORT DATABASE runs through a read-only connection: it waits while a writer holds the file,
# and writers wait (they retry on the lock) for the seconds the export takes. Restore into a
# new file with:  duckdb NEW.duckdb -c "IMPORT DATABASE 'DEST_DIR/alphagen-...'"  (or the Python
# duckdb module: duckdb.connect("NEW.duckdb").execute("IMPORT DATABASE '...'")).
set -euo pipefail
dest="${1:?usage: scripts/backup-duckdb.sh DEST_DIR}"
project="$(cd "$(dirname "$0")/.." && pwd)"
cd "$project"
exec "$project/.venv/bin/python" - "$dest" <<'PY'
import datetime as dt
import sys
from pathlib import Path

from alphagen_core.operations.settings import load_settings
from alphagen_core.persistence.store import Store

source = Path(load_settings().alphagen_duckdb_path).resolve()
target = Path(sys.argv[1]).resolve() / f"alphagen-{dt.datetime.now():%Y%m%dT%H%M%S}"
target.parent.mkdir(parents=True, exist_ok=True)
with Store(source, lock_timeout_s=600).connect(read_only=True) as con:
    con.execute(f"EXPORT DATABASE '{target}' (FORMAT parquet)")
print(f"exported {source} to {target}")
PY
