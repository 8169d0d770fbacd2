"""The wheel is the product: built, installed into an empty virtualenv, and run outside the checkout.

`uv build` goes through the sdist, so this also proves the sdist carries the dbt project. The
installed `cascade demo` must find everything it needs (dbt project, templates, the fake
Nightscout plugged in through its entry point) inside site-packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        pytest.fail("no uv: run the tests through `make test` (uv run sets UV) or put uv on PATH")
    return uv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([_uv(), "build", "--quiet", "-o", str(dist)], cwd=REPOSITORY, check=True)
    (built,) = dist.glob("cascade-*.whl")
    return built


def test_the_wheel_carries_the_dbt_project_and_the_plugged_in_dev_commands(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
        )
    project = "cascade/transform/dbt_project/"
    shipped = {n.removeprefix(project) for n in names if n.startswith(project)}
    in_checkout = {
        p.relative_to(REPOSITORY / "transforms" / "dbt").as_posix()
        for p in (REPOSITORY / "transforms" / "dbt").rglob("*")
        if p.is_file() and not {"target", "logs", "dbt_packages"} & set(p.parts)
    }
    assert in_checkout - {".gitignore"} <= shipped
    assert "cascade/serve/templates/agp_report.html.j2" in names
    assert "cascade_dev/fake_nightscout/__init__.py" in names
    assert "cascade = cascade.cli.app:main" in entry_points
    assert "dev = cascade_dev.cli:register" in entry_points
    assert not any(n.startswith(("tests/", "transforms/")) for n in names)


def test_the_installed_wheel_runs_the_demo_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([_uv(), "venv", "--quiet", "--python", "3.11", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", str(python), str(wheel)], check=True
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CASCADE_", "NIGHTSCOUT_", "VIRTUAL_ENV", "UV_PROJECT"))
        and key != "PYTHONPATH"
    }
    located = subprocess.run(
        [str(python), "-c", "import cascade, json; print(json.dumps(cascade.__file__))"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(json.loads(located.stdout)).is_relative_to(venv)

    demo = subprocess.run(
        [str(venv / "bin" / "cascade"), "demo", "--subjects", "1", "--days", "14"],
        cwd=workdir,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "subject-01" in demo.stdout
    report = workdir / ".cascade" / "demo" / "reports" / "subject-01.html"
    assert report.is_file() and "Time in Range" in report.read_text()
