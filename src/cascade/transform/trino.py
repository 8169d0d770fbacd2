"""The lakehouse profile's transform: dbt-trino builds the project straight into Nessie's branch.

NESSIE_REF picks the row of the branch model (`cascade.branching`): the profiles.yml output and
the Trino catalog bound to that branch (`main` → target `prod`, catalog `iceberg`; `dev` → target
`dev`, catalog `iceberg_dev`). Every model is an Iceberg table (bronze: views) that Trino commits to
the branch itself, so there is no working copy and nothing to write back: the lake holds the
incremental models' state. A failing model or test stops the run; tables committed by models
that ran before it stay, as on any dbt-trino target, and the next run converges.

The dbt project definition the incremental tables were built with is kept as a property of each
incremental table; when the project changes, the next run is a full refresh (as on DuckDB).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import httpx
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Summary

from cascade.branching import branch_for
from cascade.config import Settings
from cascade.exceptions import ConfigurationError, TransformError
from cascade.lake.schemas import RAW_COLLECTIONS
from cascade.lake.tables import ensure_raw_table
from cascade.transform.build import DbtTarget, NodeResult, dbt_threads
from cascade.transform.writeback import TableWrite

PROJECT_PROPERTY = "cascade.transform.project-fingerprint"


def trino_target(settings: Settings, threads: int | None = None) -> DbtTarget:
    """The dbt target that writes to NESSIE_REF through Trino, or a clear refusal."""
    try:
        branch = branch_for(settings.nessie.ref)
    except ConfigurationError as exc:
        raise TransformError(str(exc)) from None
    target = branch.dbt_target
    artifacts = settings.lake.home.resolve() / "dbt" / target
    return DbtTarget(
        name=target,
        environment={
            "TRINO_HOST": settings.trino.host,
            "TRINO_PORT": str(settings.trino.port),
            "TRINO_USER": settings.trino.user,
            "TRINO_CATALOG": branch.trino_catalog,
            "CASCADE_DBT_THREADS": dbt_threads(threads, default=2),
        },
        target_dir=artifacts / "target",
        log_dir=artifacts / "logs",
    )


def check_trino(settings: Settings) -> None:
    """Fail before dbt does, with a message that says what to start."""
    uri = f"http://{settings.trino.host}:{settings.trino.port}"
    try:
        info = httpx.get(f"{uri}/v1/info", timeout=10).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise TransformError(
            f"Trino at {uri} is not reachable ({type(exc).__name__}): start the stack "
            "(`cascade stack up`) or set TRINO_HOST / TRINO_PORT"
        ) from None
    if info.get("starting"):
        raise TransformError(f"Trino at {uri} is still starting; try again in a few seconds")


def ensure_raw_tables(catalog: Catalog) -> dict[str, int | None]:
    """The raw tables dbt's sources name (empty ones on a new branch); each one's snapshot id."""
    snapshots: dict[str, int | None] = {}
    for collection in RAW_COLLECTIONS:
        snapshot = ensure_raw_table(catalog, collection).current_snapshot()
        snapshots[collection] = snapshot.snapshot_id if snapshot is not None else None
    return snapshots


def _tables(catalog: Catalog, namespaces: Iterable[str]) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    for namespace in namespaces:
        try:
            identifiers = catalog.list_tables(namespace)
        except NoSuchNamespaceError:
            continue
        for identifier in identifiers:
            name = ".".join(identifier)
            try:
                tables[name] = catalog.load_table(name)
            except NoSuchTableError:  # dropped between list and load (a dbt rename-swap)
                continue
    return tables


def lake_snapshots(catalog: Catalog, namespaces: Iterable[str]) -> dict[str, int | None]:
    """Each table's current snapshot id in the given namespaces."""
    return {
        name: (snapshot.snapshot_id if (snapshot := table.current_snapshot()) else None)
        for name, table in _tables(catalog, namespaces).items()
    }


def project_changed(catalog: Catalog, namespaces: Iterable[str], definition: str) -> bool:
    """Whether any incremental table was built by another definition of the dbt project."""
    return any(
        table.properties.get(PROJECT_PROPERTY, definition) != definition
        for table in _tables(catalog, namespaces).values()
    )


def record_project(catalog: Catalog, nodes: Sequence[NodeResult], definition: str) -> None:
    """Mark each incremental table with the project definition that built it."""
    for node in nodes:
        if node.materialized != "incremental" or node.relation is None:
            continue
        table = catalog.load_table(node.relation)
        if table.properties.get(PROJECT_PROPERTY) != definition:
            with table.transaction() as tx:
                tx.set_properties({PROJECT_PROPERTY: definition})


def _live_rows(summary: Summary | None) -> int:
    """Rows a snapshot holds: Trino's DELETE (dbt-trino's delete+insert) writes position deletes,
    which `total-records` (the data files' rows) still counts."""
    if summary is None:
        return 0
    return int(summary.get("total-records", 0)) - int(summary.get("total-position-deletes", 0))


def built_tables(
    catalog: Catalog, nodes: Sequence[NodeResult], before: dict[str, int | None]
) -> list[TableWrite]:
    """What each built model left in the lake: its snapshot, row count, and whether it moved."""
    writes = []
    for node in sorted(nodes, key=lambda n: n.relation or ""):
        assert node.relation is not None
        table = catalog.load_table(node.relation)
        snapshot = table.current_snapshot()
        snapshot_id = snapshot.snapshot_id if snapshot is not None else None
        rows = _live_rows(snapshot.summary) if snapshot is not None else 0
        writes.append(
            TableWrite(
                identifier=node.relation,
                rows=rows,
                committed=before.get(node.relation) != snapshot_id,
                snapshot_id=snapshot_id,
                recreated=node.relation not in before,
            )
        )
    return writes
