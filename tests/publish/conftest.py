"""Fixtures for the publish tests: the local stack's PostgreSQL only, and a lake built by the pipeline.

`stack_settings` is the stack tests' own fixture (tests/stack/conftest.py), re-exported here so
both suites configure their private stack the same way (own state directory under /tmp, free
ports). Only PostgreSQL is brought up: `up(settings, ["postgres"])` takes a few seconds.
Set CASCADE_TEST_STACK_KEEP=1 to leave it running after the session.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cascade.config import Settings, SiteConfig, load_settings
from cascade.lake.ingest import ingest
from cascade.transform import TransformResult, transform
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.stack import down, up


def _stack_conftest() -> object:
    path = Path(__file__).resolve().parents[1] / "stack" / "conftest.py"
    spec = importlib.util.spec_from_file_location("cascade_tests_stack_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stack_settings = _stack_conftest().stack_settings  # type: ignore[attr-defined]

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
    "MARTS_DATABASE_URL",
    "MARTS_SCHEMA",
    "BI_READER_ROLE",
    "PUBLISH_LOCK_TIMEOUT_SECONDS",
    "PUBLISH_LOCK_WAIT_SECONDS",
)


#: Each mart's grain, as the tests know it (publish reads it from dbt's manifest).
MART_GRAINS: dict[str, tuple[str, ...]] = {
    "mrt_glucose_overview": ("site_id",),
    "mrt_time_in_range": ("site_id", "local_date"),
    "mrt_daily_summary": ("site_id", "local_date"),
    "mrt_glucose_hourly_patterns": ("site_id", "iso_day_of_week", "local_hour"),
    "mrt_agp": ("site_id", "time_bin"),
}


@pytest.fixture(scope="session")
def postgres(stack_settings: Settings) -> Iterator[Settings]:
    """The stack's PostgreSQL (roles and the marts database provisioned), for the session."""
    try:
        up(stack_settings, ["postgres"])
    except BaseException:
        down(stack_settings, ["postgres"])
        raise
    yield stack_settings
    if os.environ.get("CASCADE_TEST_STACK_KEEP") != "1":
        down(stack_settings, ["postgres"])


@pytest.fixture(scope="session")
def marts_dsn(postgres: Settings) -> str:
    return postgres.stack.marts_dsn


@pytest.fixture(scope="session")
def bi_dsn(postgres: Settings) -> str:
    return postgres.stack.postgres_dsn("marts", "bi_reader", postgres.stack.bi_reader_password)


@dataclass
class Lake:
    """An embedded lake built by the real pipeline, with its fake Nightscout still serving."""

    settings: Settings
    ns: FakeNightscout
    edits: int = 0

    def advance(self) -> TransformResult:
        """Lower a few of the latest readings at the source (a new minimum for that day), ingest
        the edits and transform: new snapshots of the marts that subject's last days feed."""
        site = self.ns.site_ids[0]
        store = self.ns.stores[site]
        readings = sorted(
            (
                d
                for d in store.documents("entries")
                if isinstance(d.get("sgv"), int) and isinstance(d.get("date"), int)
            ),
            key=lambda d: d["date"],
        )
        self.edits += 1
        for offset, doc in enumerate(readings[-(3 * self.edits) :][:3]):
            store.edit(
                "entries", doc.get("identifier") or doc["_id"], {"sgv": 45 + offset - self.edits}
            )
        ingest(self.settings)
        return transform(self.settings)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """Two people, 15 days of synthetic CGM data: fake Nightscout -> ingest -> dbt -> marts.*."""
    home = tmp_path_factory.mktemp("publish")
    with pytest.MonkeyPatch.context() as patch:
        for name in _ENV:
            patch.delenv(name, raising=False)
        patch.chdir(home)
        settings = load_settings(cascade_home=home / "lake", nightscout_backoff_seconds=0.01)
        with FakeNightscout.synthetic(subjects=2, days=15, seed=5).start() as ns:
            settings = settings.with_values(
                **{"nightscout_sites": [SiteConfig(id=s, url=ns.site_url(s)) for s in ns.site_ids]}
            )
            ingest(settings)
            transform(settings)
            yield Lake(settings, ns)
