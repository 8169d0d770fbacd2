"""The whole job in order: ingest → transform (dbt build: models and their tests).

A thin sequence over the stages, shared by `cascade run`, `cascade demo` and the orchestrator.
It stops at the first failing stage; the stage's own error says what failed and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cascade.config import Settings
from cascade.lake.ingest import LoadReport, ProgressCallback, ingest
from cascade.transform.runner import TransformResult, transform


@dataclass(frozen=True)
class PipelineResult:
    loads: list[LoadReport]
    transform: TransformResult


def run_pipeline(
    settings: Settings,
    *,
    site_ids: list[str] | None = None,
    full_refresh: bool = False,
    on_ingest_progress: ProgressCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> PipelineResult:
    announce = on_stage or (lambda stage: None)
    announce("ingest")
    loads = ingest(settings, site_ids=site_ids, progress=on_ingest_progress)
    announce("transform")
    result = transform(settings, full_refresh=full_refresh)
    return PipelineResult(loads=loads, transform=result)
