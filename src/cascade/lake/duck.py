"""DuckDB over the lake: every Iceberg table of the catalog as a namespace-qualified view.

DuckDB's iceberg extension (and the avro extension it needs) come from PyPI wheels, so they are
loaded from site-packages with auto-install off: no network is ever needed. Tables are read at
their current snapshot through `iceberg_scan(<metadata location>)`.
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from urllib.parse import urlparse

import duckdb
from pyiceberg.catalog import Catalog

from cascade.config import Profile, Settings

EXTENSIONS = ("avro", "iceberg")  # avro first: iceberg needs it


def extension_path(name: str) -> Path:
    package = import_module(f"duckdb_extension_{name}")
    root = Path(str(package.__file__)).parent / "extensions"
    matches = sorted(root.glob(f"v{duckdb.__version__}/{name}.duckdb_extension"))
    if not matches:
        raise RuntimeError(
            f"the DuckDB {name} extension for DuckDB {duckdb.__version__} is not installed "
            f"(package duckdb-extension-{name}); reinstall with `make install`"
        )
    return matches[0]


def connect(
    database: str = ":memory:", settings: Settings | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the iceberg extension loaded offline and UTC as its time zone.

    On the lakehouse profile it also reads S3 (httpfs) with the lake's credentials, held in a
    temporary DuckDB secret: never in a URL or a query string that could be logged.
    """
    con = duckdb.connect(
        database,
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    for name in EXTENSIONS:
        con.execute(f"LOAD '{extension_path(name)}'")
    con.execute("SET TimeZone = 'UTC'")
    if settings is not None and settings.lake.profile is Profile.LAKEHOUSE:
        endpoint = urlparse(settings.s3.endpoint)
        con.execute(f"LOAD '{extension_path('httpfs')}'")
        con.execute(
            "CREATE OR REPLACE TEMPORARY SECRET lake_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, "
            "ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
            [
                settings.s3.access_key_id.get_secret_value(),
                settings.s3.secret_access_key.get_secret_value(),
                settings.s3.region,
                endpoint.netloc,
                endpoint.scheme == "https",
            ],
        )
    return con


def lake_roots(settings: Settings) -> list[str]:
    """Where the lake's tables live (data and metadata): the local warehouse directory, or the
    lakehouse warehouse prefix on S3. Each ends with a separator, so a sibling such as
    `warehouse-old/` is not inside it."""
    if settings.lake.profile is Profile.LAKEHOUSE:
        return [settings.lake.warehouse_uri.rstrip("/") + "/"]
    return [str(settings.lake.warehouse_path).rstrip(os.sep) + os.sep]


def confine_to_lake(con: duckdb.DuckDBPyConnection, settings: Settings, scratch: Path) -> None:
    """Let `con` reach nothing but the lake's warehouse, for the rest of its life.

    Call it after the views are created (`attach_catalog`): from then on DuckDB itself refuses
    every file, URL and S3 object outside `lake_roots` (reads and writes alike, so the caller
    must also keep statements that write away from the connection), loads and installs no
    extension, and refuses any `SET` that would undo this. `scratch` is a private, empty
    directory for DuckDB's spill files: DuckDB always allows its temp directory, which would
    otherwise be `.tmp` under the working directory. Only for `cascade query`: the other users
    of `connect` (reports, transform) need the connection as it is.
    """
    con.execute("SET temp_directory = ?", [str(scratch)])
    con.execute("SET allowed_directories = ?", [lake_roots(settings)])
    for setting in (
        "enable_external_access = false",  # no file or network outside allowed_directories
        "autoinstall_known_extensions = false",
        "autoload_known_extensions = false",
        "allow_community_extensions = false",
        "python_enable_replacements = false",  # no Python variables read as tables
        "lock_configuration = true",  # last: nothing above can be set back
    ):
        con.execute(f"SET {setting}")


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def attach_catalog(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> list[str]:
    """Create one view per Iceberg table, named `<namespace>.<table>`; return their names."""
    names = []
    for namespace in catalog.list_namespaces():
        schema = ".".join(namespace)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        for identifier in catalog.list_tables(namespace):
            table = catalog.load_table(identifier)
            name = identifier[-1]
            target = f"{quote(schema)}.{quote(name)}"
            if (
                table.current_snapshot() is None
            ):  # iceberg_scan needs a snapshot: expose the empty shape
                con.register("_cascade_empty", table.schema().as_arrow().empty_table())
                con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM _cascade_empty")
                con.unregister("_cascade_empty")
                names.append(f"{schema}.{name}")
                continue
            location = table.metadata_location.replace("'", "''")
            con.execute(
                f"CREATE OR REPLACE VIEW {target} AS SELECT * FROM iceberg_scan('{location}')"
            )
            names.append(f"{schema}.{name}")
    return names
