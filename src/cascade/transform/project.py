"""Where the dbt project lives, and a fingerprint of its contents.

The project is `transforms/dbt/` in the repository, shipped inside the package as
`cascade/transform/dbt_project` (a symbolic link in a checkout, a copy in the wheel);
`CASCADE_DBT_PROJECT_DIR` overrides it (a fork of the models).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml  # type: ignore[import-untyped,unused-ignore]

from cascade.exceptions import TransformError

PROJECT_DIR_ENV = "CASCADE_DBT_PROJECT_DIR"
#: The project shipped inside the package (a link to transforms/dbt in a checkout; a copy in a wheel).
BUNDLED_PROJECT_DIR = Path(__file__).resolve().parent / "dbt_project"

# What defines the models' output: a change to any of these may change every incremental model,
# so the runner rebuilds them from scratch once (see runner.transform).
_DEFINITION_DIRS = ("models", "macros", "tests")
_DEFINITION_FILES = ("dbt_project.yml",)
_DEFINITION_SUFFIXES = (".sql", ".yml", ".yaml", ".csv")


def project_dir(override: Path | None = None) -> Path:
    """The dbt project directory (it must hold dbt_project.yml): `override`
    (CASCADE_DBT_PROJECT_DIR, `settings.transform.dbt_project_dir`), else the bundled one."""
    if override is not None:
        candidate = override.expanduser().resolve()
        source = f"{PROJECT_DIR_ENV}={override}"
    else:
        candidate = BUNDLED_PROJECT_DIR
        source = "the installed package"
    if not (candidate / "dbt_project.yml").is_file():
        raise TransformError(
            f"no dbt project at {candidate} (from {source}): set {PROJECT_DIR_ENV} to the "
            "directory holding Cascade's dbt_project.yml (transforms/dbt in the repository)"
        )
    return candidate


def project_fingerprint(directory: Path) -> str:
    """SHA-256 over the model, macro and test definitions (paths and bytes), order-independent."""
    digest = hashlib.sha256()
    files = [directory / name for name in _DEFINITION_FILES]
    for sub in _DEFINITION_DIRS:
        root = directory / sub
        if root.is_dir():
            files.extend(
                p for p in root.rglob("*") if p.is_file() and p.suffix in _DEFINITION_SUFFIXES
            )
    for path in sorted(p for p in files if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class DomainConstants:
    """The clinical constants the models are built with: the dbt project's `vars`, read, not repeated."""

    window_days: int  # the rolling reporting window (consensus: 14 days)
    min_cgm_active_pct: float  # below this % time CGM active a window is not representative
    max_bridged_intervals: int  # a gap longer than this many sensor intervals ends a run
    agp_bin_minutes: int
    mg_dl_per_mmol_l: float
    consensus_targets: dict[str, tuple[str, float]]  # metric -> (">", "<" or "<=", % of readings)


@lru_cache(maxsize=4)
def domain_constants(directory: Path = BUNDLED_PROJECT_DIR) -> DomainConstants:
    """The domain constants of the dbt project at `directory` (dbt_project.yml `vars`)."""
    try:
        variables = yaml.safe_load((directory / "dbt_project.yml").read_text(encoding="utf-8"))[
            "vars"
        ]
        return DomainConstants(
            window_days=int(variables["metrics_window_days"]),
            min_cgm_active_pct=float(variables["min_cgm_active_pct"]),
            max_bridged_intervals=int(variables["max_bridged_intervals"]),
            agp_bin_minutes=int(variables["agp_bin_minutes"]),
            mg_dl_per_mmol_l=float(variables["mg_dl_per_mmol_l"]),
            consensus_targets={
                str(metric): (str(rule[0]), float(rule[1]))
                for metric, rule in variables["consensus_targets"].items()
            },
        )
    except (OSError, KeyError, TypeError, ValueError, IndexError, yaml.YAMLError) as exc:
        raise TransformError(
            f"the dbt project at {directory} lacks a domain constant in dbt_project.yml vars: "
            f"{type(exc).__name__} {exc}"
        ) from None
