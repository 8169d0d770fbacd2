from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyiceberg.catalog import Catalog

from cascade.config import Settings, load_settings
from cascade.lake.catalog import load_lake_catalog

_ENV = (
    "NIGHTSCOUT_URL",
    "NIGHTSCOUT_SITES",
    "NIGHTSCOUT_API_SECRET",
    "NIGHTSCOUT_TOKEN",
    "CASCADE_HOME",
    "CASCADE_PROFILE",
    "ICEBERG_WAREHOUSE_PATH",
    "ICEBERG_STAGING_PATH",
    "CASCADE_DBT_PROJECT_DIR",
)


@pytest.fixture(scope="module")
def module_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Catalog]]:
    """A lake shared by one test module (dbt builds cost seconds: build once, assert many times)."""
    home = tmp_path_factory.mktemp("lake")
    with pytest.MonkeyPatch.context() as patch:
        for name in _ENV:
            patch.delenv(name, raising=False)
        patch.chdir(home)
        settings = load_settings(cascade_home=home / "lake")
        yield settings, load_lake_catalog(settings)


def rows(catalog: Catalog, identifier: str, **equal: Any) -> list[dict[str, Any]]:
    """A lake table's rows (optionally only those whose columns equal the given values)."""
    data = catalog.load_table(identifier).scan().to_arrow().to_pylist()
    return [r for r in data if all(r[k] == v for k, v in equal.items())]


@pytest.fixture
def read_rows(module_lake: tuple[Settings, Catalog]) -> Callable[..., list[dict[str, Any]]]:
    _, catalog = module_lake

    def read(identifier: str, **equal: Any) -> list[dict[str, Any]]:
        return rows(catalog, identifier, **equal)

    return read
