"""The one factory that builds the lake's Iceberg catalog from settings.

`local`: PyIceberg's SQL catalog on SQLite plus a warehouse directory, both under CASCADE_HOME.
`lakehouse`: Nessie's Iceberg REST catalog with S3 storage (arrives with the stack).
Everything else in Cascade talks to the `Catalog` interface and never assumes local files.
"""

from __future__ import annotations

from pyiceberg.catalog import Catalog, load_catalog

from cascade.config import Profile, Settings
from cascade.exceptions import ConfigurationError


def catalog_properties(settings: Settings) -> dict[str, str]:
    if settings.cascade_profile is Profile.LOCAL:
        settings.catalog_db_path.parent.mkdir(parents=True, exist_ok=True)
        settings.warehouse_path.mkdir(parents=True, exist_ok=True)
        return {
            "type": "sql",
            "uri": f"sqlite:///{settings.catalog_db_path}",
            "warehouse": settings.warehouse_path.as_uri(),
        }
    return {
        "type": "rest",
        "uri": settings.nessie_catalog_uri,
        "warehouse": "warehouse",
        **settings.s3_properties(),
    }


def load_lake_catalog(settings: Settings) -> Catalog:
    try:
        return load_catalog(settings.iceberg_catalog_name, **catalog_properties(settings))
    except (OSError, ConnectionError) as exc:
        raise ConfigurationError(
            f"cannot reach the Iceberg catalog at {settings.nessie_catalog_uri}: {type(exc).__name__}; "
            "is the stack up (`cascade stack up`)?"
        ) from None
