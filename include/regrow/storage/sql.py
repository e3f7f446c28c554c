"""SQL over lakehouse tables: DuckDB over Arrow tables the query names as ``layer.name``."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pyarrow as pa

from regrow.storage.errors import LakehouseError

# A table as SQL names it: layer.name, with regrow's layers.
_TABLE_REF = re.compile(r"\b(bronze|silver|gold)\.([A-Za-z_][A-Za-z0-9_]*)\b")


def tables_named(query: str) -> list[str]:
    """The tables (``layer.name``) ``query`` names, sorted, each once."""
    return [f"{layer}.{name}" for layer, name in sorted(set(_TABLE_REF.findall(query)))]


def run_sql(query: str, tables: Mapping[str, pa.Table]) -> pa.Table:
    """Run ``query`` (DuckDB) with each of ``tables`` (``layer.name``: its rows) as a view."""
    import duckdb

    con = duckdb.connect()
    try:
        for table, rows in tables.items():
            layer, name = table.split(".")
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
            con.register(f"__{layer}__{name}", rows)
            con.execute(f'CREATE VIEW "{layer}"."{name}" AS SELECT * FROM "__{layer}__{name}"')
        try:
            return con.sql(query).to_arrow_table()
        except duckdb.Error as err:
            raise LakehouseError(f"query failed: {err}") from err
    finally:
        con.close()
