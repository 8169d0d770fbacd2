"""What the dbt project says about its models, read from dbt's own manifest rather than its YAML.

Later stages ask the project, not hand-parsed files: which marts exist and each one's grain (the
columns its `unique` or `unique_combination` test makes unique). The manifest comes from
`dbt parse` (no database is opened), cached per project definition.
"""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from cascade.exceptions import TransformError
from cascade.transform.build import DbtTarget, dbt_args, render_profiles
from cascade.transform.project import project_fingerprint

MARTS_LAYER = "marts"


def manifest(project: Path, builds: Path | None = None) -> dict[str, Any]:
    """dbt's manifest of `project`: the last build's under `builds` if none of the project's
    definitions changed since it was written, else `dbt parse` (once per project definition)."""
    if builds is not None:
        built = sorted(
            (path for path in builds.glob("**/target/manifest.json") if path.is_file()),
            key=lambda path: path.stat().st_mtime,
        )
        if built and built[-1].stat().st_mtime >= _last_change(project):
            parsed: dict[str, Any] = json.loads(built[-1].read_text(encoding="utf-8"))
            return parsed
    return _parsed(project.resolve(), project_fingerprint(project))


def _last_change(project: Path) -> float:
    """When the project's definitions (models, macros, tests, dbt_project.yml) last changed."""
    files = [project / "dbt_project.yml"] + [
        path
        for folder in ("models", "macros", "tests")
        for path in (project / folder).rglob("*")
        if path.is_file()
    ]
    return max((path.stat().st_mtime for path in files if path.exists()), default=0.0)


@lru_cache(maxsize=4)
def _parsed(project: Path, definition: str) -> dict[str, Any]:
    from dbt.cli.main import dbtRunner  # imported lazily: dbt is heavy to import

    with tempfile.TemporaryDirectory(prefix="cascade-dbt-parse-") as scratch:
        work = Path(scratch)
        target = DbtTarget(
            name="local",  # parsing needs an adapter for dispatch; it opens no database
            environment={
                "CASCADE_DUCKDB_PATH": str(work / "parse.duckdb"),
                "CASCADE_DUCKDB_EXTENSION_DIR": str(work / "extensions"),
                "CASCADE_DBT_THREADS": "1",
            },
            target_dir=work / "target",
            log_dir=work / "logs",
        )
        render_profiles(project, target)
        outcome = dbtRunner().invoke(
            [
                *dbt_args("parse", project, target),
                "--quiet",
                "--no-send-anonymous-usage-stats",
                "--no-partial-parse",
            ]
        )
        written = target.target_dir / "manifest.json"
        if not outcome.success or not written.is_file():
            raise TransformError(
                f"dbt could not parse the project at {project}: {outcome.exception}"
            )
        parsed: dict[str, Any] = json.loads(written.read_text(encoding="utf-8"))
        return parsed


def layer_models(parsed: dict[str, Any], layer: str = MARTS_LAYER) -> list[str]:
    """The models of one layer (the folder under models/), by name, sorted."""
    return sorted(
        str(node["name"])
        for node in parsed.get("nodes", {}).values()
        if node.get("resource_type") == "model" and layer in node.get("fqn", [])[1:-1]
    )


def model_grains(parsed: dict[str, Any], layer: str = MARTS_LAYER) -> dict[str, tuple[str, ...]]:
    """Each model's grain: the columns of its `unique_combination` test, else its `unique` column."""
    models = {
        unique_id: str(node["name"])
        for unique_id, node in parsed.get("nodes", {}).items()
        if node.get("resource_type") == "model" and layer in node.get("fqn", [])[1:-1]
    }
    combined: dict[str, tuple[str, ...]] = {}
    single: dict[str, tuple[str, ...]] = {}
    for node in parsed.get("nodes", {}).values():
        if node.get("resource_type") != "test":
            continue
        model = models.get(str(node.get("attached_node")))
        metadata = node.get("test_metadata") or {}
        kwargs = metadata.get("kwargs") or {}
        if model is None:
            continue
        if metadata.get("name") == "unique_combination" and kwargs.get("combination_of_columns"):
            combined[model] = tuple(str(c) for c in kwargs["combination_of_columns"])
        elif metadata.get("name") == "unique" and kwargs.get("column_name"):
            single.setdefault(model, (str(kwargs["column_name"]),))
    return {
        name: combined.get(name) or single[name]
        for name in models.values()
        if name in combined or name in single
    }
