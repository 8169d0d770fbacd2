"""Run `dbt build` in-process with dbtRunner and turn its results into plain records.

dbt reads the connection from the project's profiles.yml, which takes every value through
`env_var()` so that people can run dbt by hand. Cascade does not set those variables in its own
process (that would leak into every thread and library of it): `render_profiles` answers the
`env_var()` calls from the run's `DbtTarget` and writes the result into the run's own profiles
directory, which dbt is pointed at.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml  # type: ignore[import-untyped,unused-ignore]

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
    return str(threads or default)


def profiles_dir(target: DbtTarget) -> Path:
    """The run's own profiles directory, next to its target and log directories."""
    return target.target_dir.parent / "profiles"


def render_profiles(project: Path, target: DbtTarget) -> Path:
    """The project's profiles.yml with `env_var()` answered from `target`; its directory."""
    values = {**target.environment, "CASCADE_DBT_TARGET": target.name}

    def env_var(name: str, default: str | None = None) -> str:
        if name in values:
            return values[name]
        if default is None:
            raise TransformError(f"profiles.yml needs {name}, which the {target.name} target lacks")
        return default

    renderer = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    renderer.globals["env_var"] = env_var

    def render(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: render(value) for key, value in node.items()}
        if isinstance(node, list):
            return [render(value) for value in node]
        if isinstance(node, str) and "{{" in node:
            text = renderer.from_string(node).render()
            return int(text) if text.isdigit() else text
        return node

    profiles = yaml.safe_load((project / "profiles.yml").read_text(encoding="utf-8"))
    for profile in profiles.values():  # only the run's output: the others need other variables
        if isinstance(profile, dict) and target.name in profile.get("outputs", {}):
            profile["outputs"] = {target.name: profile["outputs"][target.name]}
    directory = profiles_dir(target)
    directory.mkdir(parents=True, exist_ok=True)
    rendered = directory / "profiles.yml"
    rendered.write_text(yaml.safe_dump(render(profiles), sort_keys=False), encoding="utf-8")
    rendered.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return directory


def dbt_args(command: str, project: Path, target: DbtTarget) -> list[str]:
    """`command` with the project, the run's rendered profiles, target and artifact paths."""
    return [
        command,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(profiles_dir(target)),
        "--target",
        target.name,
        "--target-path",
        str(target.target_dir),
        "--log-path",
        str(target.log_dir),
    ]


def build_args(
    project: Path,
    target: DbtTarget,
    *,
    select: Sequence[str] | None,
    full_refresh: bool,
    unit_tests: bool,
) -> list[str]:
    args = [
        *dbt_args("build", project, target),
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
    It uses only public class methods: `env()` (which raises when no database is open) and
    `close_all_connections()` (which forgets the database without closing it, hence the close).
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    try:
        environment = DuckDBConnectionManager.env()
    except Exception:  # dbt-duckdb's "environment requested before creation": nothing is open
        return
    environment.close()  # type: ignore[no-untyped-call]
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
    render_profiles(project, target)
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
