"""The whole job in order: ingest → transform (dbt build: models and their tests) [→ promote].

A thin sequence over the stages, shared by `cascade run`, `cascade demo` and the orchestrator.
It stops at the first failing stage; the stage's own error says what failed and why. With
`promote=True` (lakehouse, built on a branch other than main) a green build is merged into
`main` atomically: write-audit-publish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cascade.config import Settings
from cascade.lake.branches import Promotion, check_promotable, promote
from cascade.lake.ingest import LoadReport, ProgressCallback, ingest
from cascade.transform.runner import TransformResult, transform


@dataclass(frozen=True)
class PipelineResult:
    loads: list[LoadReport]
    transform: TransformResult
    promotion: Promotion | None = None


def run_pipeline(
    settings: Settings,
    *,
    site_ids: list[str] | None = None,
    full_refresh: bool = False,
    promote_to_main: bool = False,
    on_ingest_progress: ProgressCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> PipelineResult:
    announce = on_stage or (lambda stage: None)
    if promote_to_main:
        check_promotable(settings)  # before any work, not after it
    announce("ingest")
    loads = ingest(settings, site_ids=site_ids, progress=on_ingest_progress)
    announce("transform")
    result = transform(settings, full_refresh=full_refresh)
    if not promote_to_main:
        return PipelineResult(loads=loads, transform=result)
    announce("promote")
    return PipelineResult(loads=loads, transform=result, promotion=promote(settings))
