"""Ad-hoc SQL over the lake (`cascade query`)."""

from __future__ import annotations

from typing import Any

import duckdb

from cascade.config import Settings
from cascade.exceptions import QueryError
from cascade.lake.catalog import load_lake_catalog
from cascade.serve.duck import attach_catalog, connect


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = connect(settings=settings)
    try:
        tables = attach_catalog(con, load_lake_catalog(settings))
        try:
            cursor = con.execute(sql)
        except duckdb.Error as exc:
            known = ", ".join(tables) or "none yet: run `cascade ingest`"
            raise QueryError(f"{exc}\n(lake tables: {known})") from None
        columns = [d[0] for d in cursor.description or []]
        return columns, cursor.fetchall()
    finally:
        con.close()
