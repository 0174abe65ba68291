"""One table contract (alphagen_core/persistence/tables.py): the DuckDB schema, dbt's sources,
the staging models' casts, the Dagster assets and the domain models all agree with it, and
rows map to models and back without loss (alphagen_core/persistence/rows.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path

import duckdb
import polars as pl
import pytest

from alphagen_core.domain.models import (
    BrokerBalances,
    BrokerPosition,
    ControlEvent,
    TradingState,
)
from alphagen_core.persistence import dbt_sources
from alphagen_core.persistence.rows import (
    MODEL_OF,
    balance_rows,
    bar_rows,
    bars_from,
    broker_position_rows,
    control_events_from,
    equity_bar_rows,
    models_from,
    option_quote_rows,
    quote_rows,
    quotes_from,
)
from alphagen_core.persistence.store import RowMeta, Store
from alphagen_core.persistence.tables import (
    ALL_TABLES,
    CONTROL_EVENTS,
    META_COLUMNS,
    SOURCES,
    TABLES,
    VERSIONS,
    Table,
)
from tests.builders import HALF_SPREAD, at
from tests.test_engine_handbuilt import DAY, slices
from tests.test_store import handbuilt_session

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
STAGING = REPO / "dbt_pnl" / "models" / "staging"
CAST = re.compile(r'cast\(\s*"?(\w+)"?\s+as\s+(\w+)\s*\)', re.IGNORECASE)
META = RowMeta("paper", DAY, "v1", "run-1")


def own_columns(table: Table) -> set[str]:
    return {c.name for c in table.columns}


def stored(store: Store, table: Table) -> pl.DataFrame:
    order = ", ".join(f'"{k}"' for k in table.key)
    return store.query(f"SELECT * FROM {table.name} ORDER BY {order}")


# ---- dbt --------------------------------------------------------------------------------


def test_the_dbt_sources_file_is_the_one_the_contract_renders() -> None:
    assert dbt_sources.SOURCES_YML == STAGING / "_sources.yml"
    assert STAGING.joinpath("_sources.yml").read_text() == dbt_sources.render(), (
        "run `python -m alphagen_core.persistence.dbt_sources` after changing tables.py")


def test_every_staging_model_casts_exactly_its_tables_columns_to_their_types() -> None:
    models = {p.stem for p in STAGING.glob("stg_*.sql")}
    assert models == {f"stg_{t}" for t in TABLES} | {"stg_latest_versions"}  # the last one is derived
    for table in TABLES.values():
        sql = STAGING.joinpath(f"stg_{table.name}.sql").read_text()
        assert f"latest_version_rows('{table.name}')" in sql, table.name
        casts = Counter((column, type_.lower()) for column, type_ in CAST.findall(sql))
        # every staging row also carries its version's variant (from stg_latest_versions)
        variant = next(c for c in VERSIONS.columns if c.name == "variant")
        contract = Counter((c.name, c.type.lower()) for c in (*table.all_columns, variant))
        assert casts == contract, (table.name, "not in the contract:", casts - contract, "missing:", contract - casts)


# ---- DuckDB -----------------------------------------------------------------------------


def duckdb_columns(path: Path, table: str) -> list[tuple[str, str, bool]]:
    with duckdb.connect(str(path)) as con:
        return con.execute(
            """SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns
               WHERE table_name = ? ORDER BY ordinal_position""", [table]).fetchall()


def contract_columns(table: Table) -> list[tuple[str, str, bool]]:
    with duckdb.connect() as con:  # DuckDB's own name of each type (TIMESTAMPTZ is TIMESTAMP WITH TIME ZONE)
        return [(c.name, con.execute(f"SELECT typeof(CAST(NULL AS {c.type}))").fetchone()[0], not c.not_null)
                for c in table.all_columns]


def test_the_audit_columns_the_store_adds_are_the_contracts() -> None:
    assert tuple(META.columns()) == META_COLUMNS


def test_the_store_creates_every_table_as_the_contract_says(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    Store(path).ensure_schema()
    for table in ALL_TABLES.values():
        assert duckdb_columns(path, table.name) == contract_columns(table), table.name


def test_a_file_from_before_an_added_column_ends_up_with_the_same_columns(tmp_path: Path) -> None:
    added = {t.name: [c for c in t.columns if c.added_later] for t in ALL_TABLES.values()}
    assert any(added.values())
    for name, columns in added.items():
        # nullable (old rows read NULL) and last (old and new files list the columns alike)
        assert all(not c.not_null for c in columns), name
        assert list(ALL_TABLES[name].columns[len(ALL_TABLES[name].columns) - len(columns):]) == columns, name
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        for table in ALL_TABLES.values():
            con.execute(replace(table, columns=tuple(c for c in table.columns if not c.added_later)).ddl)
    Store(path).ensure_schema()
    for table in ALL_TABLES.values():
        assert duckdb_columns(path, table.name) == contract_columns(table), table.name


# ---- Dagster ----------------------------------------------------------------------------


def test_each_table_is_an_asset_with_the_contracts_description_and_columns() -> None:
    from alphagen_dagster.assets import BACKFILL_HINT, TABLE_SPECS

    specs = {spec.key.path[-1]: spec for spec in TABLE_SPECS}
    assert set(specs) == set(SOURCES) == {*TABLES, "versions"}
    for name, spec in specs.items():
        schema = spec.metadata["dagster/column_schema"]
        assert spec.description == f"{SOURCES[name].description}\n\n{BACKFILL_HINT}"
        assert [(c.name, c.type, c.constraints.nullable) for c in schema.columns] == [
            (c.name, c.type, not c.not_null) for c in SOURCES[name].all_columns]


# ---- models <-> rows --------------------------------------------------------------------


def test_the_field_for_field_models_hold_exactly_their_tables_columns() -> None:
    assert set(MODEL_OF) <= set(ALL_TABLES)
    for name, model in MODEL_OF.items():
        assert {f.name for f in fields(model)} == own_columns(ALL_TABLES[name]), name


def test_the_row_builders_of_tables_1_to_3_fill_exactly_their_columns() -> None:
    feed = slices()
    quote = next(iter(feed[0].quotes.values()))
    assert set(bar_rows([feed[0].bar], "test")[0]) == own_columns(TABLES["equity_bars"])
    assert set(quote_rows([quote], "chain", "test")[0]) == own_columns(TABLES["option_quotes"])
    position, balances = BrokerPosition("O:QQQ240212P00103000", -25, 2.0), BrokerBalances(1.0, 2.0, 3.0)
    moment = at(DAY, "09:45")
    for row in broker_position_rows([position], moment, "paper") + balance_rows(balances, moment, "paper"):
        assert set(row) == own_columns(TABLES["broker_positions"])
    # a flat file's frames: every column theirs, only quoted_at (a live quote's) left out
    equity = pl.DataFrame({"symbol": ["QQQ"], "est_timestamp": [moment], "open": [1.0], "high": [1.0], "low": [1.0],
                           "close": [1.0], "volume": [1.0], "transactions": [3]})
    options = pl.DataFrame({"option_symbol": [quote.symbol], "est_timestamp": [moment], "underlying": ["QQQ"],
                            "expiry": [DAY], "right": ["P"], "strike": [103.0], "open": [1.0], "high": [1.0],
                            "low": [1.0], "close": [1.0], "volume": [1.0]})
    assert set(equity_bar_rows(equity, "test").columns) == own_columns(TABLES["equity_bars"])
    assert set(option_quote_rows(options, HALF_SPREAD, "test").columns) == own_columns(TABLES["option_quotes"]) - {
        "quoted_at"}


def test_the_engines_models_read_back_from_duckdb_as_they_were_written(tmp_path: Path) -> None:
    store = Store(tmp_path / "alphagen.duckdb")
    session = handbuilt_session()
    store.write({t: session[t] for t in MODEL_OF if t in TABLES}, META)
    for name, model in MODEL_OF.items():
        if name not in TABLES:
            continue
        written = sorted(session[name], key=lambda m: tuple(getattr(m, k) for k in TABLES[name].key))
        assert written, name
        assert models_from(model, stored(store, TABLES[name])) == written, name


def test_bars_quotes_and_control_events_read_back_as_they_were_written(tmp_path: Path) -> None:
    store = Store(tmp_path / "alphagen.duckdb")
    feed = slices()[:3]
    bars = [s.bar for s in feed]
    # a live quote: no minute open, stamped by its source a moment into its minute
    quotes = sorted((replace(q, open=None, quoted_at=q.start + dt.timedelta(seconds=20))
                     for s in feed for q in s.quotes.values()), key=lambda q: (q.symbol, q.start))
    events = [ControlEvent(at(DAY, "09:40"), TradingState.HALTED, "operator says", "operator"),
              ControlEvent(at(DAY, "09:41"), TradingState.ACTIVE, "operator says", "operator")]
    store.write({"equity_bars": bar_rows(bars, "test"), "option_quotes": quote_rows(quotes, "chain", "test"),
                 "control_events": events}, META)
    assert bars_from(stored(store, TABLES["equity_bars"])) == bars
    assert quotes_from(stored(store, TABLES["option_quotes"]), HALF_SPREAD) == quotes
    assert control_events_from(stored(store, CONTROL_EVENTS)) == events
