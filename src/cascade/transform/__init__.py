"""Transform: dbt models over the raw lake tables, built on DuckDB and written back to Iceberg.

See docs/TRANSFORM.md for the mechanism and every metric's definition.
"""

from __future__ import annotations

from cascade.transform.build import NodeResult
from cascade.transform.project import project_dir
from cascade.transform.runner import TransformResult, transform
from cascade.transform.writeback import TableWrite

__all__ = ["NodeResult", "TableWrite", "TransformResult", "project_dir", "transform"]
