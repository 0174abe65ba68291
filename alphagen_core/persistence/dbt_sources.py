"""dbt's sources (`dbt_pnl/models/staging/_sources.yml`), written from the table contract.

After a change to `tables.py`, run `python -m alphagen_core.persistence.dbt_sources`;
`tests/test_table_contract.py` fails while the committed file differs from what this renders.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from alphagen_core.persistence.tables import SOURCES, Table

SOURCES_YML = Path(__file__).resolve().parents[2] / "dbt_pnl" / "models" / "staging" / "_sources.yml"

HEADER = """\
# Written by `python -m alphagen_core.persistence.dbt_sources` from the table contract,
# alphagen_core/persistence/tables.py: change that, then run the command.
#
# The eight append-only tables and `versions`, written only by alphagen_core/persistence/store.py into the
# `main` schema of the DuckDB file. Rows are only inserted, and a new replay of a day appends a
# new version. meta.dagster.asset_key joins each source to the Dagster asset of the same name,
# so the Python assets and the dbt models form one lineage graph.
"""


class _IndentedLists(yaml.SafeDumper):
    """Lists indented under their key, as dbt's own examples write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _source_table(table: Table) -> dict[str, Any]:
    return {
        "name": table.name,
        "description": table.description,
        "config": {"meta": {"dagster": {"asset_key": [table.name]}}},
        "columns": [
            {"name": c.name, "data_type": c.type.lower(), "description": c.description}
            for c in table.all_columns
        ],
    }


def render() -> str:
    sources = {
        "version": 2,
        "sources": [{
            "name": "alphagen",
            "description": "Alpha-Gen audit tables (DuckDB, append-only).",
            "schema": "main",
            "tables": [_source_table(t) for t in SOURCES.values()],
        }],
    }
    return HEADER + yaml.dump(sources, Dumper=_IndentedLists, sort_keys=False, width=100, allow_unicode=True)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCES_YML
    path.write_text(render())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
