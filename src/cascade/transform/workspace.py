"""The DuckDB working database dbt builds in: `CASCADE_HOME/transform.duckdb`.

It is a rebuildable working copy, never the truth: the lake's Iceberg tables are. It holds
(1) schema `raw`: views over the current snapshot of each raw Iceberg table (`iceberg_scan` of
its metadata file), re-pointed before every run; (2) the models dbt builds (incremental ones keep
their state here between runs); (3) `_cascade.transform_state`, the fingerprint of the dbt project
the models were last built with. Delete the file and the next run rebuilds everything from raw,
with the same result.

DuckDB's avro and iceberg extensions come from their PyPI wheels: the runner INSTALLs them from
site-packages into an extension directory under CASCADE_HOME, so dbt-duckdb can load them by
name with auto-install off. No network, ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

from cascade.config import Settings
from cascade.exceptions import TransformError
from cascade.lake.duck import EXTENSIONS, extension_path, quote
from cascade.lake.schemas import RAW_COLLECTIONS, RAW_NAMESPACE, raw_schema
from cascade.transform.build import DbtTarget, dbt_threads

STATE_SCHEMA = "_cascade"
STATE_TABLE = f"{STATE_SCHEMA}.transform_state"
PROJECT_FINGERPRINT_KEY = "project_fingerprint"


@dataclass(frozen=True)
class Workspace:
    """Paths of one CASCADE_HOME's transform working area."""

    database: Path
    extension_dir: Path
    dbt_target_dir: Path
    dbt_log_dir: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> Workspace:
        home = settings.lake.home.resolve()
        return cls(
            database=home / "transform.duckdb",
            extension_dir=home / "duckdb" / "extensions",
            dbt_target_dir=home / "dbt" / "target",
            dbt_log_dir=home / "dbt" / "logs",
        )

    def config(self) -> dict[str, str | bool | int | float | list[str]]:
        """The connection configuration dbt-duckdb uses too (profiles.yml `config_options`)."""
        return {
            "extension_directory": str(self.extension_dir),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }

    def dbt_target(self, threads: int | None = None) -> DbtTarget:
        """profiles.yml's `local` output: dbt-duckdb on this working database."""
        return DbtTarget(
            name="local",
            environment={
                "CASCADE_DUCKDB_PATH": str(self.database),
                "CASCADE_DUCKDB_EXTENSION_DIR": str(self.extension_dir),
                "CASCADE_DBT_THREADS": dbt_threads(threads, default=4),
            },
            target_dir=self.dbt_target_dir,
            log_dir=self.dbt_log_dir,
        )

    def connect(self) -> duckdb.DuckDBPyConnection:
        self.database.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.database), config=self.config())
        except duckdb.IOException as exc:
            hint = (
                "another `cascade transform` is running on this home"
                if "lock" in str(exc).lower()
                else "CASCADE_HOME must be a writable directory"
            )
            raise TransformError(
                f"cannot open the transform database {self.database}: {exc} ({hint})"
            ) from None
        con.execute("SET TimeZone = 'UTC'")
        return con


def install_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """Copy avro and iceberg from their wheels into the extension directory, once."""
    installed = {
        name
        for name, is_installed in con.execute(
            "SELECT extension_name, installed FROM duckdb_extensions()"
        ).fetchall()
        if is_installed
    }
    for name in EXTENSIONS:
        if name not in installed:
            con.execute(f"INSTALL '{extension_path(name)}'")
        con.execute(f"LOAD {name}")


def _object_type(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> str | None:
    row = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchone()
    return None if row is None else str(row[0])


def _drop(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> None:
    kind = _object_type(con, schema, name)
    target = f"{quote(schema)}.{quote(name)}"
    if kind == "VIEW":
        con.execute(f"DROP VIEW {target}")
    elif kind is not None:
        con.execute(f"DROP TABLE {target}")


def expose_raw_tables(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> dict[str, int | None]:
    """Point `raw.<collection>` at each raw table's current snapshot (an empty table with the raw
    schema when the lake has none yet); return each collection's snapshot id."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(RAW_NAMESPACE)}")
    snapshots: dict[str, int | None] = {}
    for collection in RAW_COLLECTIONS:
        _drop(con, RAW_NAMESPACE, collection)
        target = f"{quote(RAW_NAMESPACE)}.{quote(collection)}"
        try:
            table = catalog.load_table(f"{RAW_NAMESPACE}.{collection}")
        except (NoSuchTableError, NoSuchNamespaceError):
            table = None
        snapshot = table.current_snapshot() if table is not None else None
        if table is None or snapshot is None:
            empty = raw_schema(collection).as_arrow().empty_table()
            con.register("_cascade_empty_raw", empty)
            con.execute(f"CREATE TABLE {target} AS SELECT * FROM _cascade_empty_raw")
            con.unregister("_cascade_empty_raw")
            snapshots[collection] = None
            continue
        location = table.metadata_location.replace("'", "''")
        con.execute(f"CREATE VIEW {target} AS SELECT * FROM iceberg_scan('{location}')")
        snapshots[collection] = snapshot.snapshot_id
    return snapshots


def read_state(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)"
    )
    row = con.execute(f"SELECT value FROM {STATE_TABLE} WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def write_state(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    read_state(con, key)  # creates the table if needed
    con.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} VALUES (?, ?)", [key, value])


def has_built_models(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('silver', 'gold', 'marts')"
    ).fetchone()
    return bool(row and row[0])
