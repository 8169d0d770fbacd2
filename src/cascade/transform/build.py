"""Run `dbt build` in-process with dbtRunner and turn its results into plain records.

dbt reads the connection from `transforms/dbt/profiles.yml`, which takes everything from the
environment; `dbt_environment` sets those variables for the duration of one invocation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade.exceptions import TransformError

# Statuses dbt reports for nodes that did not do their job.
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})


@dataclass(frozen=True)
class NodeResult:
    """One dbt node (model, data test, unit test) of a build."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    message: str | None
    seconds: float
    schema: str | None = None
    materialized: str | None = None
    failures: int | None = None
    tested: str | None = None  # for a data test: the model (and column) it checks

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def relation(self) -> str | None:
        return (
            f"{self.schema}.{self.name}" if self.resource_type == "model" and self.schema else None
        )


@dataclass(frozen=True)
class DbtTarget:
    """Where one `dbt build` runs: a profiles.yml output, the variables it reads, artifact paths."""

    name: str  # the profiles.yml output: local (DuckDB), dev or prod (Trino)
    environment: dict[str, str]
    target_dir: Path
    log_dir: Path


def dbt_threads(threads: int | None, default: int) -> str:
    return str(threads or int(os.environ.get("CASCADE_DBT_THREADS", default)))


@contextmanager
def dbt_environment(target: DbtTarget) -> Iterator[None]:
    """The variables profiles.yml reads, set for one invocation and restored afterwards."""
    values = {
        **target.environment,
        "CASCADE_DBT_TARGET": target.name,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_args(
    project: Path,
    target: DbtTarget,
    *,
    select: Sequence[str] | None,
    full_refresh: bool,
    unit_tests: bool,
) -> list[str]:
    args = [
        "build",
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target",
        target.name,
        "--target-path",
        str(target.target_dir),
        "--log-path",
        str(target.log_dir),
        "--log-level-file",
        "info",
        "--quiet",
        "--no-use-colors",
        "--no-send-anonymous-usage-stats",
    ]
    if select:
        args += ["--select", *select]
    if full_refresh:
        args.append("--full-refresh")
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    return args


def _node_result(result: Any) -> NodeResult:
    node = result.node
    config = getattr(node, "config", None)
    status = str(getattr(result.status, "value", result.status))
    resource_type = str(getattr(node.resource_type, "value", node.resource_type))
    tested = None
    attached = getattr(node, "attached_node", None)
    if attached:
        tested = attached.rsplit(".", 1)[-1]
        if getattr(node, "column_name", None):
            tested += f".{node.column_name}"
    return NodeResult(
        unique_id=node.unique_id,
        # models are known by their relation name; tests by their name (aliases are hashed)
        name=(getattr(node, "alias", None) or node.name) if resource_type == "model" else node.name,
        resource_type=resource_type,
        status=status,
        message=result.message,
        seconds=float(result.execution_time or 0.0),
        schema=getattr(node, "schema", None),
        materialized=getattr(config, "materialized", None) if config is not None else None,
        failures=result.failures,
        tested=tested,
    )


def _describe(node: NodeResult) -> str:
    what = f"{node.resource_type} {node.relation or node.name}"
    if node.tested:
        what += f" (on {node.tested})"
    reason = (node.message or node.status).strip()
    return f"{what}: {node.status}: {reason}"


def release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in-process after a run.

    dbt-duckdb caches its connection in a class attribute and, with dbtRunner, never closes it:
    the file stays locked by this process and a later connection with another configuration
    (read-only, say) is refused. Closing it lets the working copy be read, replaced or deleted.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - dbt-duckdb is a dependency
        return
    lock = getattr(DuckDBConnectionManager, "_LOCK", None)
    if lock is None:  # pragma: no cover - a future dbt-duckdb may manage this itself
        return
    with lock:
        environment = getattr(DuckDBConnectionManager, "_ENV", None)
        if environment is not None:
            environment.close()
        DuckDBConnectionManager.close_all_connections()  # type: ignore[no-untyped-call]


def run_build(
    project: Path,
    target: DbtTarget,
    *,
    select: Sequence[str] | None = None,
    full_refresh: bool = False,
    unit_tests: bool = False,
) -> list[NodeResult]:
    """`dbt build`; the per-node results, or TransformError naming what failed and why."""
    from dbt.cli.main import dbtRunner  # imported lazily: dbt is heavy to import

    args = build_args(
        project, target, select=select, full_refresh=full_refresh, unit_tests=unit_tests
    )
    with dbt_environment(target):
        try:
            outcome = dbtRunner().invoke(args)
        finally:
            release_duckdb()
    results = getattr(outcome.result, "results", None) or []
    nodes = [_node_result(r) for r in results]
    failed = [n for n in nodes if n.failed]
    if failed:
        skipped = sum(1 for n in nodes if n.status == "skipped")
        details = "; ".join(_describe(n) for n in failed)
        suffix = f" ({skipped} downstream nodes skipped)" if skipped else ""
        raise TransformError(f"dbt build failed: {details}{suffix}")
    if outcome.exception is not None:
        raise TransformError(f"dbt build failed: {outcome.exception}")
    if not outcome.success:
        raise TransformError(
            f"dbt build failed without a node error; see the dbt log in {target.log_dir}"
        )
    return nodes
