from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyiceberg.catalog import Catalog

from cascade.config import Settings, load_settings
from cascade.lake.catalog import load_lake_catalog


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a lake under tmp_path, isolated from the developer's environment and .env."""
    for name in (
        "NIGHTSCOUT_URL",
        "NIGHTSCOUT_SITES",
        "NIGHTSCOUT_API_SECRET",
        "NIGHTSCOUT_TOKEN",
        "CASCADE_HOME",
        "CASCADE_PROFILE",
        "ICEBERG_WAREHOUSE_PATH",
        "ICEBERG_STAGING_PATH",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return load_settings(cascade_home=tmp_path / "lake", nightscout_backoff_seconds=0.01)


@pytest.fixture
def catalog(settings: Settings) -> Iterator[Catalog]:
    yield load_lake_catalog(settings)
