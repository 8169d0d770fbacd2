"""`cascade demo` as a newcomer runs it: fake Nightscout → HTTP ingest → dbt → metrics → reports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cascade.config import load_settings
from cascade_dev.demo import headline_metrics

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_pipeline_and_prints_headline_metrics(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIGHTSCOUT_", "CASCADE_", "ICEBERG_"))
    }
    env.update(CASCADE_HOME=str(tmp_path), COLUMNS="160")
    result = subprocess.run(
        [sys.executable, "-m", "cascade", "demo", "--subjects", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    demo_home = tmp_path / "demo"
    headline = headline_metrics(load_settings(cascade_home=demo_home))
    assert [row["site_id"] for row in headline] == ["subject-01", "subject-02"]
    for row in headline:
        line = next(
            line
            for line in result.stdout.splitlines()
            if row["site_id"] in line and "%" not in line
        )
        assert f"{row['tir_pct']:.1f}" in line and f"{row['gmi_pct']:.1f}" in line
        bands = row["tir_pct"] + row["tbr_pct"] + row["tar_pct"]
        assert bands == pytest.approx(100, abs=0.01)
        report = demo_home / "reports" / f"{row['site_id']}.html"
        assert report.exists() and row["site_id"] in report.read_text()
    assert re.search(r"CASCADE_HOME=\S+demo cascade query", result.stdout.replace("\n", ""))
