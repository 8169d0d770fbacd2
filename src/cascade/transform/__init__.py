"""Transform: dbt models over the raw lake tables, built on DuckDB and written back to Iceberg.

See docs/TRANSFORM.md for the mechanism and every metric's definition.

The names below are imported on first use, not with the package: later stages import only what
they need of it (`cascade.transform.project`, `cascade.transform.manifest`), and `cascade publish`
should not pay for the runner, the write-back and the Trino target at start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cascade.transform.build import NodeResult
    from cascade.transform.project import project_dir
    from cascade.transform.runner import TransformResult, transform
    from cascade.transform.writeback import TableWrite

__all__ = ["NodeResult", "TableWrite", "TransformResult", "project_dir", "transform"]

_HOMES = {
    "NodeResult": "cascade.transform.build",
    "TableWrite": "cascade.transform.writeback",
    "TransformResult": "cascade.transform.runner",
    "project_dir": "cascade.transform.project",
    "transform": "cascade.transform.runner",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
