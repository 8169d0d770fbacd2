"""Ad-hoc SQL over the lake (`cascade query`): read-only, and nothing but the lake.

Two independent guards (docs/ARCHITECTURE.md, "Querying the lake safely"):

* DuckDB's own parser splits the SQL into statements, and every one must be a SELECT (which
  covers DESCRIBE, SHOW, SUMMARIZE, VALUES and FROM-first queries) or an EXPLAIN of one; a
  SELECT may not call the few table functions that change state or run SQL given as text.
* The connection is confined to the lake's warehouse by DuckDB's settings before any of the
  user's SQL is parsed (`duck.confine_to_lake`), and those settings are locked.
"""

from __future__ import annotations

import re
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb

from cascade.config import Settings
from cascade.exceptions import QueryError
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.duck import attach_catalog, confine_to_lake, connect, lake_roots

#: Table functions a SELECT can call that are not reads: logging and profiling switches (the
#: log files would be written under an allowed directory, the lake), checkpoints, changes to
#: Iceberg table properties, and functions that run SQL given as a string (a way around the
#: statement check). None is needed to read the lake.
UNSAFE_FUNCTIONS = frozenset(
    {
        "checkpoint",
        "disable_logging",
        "disable_profiling",
        "enable_logging",
        "enable_profiling",
        "force_checkpoint",
        "iceberg_to_ducklake",
        "json_execute_serialized_sql",
        "query",
        "query_table",
        "remove_iceberg_schema_properties",
        "remove_iceberg_table_properties",
        "set_iceberg_schema_properties",
        "set_iceberg_table_properties",
        "truncate_duckdb_logs",
        "write_log",
    }
)

#: Statement types whose SQL keyword says more than the type's name (INSTALL is a LOAD, RESET
#: and USE are SETs, BEGIN is a TRANSACTION); types this DuckDB's Python API cannot name show as
#: "???" and are named by their keyword too.
_NAMED_BY_KEYWORD = frozenset({"LOAD", "SET", "TRANSACTION", "CALL"})
_LEADING_COMMENTS = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
# The statement's first keyword, two for FORCE INSTALL and UPDATE EXTENSIONS.
_KEYWORD = re.compile(r"(?:(?:force|update)\s+)?[A-Za-z_]+", re.I)
# EXPLAIN [ANALYZE] [(options)] <statement>; anything else is refused, not guessed at.
_EXPLAIN = re.compile(r"explain\s+(?:analy[sz]e\s+)?(?:\([^()]*\)\s*)?(?P<target>.*)", re.I | re.S)
_IDENTIFIER = re.compile(rb'"(?P<quoted>(?:[^"]|"")*)"|(?P<bare>[A-Za-z_][A-Za-z0-9_$]*)')


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run read-only SQL over the lake's tables; the result of the last statement."""
    with tempfile.TemporaryDirectory(prefix="cascade-query-") as scratch:
        con = connect(settings=settings)
        try:
            tables = attach_catalog(con, load_lake_catalog(settings))
            confine_to_lake(con, settings, Path(scratch))
            known = ", ".join(tables) or "none yet: run `cascade ingest`"
            try:
                statements = read_statements(con, sql)
                cursor = con
                for statement in statements:
                    cursor = con.execute(statement)
                columns = [d[0] for d in cursor.description or []]
                return columns, cursor.fetchall()
            except duckdb.PermissionException as exc:
                raise QueryError(
                    f"cascade query reads only the lake ({', '.join(lake_roots(settings))}): "
                    f"reading outside the lake is not allowed ({_reason(exc)})"
                ) from None
            except duckdb.Error as exc:
                raise QueryError(f"{exc}\n(lake tables: {known})") from None
        finally:
            con.close()


def read_statements(con: duckdb.DuckDBPyConnection, sql: str) -> list[duckdb.Statement]:
    """The statements of `sql` as DuckDB parses them, if each one only reads; else QueryError.

    Parsed on the confined connection: parsing some statements already touches files (IMPORT
    DATABASE reads the exported schema), and there that is refused too. The caller executes
    these very statement objects, so what was checked is what runs.
    """
    statements = con.extract_statements(sql)
    if not statements:
        raise QueryError("no SQL statement to run")
    for statement in statements:
        if statement.type == duckdb.StatementType.SELECT:
            continue
        if statement.type == duckdb.StatementType.EXPLAIN:
            _check_explained(con, statement)
            continue
        raise QueryError(_refusal(f"{_kind(statement)} statements are", sql))
    for text in (sql, *(s.query for s in statements)):
        called = _called_functions(text) & UNSAFE_FUNCTIONS
        if called:
            raise QueryError(
                f"cascade query is read-only: the function {sorted(called)[0]}() is not allowed "
                "(it changes state or runs SQL given as text)"
            )
    return statements


def _check_explained(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> None:
    """EXPLAIN only of a SELECT: EXPLAIN ANALYZE runs the statement it explains."""
    match = _EXPLAIN.fullmatch(_without_leading_comments(statement.query))
    try:
        targets = con.extract_statements(match["target"]) if match else []
    except duckdb.Error:
        targets = []
    if len(targets) == 1 and targets[0].type == duckdb.StatementType.SELECT:
        return
    what = f"a {_kind(targets[0])} statement" if len(targets) == 1 else "this statement"
    raise QueryError(_refusal(f"EXPLAIN of {what} is", statement.query))


def _refusal(what: str, sql: str) -> str:
    hint = ""
    if what.startswith("CREATE") and re.search(r"\bpivot\b", sql, re.I):
        hint = "; a PIVOT needs its values listed: PIVOT ... ON column IN (...)"
    return f"cascade query is read-only: {what} not allowed (only SELECT){hint}"


def _kind(statement: duckdb.Statement) -> str:
    name = statement.type.name
    if name in _NAMED_BY_KEYWORD or not name.isidentifier():
        keyword = _KEYWORD.match(_without_leading_comments(statement.query))
        if keyword:
            return " ".join(keyword.group().upper().split())
    return name.replace("_", " ") if name.isidentifier() else "UNKNOWN"


def _without_leading_comments(text: str) -> str:
    comments = _LEADING_COMMENTS.match(text)
    return text[comments.end() :] if comments else text


def _called_functions(sql: str) -> set[str]:
    """Lower-cased names written as `name(` (or `"name" (`, `schema.name(`) in `sql`: DuckDB's
    tokenizer tells identifiers and keywords from strings and comments (its offsets are bytes)."""
    data = sql.encode()
    tokens = duckdb.tokenize(sql)
    names = set()
    for (start, kind), (following, _) in pairwise(tokens):
        if kind not in (duckdb.token_type.identifier, duckdb.token_type.keyword):
            continue
        if data[following : following + 1] != b"(":
            continue
        match = _IDENTIFIER.match(data, start)
        if match:
            quoted = match["quoted"]
            name = quoted.replace(b'""', b'"') if quoted is not None else match["bare"]
            names.add(name.decode(errors="replace").lower())
    return names


def _reason(exc: duckdb.Error) -> str:
    """DuckDB's reason on one line, without its 'Permission Error: ' prefix."""
    return str(exc).splitlines()[0].removeprefix("Permission Error: ")
