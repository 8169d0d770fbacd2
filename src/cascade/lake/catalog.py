"""The one factory that builds the lake's Iceberg catalog from settings.

`local`: PyIceberg's SQL catalog on SQLite plus a warehouse directory, both under CASCADE_HOME.
`lakehouse`: Nessie's Iceberg REST catalog with S3 storage (arrives with the stack).
Everything else in Cascade talks to the `Catalog` interface and never assumes local files.
"""

from __future__ import annotations

import contextlib
import sqlite3

from pyiceberg.catalog import Catalog, load_catalog
from sqlalchemy.exc import SQLAlchemyError
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from cascade.config import Profile, Settings
from cascade.exceptions import ConfigurationError

_OPEN_ATTEMPTS = 3


def catalog_properties(settings: Settings) -> dict[str, str]:
    if settings.lake.profile is Profile.LOCAL:
        for directory in (settings.lake.catalog_db_path.parent, settings.lake.warehouse_path):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = (
                    "a file of that name is in the way"
                    if isinstance(exc, FileExistsError)
                    else exc.strerror or str(exc)
                )
                raise ConfigurationError(
                    f"cannot create the lake directory {directory}: {reason}; "
                    "set CASCADE_HOME (or ICEBERG_WAREHOUSE_PATH) to a directory you can write"
                ) from None
        return {
            "type": "sql",
            "uri": f"sqlite:///{settings.lake.catalog_db_path}",
            "warehouse": settings.lake.warehouse_path.as_uri(),
        }
    return {
        "type": "rest",
        "uri": settings.nessie.catalog_uri,
        "warehouse": "warehouse",
        **settings.s3.properties(),
    }


def load_lake_catalog(settings: Settings) -> Catalog:
    properties = catalog_properties(settings)
    if settings.lake.profile is Profile.LOCAL:
        _refuse_a_copied_home(settings)
        # PyIceberg creates its tables in a new catalog database check-then-create, so processes
        # opening a brand-new home at once race; the losers find them made and try again.
        opening = Retrying(
            retry=retry_if_exception(_lost_the_race_to_create),
            stop=stop_after_attempt(_OPEN_ATTEMPTS),
            reraise=True,
        )
        try:
            return opening(load_catalog, settings.lake.catalog_name, **properties)
        except SQLAlchemyError as exc:
            raise ConfigurationError(
                f"cannot open the lake's catalog {settings.lake.catalog_db_path}: "
                f"{_first_line(exc)}; check that CASCADE_HOME is a writable directory"
            ) from None
    try:
        return load_catalog(settings.lake.catalog_name, **properties)
    except (OSError, ConnectionError) as exc:
        raise ConfigurationError(
            f"cannot reach the Iceberg catalog at {settings.nessie.catalog_uri}: {type(exc).__name__}; "
            "is the stack up (`cascade stack up`)?"
        ) from None


def _lost_the_race_to_create(exc: BaseException) -> bool:
    return isinstance(exc, SQLAlchemyError) and "already exists" in _first_line(exc)


def _first_line(exc: SQLAlchemyError) -> str:
    """SQLite's own reason (e.g. 'unable to open database file'), without SQLAlchemy's footer."""
    original = getattr(exc, "orig", None)
    return str(original or exc).splitlines()[0]


def _refuse_a_copied_home(settings: Settings) -> None:
    """Stop before using a home whose catalog points at another home's warehouse.

    Iceberg records absolute locations (metadata, manifests, data files), so a home copied with
    `cp -a` or moved still names the original's files: reading it would read the original, and
    writing it would write into the original. Only the stage is position-free, so the way to
    use the copy on its own is to rebuild its tables from its stage.
    """
    database = settings.lake.catalog_db_path
    if not database.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
            locations = [
                row[0]
                for row in db.execute(
                    "select metadata_location from iceberg_tables where catalog_name = ?",
                    (settings.lake.catalog_name,),
                )
            ]
    except sqlite3.Error:
        return  # no tables yet, or not readable: opening the catalog reports it properly
    own = settings.lake.warehouse_path.as_uri().rstrip("/") + "/"
    foreign = sorted(
        location for location in locations if location and not location.startswith(own)
    )
    if foreign:
        elsewhere = foreign[0].split("/metadata/", 1)[0].removeprefix("file://")
        raise ConfigurationError(
            f"the catalog {database} names tables outside this home's warehouse "
            f"{settings.lake.warehouse_path} (e.g. {elsewhere}): this home was copied or moved, and "
            "Iceberg keeps absolute paths, so using it would read and write the original. Use "
            f"the original home, or make this one stand alone: move {database.name} and "
            "warehouse/ out of it, then run `cascade ingest --from-stage` and `cascade transform`"
        )
