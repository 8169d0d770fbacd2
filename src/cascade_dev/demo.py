"""`cascade demo`: the whole pipeline on this machine, end to end, in a few minutes.

A fake Nightscout with synthetic people serves real HTTP on loopback; Cascade ingests it into
an embedded lake of its own (`CASCADE_HOME/demo`, so a real lake is never touched), builds
every dbt layer, writes one AGP report per person and returns the headline metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade.config import Settings, SiteConfig
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.duck import attach_catalog, connect
from cascade.lake.ingest import ProgressCallback
from cascade.pipeline import PipelineResult, run_pipeline
from cascade.transform.project import domain_constants
from cascade_dev.fake_nightscout.server import FakeNightscout

HEADLINE_COLUMNS = (
    "site_id",
    "window_start_date",
    "window_end_date",
    "cgm_active_pct",
    "tir_pct",
    "tbr_pct",
    "tar_pct",
    "gmi_pct",
    "cv_pct",
    "gri",
    "gri_zone",
)


@dataclass(frozen=True)
class DemoResult:
    home: Path
    pipeline: PipelineResult
    headline: list[dict[str, Any]]
    reports: dict[str, Path]


def demo_settings(settings: Settings, ns: FakeNightscout) -> Settings:
    return settings.with_values(
        **{
            "cascade_home": settings.lake.home / "demo",
            "iceberg_warehouse_path": None,
            "iceberg_staging_path": None,
            "nightscout_sites": [SiteConfig(id=s, url=ns.site_url(s)) for s in ns.site_ids],
            "nightscout_url": None,
        }
    )


def headline_metrics(settings: Settings) -> list[dict[str, Any]]:
    con = connect(settings=settings)
    try:
        attach_catalog(con, load_lake_catalog(settings))
        cursor = con.execute(
            f"select {', '.join(HEADLINE_COLUMNS)} from marts.mrt_glucose_overview order by site_id"
        )
        columns = [d[0] for d in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def run_demo(
    settings: Settings,
    *,
    subjects: int = 3,
    days: int = domain_constants().window_days,
    seed: int = 0,
    on_ingest_progress: ProgressCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> DemoResult:
    from cascade.serve.report import render_report

    announce = on_stage or (lambda stage: None)
    announce("generate")
    with FakeNightscout.synthetic(subjects=subjects, days=days, seed=seed).start() as ns:
        local = demo_settings(settings, ns)
        pipeline = run_pipeline(local, on_ingest_progress=on_ingest_progress, on_stage=on_stage)
    announce("report")
    headline = headline_metrics(local)
    reports_dir = local.lake.home / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    reports = {
        row["site_id"]: render_report(
            local, site_id=row["site_id"], out=reports_dir / f"{row['site_id']}.html"
        )
        for row in headline
    }
    return DemoResult(home=local.lake.home, pipeline=pipeline, headline=headline, reports=reports)
