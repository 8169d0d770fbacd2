"""Edges of a run: odd source data warns, a failing test stops the run (naming it, writing
nothing to the lake), an empty lake builds empty tables."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyiceberg.catalog import Catalog

from cascade.config import Settings
from cascade.exceptions import CascadeError, TransformError
from cascade.transform import project_dir, transform
from cascade.transform.project import PROJECT_DIR_ENV

from .rawdata import DocFactory, ms, write_raw

pytestmark = pytest.mark.integration


def load_entries(catalog: Catalog, *, last_offset: int = 60) -> None:
    docs = DocFactory()
    start = ms(datetime(2026, 1, 1, tzinfo=UTC))
    entries = [docs.sgv(start + i * 300_000, 120) for i in range(12)]
    entries.append(docs.sgv(start + 12 * 300_000, 120, offset=last_offset))
    write_raw(catalog, "entries", "edge", entries, ingested_at=datetime(2026, 1, 2, tzinfo=UTC))


def test_odd_source_data_warns_and_still_publishes(settings: Settings, catalog: Catalog) -> None:
    load_entries(catalog, last_offset=900)  # UTC+15:00: no such zone on earth (+14:00 is the most)
    result = transform(settings)
    (warning,) = result.warnings
    assert warning.tested == "stg_nightscout__entries.utc_offset_minutes"
    assert "warning" in result.summary()
    assert catalog.load_table("gold.glucose_metrics_daily").scan().to_arrow().num_rows >= 1


def test_a_failing_test_names_itself_and_writes_nothing(
    settings: Settings, catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    shutil.copytree(project_dir(), project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "tests" / "singular" / "assert_no_subject_has_readings.sql").write_text(
        "select site_id from {{ ref('dim_subject') }} where reading_count > 0\n"
    )
    load_entries(catalog)

    with pytest.raises(TransformError) as failure:
        transform(settings.with_values(**{PROJECT_DIR_ENV: project}))

    message = str(failure.value)
    assert isinstance(failure.value, CascadeError)
    assert message.startswith(
        "dbt build failed: test assert_no_subject_has_readings: fail: Got 1 result"
    )
    assert "downstream nodes skipped" in message
    assert not [ns for ns in catalog.list_namespaces() if ns[0] in ("silver", "gold", "marts")]


def test_an_empty_lake_builds_empty_tables_once(settings: Settings, catalog: Catalog) -> None:
    first = transform(settings)  # nothing ingested yet: raw tables do not even exist
    assert first.tables and all(t.rows == 0 for t in first.tables)
    assert catalog.load_table("gold.glucose_metrics_daily").schema().find_field("tir_pct")
    again = transform(settings)
    assert not again.committed
