"""Raw Iceberg tables: creation, schema evolution, and idempotent upserts with their cursor.

An upsert is one Iceberg transaction per table: delete the old versions of changed records,
append the new ones, and set the site's cursor property. The catalog commits it atomically,
so the cursor can never run ahead of the rows it covers; a crashed load leaves the table as
it was before the transaction and a re-run resumes from the last committed cursor.

Deletions are *marked*, not removed: the source's tombstone (v3 `isValid: false`) replaces the
row, with `is_valid = false`. Downstream models keep only valid rows; the history stays.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import (
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThan,
    Or,
)
from pyiceberg.table import Table
from sqlalchemy.exc import IntegrityError

from cascade.lake.schemas import (
    CURSOR_PROPERTY_PREFIX,
    RAW_NAMESPACE,
    REJECTS_TABLE,
    raw_partition_spec,
    raw_schema,
    raw_sort_order,
    rejects_schema,
)

DAY_US = 86_400_000_000


# Cascade re-reads and re-merges itself when another writer commits first (`ingest._commit`).
# PyIceberg's own retry would re-apply an upsert's append against a snapshot it never
# re-checked, so two concurrent loads of one site would each add every row: it is turned off.
NO_BLIND_RETRY = {"commit.retry.num-retries": "0"}
RAW_TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    **NO_BLIND_RETRY,
}


def _ensure_namespace(catalog: Catalog) -> None:
    # NamespaceAlreadyExists / IntegrityError: another process created it a moment earlier
    with contextlib.suppress(NamespaceAlreadyExistsError, IntegrityError):
        catalog.create_namespace_if_not_exists(RAW_NAMESPACE)


def _load_or_create(catalog: Catalog, identifier: str, **create: Any) -> Table:
    """Load the table, or create it; a table another process creates meanwhile is loaded. Loading
    first writes nothing when the table exists (creating first would write a metadata file)."""
    _ensure_namespace(catalog)
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        try:
            return _create_with_first_snapshot(catalog, identifier, **create)
        except TableAlreadyExistsError:
            table = catalog.load_table(identifier)
    if any(table.properties.get(key) != value for key, value in NO_BLIND_RETRY.items()):
        # Tables made by earlier versions of Cascade. If another process is writing right now,
        # the next load sets it.
        with contextlib.suppress(CommitFailedException), table.transaction() as tx:
            tx.set_properties(NO_BLIND_RETRY)
        table = catalog.load_table(identifier)
    return table


def _create_with_first_snapshot(catalog: Catalog, identifier: str, **create: Any) -> Table:
    """Create the table already holding an empty snapshot, in one step.

    A table's first commit can only require "no snapshot yet", and Nessie before 0.101.1 does
    not check that requirement: two writers' first commits into a new table would each replace
    the other's snapshot, and one writer's rows would be lost without an error. Every later
    commit names its parent snapshot, which Nessie does check. So no Cascade table ever takes a
    first commit: its metadata, with an empty snapshot, is written beside the catalog (at the
    location the catalog chose) and registered, which the catalog does atomically; a writer
    that loses that race loads the winner's table (its own few files are left unused).
    """
    properties = {**RAW_TABLE_PROPERTIES, **create.pop("properties", {})}
    staged = catalog.create_table_transaction(identifier, properties=properties, **create)
    location = staged.table_metadata.location
    scratch = SqlCatalog(
        "cascade-new-table",
        uri="sqlite:///:memory:",
        warehouse=location,
        **{key: value for key, value in catalog.properties.items() if key.startswith(_IO_KEYS)},
    )
    scratch.create_namespace(identifier.rsplit(".", 1)[0])
    table = scratch.create_table(identifier, location=location, properties=properties, **create)
    table.append(table.schema().as_arrow().empty_table())
    return catalog.register_table(identifier, table.metadata_location)


_IO_KEYS = ("s3.", "py-io-impl", "client.", "gcs.", "adls.", "hf.")


def ensure_raw_table(catalog: Catalog, collection: str) -> Table:
    """Create `raw.<collection>` if missing; add any columns this version of Cascade knows."""
    identifier = f"{RAW_NAMESPACE}.{collection}"
    schema = raw_schema(collection)
    table = _load_or_create(
        catalog,
        identifier,
        schema=schema,
        partition_spec=raw_partition_spec(schema),
        sort_order=raw_sort_order(schema),
    )
    missing = {f.name for f in schema.fields} - {f.name for f in table.schema().fields}
    if missing:
        with table.update_schema() as update:
            update.union_by_name(schema)
        table = catalog.load_table(identifier)
    return table


def ensure_rejects_table(catalog: Catalog) -> Table:
    return _load_or_create(catalog, f"{RAW_NAMESPACE}.{REJECTS_TABLE}", schema=rejects_schema())


def read_cursor(table: Table, site_id: str) -> dict[str, Any] | None:
    value = table.properties.get(CURSOR_PROPERTY_PREFIX + site_id)
    return json.loads(value) if value else None


def cursors(table: Table) -> dict[str, dict[str, Any]]:
    return {
        key.removeprefix(CURSOR_PROPERTY_PREFIX): json.loads(value)
        for key, value in table.properties.items()
        if key.startswith(CURSOR_PROPERTY_PREFIX)
    }


@dataclass
class UpsertResult:
    inserted: int = 0
    replaced: int = 0
    unchanged: int = 0
    stale: int = 0
    superseded: int = 0  # older versions of a record that came twice in one batch


def _latest_per_key(rows: pa.Table) -> pa.Table:
    """Within one batch keep one version per record: the latest by srvModified, then by arrival."""
    if rows.num_rows == 0:
        return rows
    indexed = rows.append_column("_position", pa.array(range(rows.num_rows), pa.int64()))
    ordered = indexed.sort_by([("srv_modified_at", "descending"), ("_position", "descending")])
    keys = ordered.column("source_id").to_pylist()
    seen: set[str] = set()
    keep = []
    for position, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(position)
    if len(keep) == rows.num_rows:
        return rows
    return ordered.take(pa.array(keep)).sort_by("_position").drop_columns(["_position"])


def _days_filter(event_at: pa.ChunkedArray) -> BooleanExpression:
    """Rows in the same days as these events: lets Iceberg prune to the partitions touched."""
    days = sorted({us // DAY_US for us in pc.cast(event_at, pa.int64()).to_pylist()})
    ranges: list[tuple[int, int]] = []
    for day in days:
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + 1)
        else:
            ranges.append((day, day + 1))
    expr: BooleanExpression | None = None
    for start, end in ranges:
        term = And(
            GreaterThanOrEqual("event_at", start * DAY_US), LessThan("event_at", end * DAY_US)
        )
        expr = term if expr is None else Or(expr, term)
    assert expr is not None
    return expr


def _existing(table: Table, site_id: str, rows: pa.Table) -> pa.Table:
    """Current versions of the batch's records: looked up in the batch's days, and everywhere
    for records edited at the source (an edit may have moved the event to another day)."""
    keys = rows.column("source_id")
    columns = ("source_id", "event_at", "srv_modified_at", "document")
    found = table.scan(
        row_filter=And(EqualTo("site_id", site_id), _days_filter(rows.column("event_at"))),
        selected_fields=columns,
    ).to_arrow()
    edited = rows.filter(pc.greater(rows.column("srv_modified_at"), rows.column("srv_created_at")))
    if edited.num_rows:
        moved = table.scan(
            row_filter=And(
                EqualTo("site_id", site_id), In("source_id", edited.column("source_id").to_pylist())
            ),
            selected_fields=columns,
        ).to_arrow()
        found = pa.concat_tables([found, moved]) if found.num_rows else moved
    found = found.filter(pc.is_in(found.column("source_id"), value_set=keys.combine_chunks()))
    return found


def _same_version(old_modified: Any, old_doc: str, new_modified: Any, new_doc: str) -> bool:
    """v3 stamps every change with a new srvModified, so equal stamps mean the same version even
    when v1 and v3 render it differently (v1 adds `_id`); without stamps, compare the documents."""
    if old_modified is not None and new_modified is not None:
        return bool(old_modified == new_modified)
    return old_doc == new_doc


def upsert(
    table: Table,
    site_id: str,
    rows: pa.Table,
    *,
    cursor: dict[str, Any] | None = None,
    snapshot_properties: dict[str, str] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> UpsertResult:
    """Write `rows` of one site so each record ends up exactly once, in its latest version,
    and advance the site's cursor in the same atomic commit. `before_commit` runs only when
    there is something to commit, just before it (to land what the commit is made of)."""
    result = UpsertResult()
    arrived = rows.num_rows
    rows = _latest_per_key(rows)
    result.superseded = arrived - rows.num_rows
    delete_keys: list[str] = []
    delete_events: list[int] = []
    if rows.num_rows:
        existing = _existing(table, site_id, rows)
        if existing.num_rows:
            current = {
                sid: (event, modified, doc)
                for sid, event, modified, doc in zip(
                    existing.column("source_id").to_pylist(),
                    pc.cast(existing.column("event_at"), pa.int64()).to_pylist(),
                    existing.column("srv_modified_at").to_pylist(),
                    existing.column("document").to_pylist(),
                    strict=True,
                )
            }
            keep = []
            for sid, modified, doc in zip(
                rows.column("source_id").to_pylist(),
                rows.column("srv_modified_at").to_pylist(),
                rows.column("document").to_pylist(),
                strict=True,
            ):
                old = current.get(sid)
                if old is None:
                    keep.append(True)
                    result.inserted += 1
                elif _same_version(old[1], old[2], modified, doc):
                    keep.append(False)
                    result.unchanged += 1
                elif old[1] is not None and modified is not None and old[1] > modified:
                    keep.append(False)  # we already hold a newer version
                    result.stale += 1
                else:
                    keep.append(True)
                    result.replaced += 1
                    delete_keys.append(sid)
                    delete_events.append(old[0])
            rows = rows.filter(pa.array(keep))
        else:
            result.inserted = rows.num_rows
    if not rows.num_rows:
        # Nothing to write, so no commit, not even to move the cursor: a cursor only says what
        # is surely in, so leaving it behind costs a longer read next time, never a lost record.
        return result
    cursor_changed = cursor is not None and read_cursor(table, site_id) != cursor
    properties = dict(snapshot_properties or {}, **{"cascade.site_id": site_id})
    if before_commit is not None:
        before_commit()
    with table.transaction() as tx:
        if delete_keys:
            where = And(
                And(EqualTo("site_id", site_id), In("source_id", delete_keys)),
                _days_filter(pa.chunked_array([pa.array(delete_events, pa.int64())])),
            )
            tx.delete(delete_filter=where, snapshot_properties=properties)
        if rows.num_rows:
            tx.append(rows.cast(table.schema().as_arrow()), snapshot_properties=properties)
        if cursor_changed:
            tx.set_properties(
                {CURSOR_PROPERTY_PREFIX + site_id: json.dumps(cursor, sort_keys=True)}
            )
    return result


def append_rejects(
    table: Table,
    site_id: str,
    rejects: pa.Table,
    before_commit: Callable[[], None] | None = None,
) -> int:
    """Add the rejects not already recorded (same site, collection and document); return how many."""
    if rejects.num_rows == 0:
        return 0
    first_seen: dict[str, int] = {}
    for position, reject_id in enumerate(rejects.column("reject_id").to_pylist()):
        first_seen.setdefault(reject_id, position)
    rejects = rejects.take(pa.array(sorted(first_seen.values()), pa.int64()))
    known = table.scan(
        row_filter=EqualTo("site_id", site_id), selected_fields=("reject_id",)
    ).to_arrow()
    fresh = rejects.filter(
        pc.invert(
            pc.is_in(
                rejects.column("reject_id"), value_set=known.column("reject_id").combine_chunks()
            )
        )
    )
    if fresh.num_rows:
        if before_commit is not None:
            before_commit()
        table.append(
            fresh.cast(table.schema().as_arrow()), snapshot_properties={"cascade.site_id": site_id}
        )
    return int(fresh.num_rows)
