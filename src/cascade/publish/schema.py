"""How a mart looks in PostgreSQL: column types from the Iceberg schema, indexes from its grain,
and its rows as CSV for COPY.

Types follow the Iceberg schema (so an empty table has the right shape too): int → integer,
long → bigint, double → double precision, decimal(p,s) → numeric(p,s), date, time, timestamp,
timestamptz, string → text, uuid, binary/fixed → bytea, lists/maps/structs → jsonb.
Rows are written by pyarrow's C++ CSV writer (strings always quoted, NULL as an empty unquoted
field), which PostgreSQL's `COPY ... (FORMAT csv)` reads back exactly: doubles are written in
their shortest round-trip form.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FixedType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    StringType,
    StructType,
    TimestampNanoType,
    TimestampType,
    TimestamptzNanoType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

#: Bump when the published layout (types, indexes, CSV encoding) changes: every mart is then
#: republished once even if its snapshot is already published.
LAYOUT_VERSION = "1"
#: Date columns the dashboards filter on across people (Superset's time filter).
DATE_KEYS = ("local_date", "window_end_date")
_MAX_IDENTIFIER = 63
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed", batch_size=8192)


class UnsupportedType(ValueError):
    pass


def pg_type(kind: IcebergType) -> str:
    """The PostgreSQL type a column of this Iceberg type is published as."""
    if isinstance(kind, BooleanType):
        return "boolean"
    if isinstance(kind, IntegerType):
        return "integer"
    if isinstance(kind, LongType):
        return "bigint"
    if isinstance(kind, FloatType):
        return "real"
    if isinstance(kind, DoubleType):
        return "double precision"
    if isinstance(kind, DecimalType):
        return f"numeric({kind.precision},{kind.scale})"
    if isinstance(kind, DateType):
        return "date"
    if isinstance(kind, TimeType):
        return "time"
    if isinstance(kind, TimestamptzType | TimestamptzNanoType):
        return "timestamptz"
    if isinstance(kind, TimestampType | TimestampNanoType):
        return "timestamp"
    if isinstance(kind, StringType):
        return "text"
    if isinstance(kind, UUIDType):
        return "uuid"
    if isinstance(kind, BinaryType | FixedType):
        return "bytea"
    if isinstance(kind, ListType | MapType | StructType):
        return "jsonb"
    raise UnsupportedType(f"no PostgreSQL type for Iceberg type {kind}")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _index_name(table: str, suffix: str) -> str:
    name = f"{table}_{suffix}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_IDENTIFIER - len(suffix) - 10]}_{digest}_{suffix}"


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool

    def ddl(self, schema: str, table: str) -> str:
        columns = ", ".join(quote_ident(c) for c in self.columns)
        unique = "UNIQUE " if self.unique else ""
        return f"CREATE {unique}INDEX {quote_ident(self.name)} ON {quote_ident(schema)}.{quote_ident(table)} ({columns})"


@dataclass(frozen=True)
class Layout:
    """One mart's table in PostgreSQL: columns with their types, and indexes."""

    table: str
    columns: tuple[tuple[str, str], ...]  # (name, PostgreSQL type)
    indexes: tuple[Index, ...]
    grain: tuple[str, ...]
    docs: tuple[tuple[str, str], ...] = ()  # (column, Iceberg doc)

    def create_table(self, schema: str) -> str:
        columns = ",\n    ".join(f"{quote_ident(n)} {t}" for n, t in self.columns)
        return f"CREATE TABLE {quote_ident(schema)}.{quote_ident(self.table)} (\n    {columns}\n)"

    def copy_statement(self, schema: str) -> str:
        columns = ", ".join(quote_ident(n) for n, _ in self.columns)
        return f"COPY {quote_ident(schema)}.{quote_ident(self.table)} ({columns}) FROM STDIN (FORMAT csv, FREEZE)"

    @property
    def digest(self) -> str:
        """Changes whenever the published shape does: a republish is then due."""
        text = "|".join(
            [
                LAYOUT_VERSION,
                ";".join(f"{n}:{t}" for n, t in self.columns),
                ";".join(f"{i.name}:{','.join(i.columns)}:{i.unique}" for i in self.indexes),
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def layout_for(table: str, schema: Schema, grain: Sequence[str] | None) -> Layout:
    """Columns from the Iceberg schema; a unique index on the grain and one on the date key."""
    columns = []
    docs = []
    for field in schema.fields:
        try:
            columns.append((field.name, pg_type(field.field_type)))
        except UnsupportedType as exc:
            raise UnsupportedType(f"column {field.name!r}: {exc}") from None
        if field.doc:
            docs.append((field.name, field.doc))
    names = [n for n, _ in columns]
    indexes: list[Index] = []
    key = tuple(grain or ())
    if key and all(c in names for c in key):
        indexes.append(Index(_index_name(table, "grain_key"), key, unique=True))
        leading = key
    else:  # unknown grain: at least the person (and day) the dashboards filter on
        key = ()
        leading = tuple(c for c in ("site_id", DATE_KEYS[0]) if c in names)
        if leading:
            indexes.append(Index(_index_name(table, "site_idx"), leading, unique=False))
    for column in DATE_KEYS:  # the time filter across people: its own index unless it leads
        if column in names and (not leading or leading[0] != column):
            indexes.append(Index(_index_name(table, f"{column}_idx"), (column,), unique=False))
            break
    return Layout(
        table=table, columns=tuple(columns), indexes=tuple(indexes), grain=key, docs=tuple(docs)
    )


# ---------------------------------------------------------------- rows as CSV


def _json_text(value: object) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def _json_column(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Lists, maps, structs as JSON text (PostgreSQL reads it into jsonb)."""
    return pa.array(
        [None if v is None else _json_text(v) for v in column.to_pylist()], pa.large_string()
    )


def _bytea_column(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Binary values in bytea's hex input format (\\x...)."""
    return pa.array(
        [None if v is None else "\\x" + bytes(v).hex() for v in column.to_pylist()],
        pa.large_string(),
    )


def _uuid_column(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    def text(value: Any) -> str:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(bytes=bytes(value)))

    return pa.array([None if v is None else text(v) for v in column.to_pylist()], pa.large_string())


def csv_bytes(batch: pa.RecordBatch, layout: Layout) -> bytes:
    """One Arrow batch as CSV rows (no header) in the layout's column order."""
    arrays = []
    for name, pg in layout.columns:
        column = batch.column(batch.schema.get_field_index(name))
        kind = column.type
        if pa.types.is_dictionary(kind):
            column = column.dictionary_decode()
            kind = column.type
        if pg == "uuid":
            column = _uuid_column(column)
        elif pg == "jsonb":
            column = _json_column(column)
        elif pg == "bytea":
            column = _bytea_column(column)
        elif pa.types.is_string_view(kind):
            column = column.cast(pa.large_string())
        arrays.append(column)
    table = pa.Table.from_arrays(arrays, names=[n for n, _ in layout.columns])
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, _CSV_OPTIONS)
    return sink.getvalue()
