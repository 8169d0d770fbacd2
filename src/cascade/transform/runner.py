"""`transform()`: raw Iceberg tables -> dbt -> silver/gold/marts Iceberg tables, on either engine.

The `lakehouse` profile builds through Trino straight into Nessie (see `cascade.transform.trino`).
The `local` profile builds on DuckDB and writes back:

1. Prepare the working DuckDB database (`CASCADE_HOME/transform.duckdb`): install the avro and
   iceberg extensions from their wheels, point schema `raw` at the current raw snapshots.
2. `dbt build` (models + data tests; unit tests on request) on the `local` target.
   Any failing model or test raises TransformError and nothing is written to the lake.
3. Write every built table/incremental model of silver, gold and marts back to the lake as
   `<layer>.<model>`: one atomic commit per table (only the changed (site, date) groups of tables
   keyed that way), skipped when the content is unchanged.

Bronze models (the working copy's image of raw) are not written back; neither are `int_` helper
views.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cascade.config import Profile, Settings
from cascade.lake.catalog import load_lake_catalog
from cascade.transform import trino
from cascade.transform.build import NodeResult, run_build
from cascade.transform.project import project_dir, project_fingerprint
from cascade.transform.workspace import (
    PROJECT_FINGERPRINT_KEY,
    Workspace,
    expose_raw_tables,
    has_built_models,
    install_extensions,
    read_state,
    write_state,
)
from cascade.transform.writeback import TableWrite, write_table

LAKE_LAYERS = ("silver", "gold", "marts")
LAKE_MATERIALIZATIONS = frozenset({"table", "incremental"})


@dataclass(frozen=True)
class TransformResult:
    """What one transform did: dbt's per-node results and what happened to each lake table."""

    run_id: str
    nodes: tuple[NodeResult, ...]
    tables: tuple[TableWrite, ...]
    engine: str  # "duckdb" (local profile) or "trino" (lakehouse)
    full_refresh: bool
    duckdb_path: Path | None = None  # the DuckDB working copy, on the local profile
    raw_snapshots: dict[str, int | None] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def models(self) -> tuple[NodeResult, ...]:
        return tuple(n for n in self.nodes if n.resource_type == "model")

    @property
    def tests(self) -> tuple[NodeResult, ...]:
        return tuple(n for n in self.nodes if n.resource_type in ("test", "unit_test"))

    @property
    def warnings(self) -> tuple[NodeResult, ...]:
        """Data tests of severity warn that found rows (odd source data that did not stop the run)."""
        return tuple(n for n in self.nodes if n.status == "warn")

    @property
    def committed(self) -> tuple[TableWrite, ...]:
        return tuple(t for t in self.tables if t.committed)

    def summary(self) -> str:
        return (
            f"{len(self.models)} models, {len(self.tests)} tests passed"
            f"{f' ({len(self.warnings)} warnings)' if self.warnings else ''}; "
            f"{len(self.committed)} of {len(self.tables)} lake tables changed "
            f"({self.engine}, {self.seconds:.1f}s{', full refresh' if self.full_refresh else ''})"
        )


def _lake_models(nodes: Sequence[NodeResult]) -> list[NodeResult]:
    """The built models that are lake tables of their own: silver, gold and marts tables."""
    return [
        n
        for n in nodes
        if n.resource_type == "model"
        and n.status == "success"
        and n.schema in LAKE_LAYERS
        and n.materialized in LAKE_MATERIALIZATIONS
    ]


def transform(
    settings: Settings,
    *,
    select: list[str] | None = None,
    full_refresh: bool = False,
    unit_tests: bool = False,
    threads: int | None = None,
) -> TransformResult:
    """Build the dbt project over the lake's raw tables into silver, gold and marts lake tables.

    `select` takes dbt selectors (`fct_glucose_readings+`, `tag:x`, `path:models/gold`);
    `full_refresh` rebuilds incremental models from scratch (the result is the same, by design);
    `unit_tests` also runs the project's dbt unit tests (CI does; a scheduled run need not).
    A change to the dbt project itself (models, macros) triggers a full refresh automatically.
    The profile picks the engine: DuckDB plus write-back (`local`), Trino on NESSIE_REF (`lakehouse`).
    """
    on_engine = (
        _transform_on_trino if settings.lake.profile is Profile.LAKEHOUSE else _transform_on_duckdb
    )
    return on_engine(
        settings, select=select, full_refresh=full_refresh, unit_tests=unit_tests, threads=threads
    )


def _transform_on_duckdb(
    settings: Settings,
    *,
    select: list[str] | None,
    full_refresh: bool,
    unit_tests: bool,
    threads: int | None,
) -> TransformResult:
    started = time.monotonic()
    run_id = uuid.uuid4().hex
    project = project_dir(settings.transform.dbt_project_dir)
    workspace = Workspace.for_settings(settings)
    catalog = load_lake_catalog(settings)
    definition = project_fingerprint(project)

    con = workspace.connect()
    try:
        install_extensions(con)
        raw_snapshots = expose_raw_tables(con, catalog)
        if has_built_models(con) and read_state(con, PROJECT_FINGERPRINT_KEY) != definition:
            full_refresh = True  # the models changed: incremental state may not match them
    finally:
        con.close()

    nodes = run_build(
        project,
        workspace.dbt_target(threads or settings.transform.dbt_threads),
        select=select,
        full_refresh=full_refresh,
        unit_tests=unit_tests,
    )

    con = workspace.connect()
    try:
        if not select:
            write_state(con, PROJECT_FINGERPRINT_KEY, definition)
        summary = {"cascade.transform.run-id": run_id}
        writes = [
            write_table(
                catalog,
                con,
                namespace=node.schema or "",
                name=node.name,
                node_id=node.unique_id,
                snapshot_properties=summary,
            )
            for node in sorted(_lake_models(nodes), key=lambda n: (n.schema or "", n.name))
        ]
    finally:
        con.close()

    return TransformResult(
        run_id=run_id,
        nodes=tuple(nodes),
        tables=tuple(writes),
        engine="duckdb",
        full_refresh=full_refresh,
        duckdb_path=workspace.database,
        raw_snapshots=raw_snapshots,
        seconds=time.monotonic() - started,
    )


def _transform_on_trino(
    settings: Settings,
    *,
    select: list[str] | None,
    full_refresh: bool,
    unit_tests: bool,
    threads: int | None,
) -> TransformResult:
    started = time.monotonic()
    target = trino.trino_target(settings, threads or settings.transform.dbt_threads)
    trino.check_trino(settings)
    project = project_dir(settings.transform.dbt_project_dir)
    catalog = load_lake_catalog(settings)
    definition = project_fingerprint(project)

    raw_snapshots = trino.ensure_raw_tables(catalog)
    before = trino.lake_snapshots(catalog, LAKE_LAYERS)
    if trino.project_changed(catalog, LAKE_LAYERS, definition):
        full_refresh = True  # the models changed: incremental state may not match them

    nodes = run_build(
        project, target, select=select, full_refresh=full_refresh, unit_tests=unit_tests
    )
    models = _lake_models(nodes)
    trino.record_project(catalog, models, definition)
    return TransformResult(
        run_id=uuid.uuid4().hex,
        nodes=tuple(nodes),
        tables=tuple(trino.built_tables(catalog, models, before)),
        engine="trino",
        full_refresh=full_refresh,
        raw_snapshots=raw_snapshots,
        seconds=time.monotonic() - started,
    )
