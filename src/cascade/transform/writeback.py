"""Write built models back into the lake: `<layer>.<model>` Iceberg tables in the raw tables' catalog.

One atomic commit per table: the whole table is overwritten (and its schema evolved if the model's
columns changed) in a single Iceberg transaction, with the content fingerprint stored as a table
property in the same commit. When the model's content has the fingerprint the table already
carries, nothing is committed at all: re-running without new data creates no snapshot anywhere.

The fingerprint is computed inside DuckDB, independent of row order: the row count, the sum and
the XOR of DuckDB's 64-bit hash of every row, plus the column names and types.

Tables keyed by subject and day (a `site_id` column and a date key column: `local_date` or
`window_end_date`) are partitioned by month of that date and written *partially*: the same hash
aggregates are computed per (site, date) group and cached in the working copy
(`_cascade.lake_groups`), valid only while the lake table still carries the fingerprint they were
computed for. An incremental run then replaces only the groups whose hash changed: one Iceberg
transaction deletes `site_id IN (changed sites) AND <date> IN (changed dates)` and appends exactly
the working copy's rows matching the same predicate (so the result is exact even though the
predicate is a cross product), and sets the new fingerprint. Without a valid cache (new working
copy, schema change, most groups changed) the table is overwritten whole, as before.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError, ValidationError
from pyiceberg.expressions import And, BooleanExpression, In
from pyiceberg.table import Table
from pyiceberg.transforms import MonthTransform

from cascade.lake.duck import quote

FINGERPRINT_PROPERTY = "cascade.transform.fingerprint"
NODE_PROPERTY = "cascade.transform.dbt-node"
FINGERPRINT_VERSION = "v1"
TABLE_PROPERTIES = {"format-version": "2", "write.parquet.compression-codec": "zstd"}
SITE_COLUMN = "site_id"
DATE_KEY_COLUMNS = ("local_date", "window_end_date")
GROUPS_TABLE = "_cascade.lake_groups"
GROUP_DIGESTS_TABLE = "_cascade.lake_group_digests"
# Above this share of changed groups a whole-table overwrite is as cheap as a partial one.
MAX_PARTIAL_SHARE = 0.5


@dataclass(frozen=True)
class TableWrite:
    """What happened to one lake table."""

    identifier: str
    rows: int
    committed: bool
    snapshot_id: int | None
    fingerprint: str = ""  # DuckDB write-back only: the content fingerprint the table carries
    recreated: bool = False
    partial: bool = False  # only the changed (site, date) groups were replaced
    replaced_rows: int = 0  # rows written by the commit


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
    return _digest(shape, count, total, xor), count


def _digest(shape: str, count: int, total: int, xor: int) -> str:
    text = f"{FINGERPRINT_VERSION}|{shape}|{count}|{total}|{xor}"
    return hashlib.sha256(text.encode()).hexdigest()


def group_key(con: duckdb.DuckDBPyConnection, relation: str) -> str | None:
    """The date key column of a relation keyed by (site_id, date), or None."""
    names = {str(row[0]) for row in con.execute(f"DESCRIBE {relation}").fetchall()}
    if SITE_COLUMN not in names:
        return None
    return next((c for c in DATE_KEY_COLUMNS if c in names), None)


def _ensure_group_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS _cascade")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {GROUPS_TABLE} (identifier VARCHAR, site_id VARCHAR, "
        "key_date DATE, row_count BIGINT, hash_sum HUGEINT, hash_xor UBIGINT)"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {GROUP_DIGESTS_TABLE} (identifier VARCHAR PRIMARY KEY, "
        "digest VARCHAR)"
    )


def _grouped_fingerprint(
    con: duckdb.DuckDBPyConnection, relation: str, key: str
) -> tuple[str, int]:
    """Like `fingerprint` (same digest), computing per-(site, date) aggregates on the way into
    the temp table `_cascade_groups`."""
    columns = con.execute(f"DESCRIBE {relation}").fetchall()
    shape = ",".join(f"{name}:{type_}" for name, type_, *_ in columns)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cascade_groups AS "
        f"SELECT {quote(SITE_COLUMN)} AS site_id, {quote(key)} AS key_date, count(*) AS row_count, "
        "sum(hash(t)::HUGEINT) AS hash_sum, bit_xor(hash(t)) AS hash_xor "
        f"FROM {relation} AS t GROUP BY ALL"
    )
    row = con.execute(
        "SELECT coalesce(sum(row_count), 0), coalesce(sum(hash_sum), 0), "
        "coalesce(bit_xor(hash_xor), 0) FROM _cascade_groups"
    ).fetchone()
    assert row is not None
    count, total, xor = int(row[0]), int(row[1]), int(row[2])
    return _digest(shape, count, total, xor), count


def _remember_groups(con: duckdb.DuckDBPyConnection, identifier: str, digest: str) -> None:
    """Cache the groups of `_cascade_groups` as those of the lake table carrying `digest`."""
    _ensure_group_tables(con)
    con.execute(f"DELETE FROM {GROUPS_TABLE} WHERE identifier = ?", [identifier])
    con.execute(
        f"INSERT INTO {GROUPS_TABLE} SELECT ?, site_id, key_date, row_count, hash_sum, hash_xor "
        "FROM _cascade_groups",
        [identifier],
    )
    con.execute(f"INSERT OR REPLACE INTO {GROUP_DIGESTS_TABLE} VALUES (?, ?)", [identifier, digest])


def _changed_groups(
    con: duckdb.DuckDBPyConnection, identifier: str, lake_digest: str | None
) -> tuple[list[str], list[object], int] | None:
    """(sites, dates, rows to write) of the groups that differ from the cached lake groups, or
    None when the cache does not describe the lake table or a partial write is not worth it."""
    _ensure_group_tables(con)
    row = con.execute(
        f"SELECT digest FROM {GROUP_DIGESTS_TABLE} WHERE identifier = ?", [identifier]
    ).fetchone()
    if row is None or lake_digest is None or row[0] != lake_digest:
        return None
    changed = con.execute(
        "SELECT coalesce(new.site_id, old.site_id), coalesce(new.key_date, old.key_date) "
        "FROM _cascade_groups AS new "
        f"FULL OUTER JOIN (SELECT * FROM {GROUPS_TABLE} WHERE identifier = ?) AS old "
        "ON new.site_id IS NOT DISTINCT FROM old.site_id "
        "AND new.key_date IS NOT DISTINCT FROM old.key_date "
        "WHERE new.row_count IS DISTINCT FROM old.row_count "
        "OR new.hash_sum IS DISTINCT FROM old.hash_sum "
        "OR new.hash_xor IS DISTINCT FROM old.hash_xor",
        [identifier],
    ).fetchall()
    if not changed or any(site is None or day is None for site, day in changed):
        return None
    sites = sorted({site for site, _ in changed})
    dates = sorted({day for _, day in changed})
    totals = con.execute(
        "SELECT count(*), coalesce(sum(row_count), 0), "
        "coalesce(sum(row_count) FILTER (WHERE list_contains(?, site_id) "
        "AND list_contains(?, key_date)), 0) FROM _cascade_groups",
        [sites, dates],
    ).fetchone()
    assert totals is not None
    groups, rows, replaced = int(totals[0]), int(totals[1]), int(totals[2])
    if groups and len(sites) * len(dates) > MAX_PARTIAL_SHARE * groups:
        return None
    if rows and replaced > MAX_PARTIAL_SHARE * rows:
        return None
    return sites, dates, replaced


def _read(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    where: str = "",
    params: list[object] | None = None,
) -> pa.Table:
    """The relation as Arrow, sorted (key columns come first in every model) for good clustering."""
    return con.execute(
        f"SELECT * FROM {relation} {where} ORDER BY ALL", params or []
    ).to_arrow_table()


def _shape(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in schema]


def _normalized_shape(schema: pa.Schema) -> list[tuple[str, str]]:
    """Column names and types; Arrow's large_ variants (as PyIceberg reads) count as the plain
    ones, and list element names (`item` in DuckDB, `element` in Iceberg) are ignored."""
    return [
        (name, re.sub(r"list<\w+: ", "list<", type_.replace("large_", "")))
        for name, type_ in _shape(schema)
    ]


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


def _partition_by_month(tx: object, key: str | None) -> None:
    if key is not None:
        with tx.update_spec() as spec:  # type: ignore[attr-defined]
            spec.add_field(key, MonthTransform(), f"{key}_month")


def _key_filter(key: str, sites: list[str], dates: list[object]) -> BooleanExpression:
    set_of: Any = In  # In(term, literals) at run time; its pydantic fields confuse mypy
    return And(set_of(SITE_COLUMN, sites), set_of(key, dates))


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
    key = group_key(con, relation)
    if key is None:
        digest, count = fingerprint(con, relation)
    else:
        digest, count = _grouped_fingerprint(con, relation, key)
    try:
        table: Table | None = catalog.load_table(identifier)
    except NoSuchTableError:
        table = None

    def done(table: Table | None, committed: bool, **extra: object) -> TableWrite:
        if key is not None:
            _remember_groups(con, identifier, digest)
        snapshot = table.current_snapshot() if table is not None else None
        return TableWrite(
            identifier,
            count,
            committed,
            snapshot.snapshot_id if snapshot else None,
            digest,
            **extra,  # type: ignore[arg-type]
        )

    lake_digest = table.properties.get(FINGERPRINT_PROPERTY) if table is not None else None
    if table is not None and lake_digest == digest:
        return done(table, False)

    properties = {FINGERPRINT_PROPERTY: digest, NODE_PROPERTY: node_id}
    summary = dict(snapshot_properties or {}, **{FINGERPRINT_PROPERTY: digest})
    catalog.create_namespace_if_not_exists(namespace)
    recreated = False

    if table is not None and key is not None:
        changed = _changed_groups(con, identifier, lake_digest)
        same_shape = _normalized_shape(table.schema().as_arrow()) == _normalized_shape(
            con.execute(f"SELECT * FROM {relation} LIMIT 0").to_arrow_table().schema
        )
        if changed is not None and same_shape:
            sites, dates, _ = changed
            data = _read(
                con,
                relation,
                f"WHERE list_contains(?, {quote(SITE_COLUMN)}) AND list_contains(?, {quote(key)})",
                [sites, dates],
            )
            with table.transaction() as tx, warnings.catch_warnings():
                # new groups (a new day) have nothing to delete: PyIceberg warns, harmlessly
                warnings.filterwarnings("ignore", "Delete operation did not match any records")
                tx.overwrite(
                    data,
                    overwrite_filter=_key_filter(key, sites, dates),
                    snapshot_properties=summary,
                )
                tx.set_properties(properties)
            return done(
                catalog.load_table(identifier), True, partial=True, replaced_rows=data.num_rows
            )

    data = _read(con, relation)
    if table is not None and _shape(table.schema().as_arrow()) != _shape(data.schema):
        try:
            _overwrite_evolving(table, data, properties, summary)
            return done(catalog.load_table(identifier), True, replaced_rows=data.num_rows)
        except _IncompatibleSchema:  # a derived table is rebuilt, not migrated
            catalog.drop_table(identifier)
            table = None
            recreated = True

    if table is None:
        with catalog.create_table_transaction(
            identifier, schema=data.schema, properties={**TABLE_PROPERTIES, **properties}
        ) as tx:
            _partition_by_month(tx, key)
            if data.num_rows:
                tx.append(data, snapshot_properties=summary)
    else:
        with table.transaction() as tx:
            tx.overwrite(data, snapshot_properties=summary)
            tx.set_properties(properties)
    return done(
        catalog.load_table(identifier), True, recreated=recreated, replaced_rows=data.num_rows
    )
