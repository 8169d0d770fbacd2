"""The clinical constants live once, in the dbt project's vars; Python reads them from there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cascade.exceptions import TransformError
from cascade.serve import report
from cascade.transform.project import BUNDLED_PROJECT_DIR, domain_constants


def test_the_report_holds_metrics_to_the_projects_targets() -> None:
    constants = domain_constants()
    variables = yaml.safe_load((BUNDLED_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    assert constants.window_days == variables["metrics_window_days"] == report.WINDOW_DAYS
    assert constants.min_cgm_active_pct == variables["min_cgm_active_pct"]
    assert variables["max_bridged_intervals"] == report.MAX_BRIDGED_INTERVALS
    assert {m: (t.op, t.threshold) for m, t in report.TARGETS.items()} == {
        m: (rule[0], float(rule[1])) for m, rule in variables["consensus_targets"].items()
    }
    assert report.TARGETS["cv_pct"].text == "≤36%" and report.TARGETS["tir_pct"].met(70.5)


def test_a_changed_var_is_what_python_sees(tmp_path: Path) -> None:
    fork = tmp_path / "fork"
    shutil.copytree(BUNDLED_PROJECT_DIR, fork)
    text = (fork / "dbt_project.yml").read_text()
    (fork / "dbt_project.yml").write_text(text.replace('tir_pct: [">", 70]', 'tir_pct: [">", 75]'))
    assert domain_constants(fork).consensus_targets["tir_pct"] == (">", 75.0)
    (fork / "dbt_project.yml").write_text(text.replace("min_cgm_active_pct:", "min_active:"))
    domain_constants.cache_clear()
    with pytest.raises(TransformError, match="min_cgm_active_pct"):
        domain_constants(fork)
