"""Write built models back into the lake: `<layer>.<model>` Iceberg tables in the raw tables' catalog.

One atomic commit per table: the whole table is overwritten (and its schema evolved if the model's
columns changed) in a single Iceberg transaction, with the content fingerprint stored as a table
property in the same commit. When the model's content has the fingerprint the table already
carries, nothing is committed at all: re-running without new data creates no snapshot anywhere.

The fingerprint is computed inside DuckDB, independent of row order: the row count, the sum and
the XOR of DuckDB's 64-bit hash of every row, plus the column names and types.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError, ValidationError
from pyiceberg.table import Table

from cascade.serve.duck import quote

FINGERPRINT_PROPERTY = "cascade.transform.fingerprint"
NODE_PROPERTY = "cascade.transform.dbt-node"
FINGERPRINT_VERSION = "v1"
TABLE_PROPERTIES = {"format-version": "2", "write.parquet.compression-codec": "zstd"}


@dataclass(frozen=True)
class TableWrite:
    """What happened to one lake table."""

    identifier: str
    rows: int
    committed: bool
    snapshot_id: int | None
    fingerprint: str
    recreated: bool = False


def fingerprint(con: duckdb.DuckDBPyConnection, relation: str) -> tuple[str, int]:
    """(content fingerprint, row count) of a DuckDB relation."""
    columns = con.execute(f"DESCRIBE {relation}").fetchall()
    shape = ",".join(f"{name}:{type_}" for name, type_, *_ in columns)
    row = con.execute(
        f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0), coalesce(bit_xor(hash(t)), 0) "
        f"FROM {relation} AS t"
    ).fetchone()
    assert row is not None
    count, total, xor = int(row[0]), int(row[1]), int(row[2])
    text = f"{FINGERPRINT_VERSION}|{shape}|{count}|{total}|{xor}"
    return hashlib.sha256(text.encode()).hexdigest(), count


def _read(con: duckdb.DuckDBPyConnection, relation: str) -> pa.Table:
    """The relation as Arrow, sorted (key columns come first in every model) for good clustering."""
    return con.execute(f"SELECT * FROM {relation} ORDER BY ALL").to_arrow_table()


def _shape(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in schema]


class _IncompatibleSchema(Exception):
    """The model's columns cannot be reached from the table's by Iceberg schema evolution."""


def _overwrite_evolving(
    table: Table, data: pa.Table, properties: dict[str, str], summary: dict[str, str]
) -> None:
    """One transaction: add new columns, drop removed ones, overwrite the rows, set properties."""
    current = {f.name for f in table.schema().fields}
    with table.transaction() as tx:
        update = tx.update_schema()
        try:
            update.union_by_name(data.schema)
            for name in sorted(current - set(data.schema.names)):
                update.delete_column(name)
        except ValidationError as exc:  # e.g. long -> string: no Iceberg promotion
            raise _IncompatibleSchema(str(exc)) from exc
        update.commit()
        tx.overwrite(data, snapshot_properties=summary)
        tx.set_properties(properties)


def write_table(
    catalog: Catalog,
    con: duckdb.DuckDBPyConnection,
    *,
    namespace: str,
    name: str,
    node_id: str,
    snapshot_properties: dict[str, str] | None = None,
) -> TableWrite:
    """Make `<namespace>.<name>` in the lake hold exactly the DuckDB relation of the same name."""
    relation = f"{quote(namespace)}.{quote(name)}"
    identifier = f"{namespace}.{name}"
    digest, count = fingerprint(con, relation)
    try:
        table: Table | None = catalog.load_table(identifier)
    except NoSuchTableError:
        table = None
    if table is not None and table.properties.get(FINGERPRINT_PROPERTY) == digest:
        snapshot = table.current_snapshot()
        return TableWrite(
            identifier, count, False, snapshot.snapshot_id if snapshot else None, digest
        )

    data = _read(con, relation)
    properties = {FINGERPRINT_PROPERTY: digest, NODE_PROPERTY: node_id}
    summary = dict(snapshot_properties or {}, **{FINGERPRINT_PROPERTY: digest})
    catalog.create_namespace_if_not_exists(namespace)
    recreated = False

    if table is not None and _shape(table.schema().as_arrow()) != _shape(data.schema):
        try:
            _overwrite_evolving(table, data, properties, summary)
            table = catalog.load_table(identifier)
            snapshot = table.current_snapshot()
            return TableWrite(
                identifier, count, True, snapshot.snapshot_id if snapshot else None, digest
            )
        except _IncompatibleSchema:  # a derived table is rebuilt, not migrated
            catalog.drop_table(identifier)
            table = None
            recreated = True

    if table is None:
        with catalog.create_table_transaction(
            identifier, schema=data.schema, properties={**TABLE_PROPERTIES, **properties}
        ) as tx:
            if data.num_rows:
                tx.append(data, snapshot_properties=summary)
    else:
        with table.transaction() as tx:
            tx.overwrite(data, snapshot_properties=summary)
            tx.set_properties(properties)
    table = catalog.load_table(identifier)
    snapshot = table.current_snapshot()
    return TableWrite(
        identifier, count, True, snapshot.snapshot_id if snapshot else None, digest, recreated
    )
