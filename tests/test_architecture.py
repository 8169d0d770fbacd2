"""The import arrows of the code base, as declared under [tool.importlinter] in pyproject.toml.

A stage imports only earlier stages (source -> lake -> transform -> publish -> serve), the CLI and
the orchestration sit on top, and the development platform (`cascade_dev`) imports the product,
never the reverse.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the packages under `root`/src, with `root`/pyproject.toml's contracts."""
    program = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, "src")
        from importlinter.cli import lint_imports
        sys.exit(lint_imports(config_filename="pyproject.toml", no_cache=True))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", program], cwd=root, capture_output=True, text=True, check=False
    )


def test_every_import_contract_is_kept() -> None:
    result = _lint_imports(REPOSITORY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("importer", "imported", "contract"),
    [
        ("cascade/lake/probe.py", "cascade.transform", "earlier stages"),
        ("cascade/source/probe.py", "cascade.serve", "earlier stages"),
        ("cascade/publish/probe.py", "cascade_dev.stack", "development platform"),
    ],
)
def test_a_backward_import_breaks_a_contract(
    tmp_path: Path, importer: str, imported: str, contract: str
) -> None:
    """The contracts are not vacuous: a copy of the code with one backward arrow fails them."""
    copy = tmp_path / "repo"
    (copy / "src").mkdir(parents=True)
    for package in ("cascade", "cascade_dev"):
        subprocess.run(
            ["cp", "-r", str(REPOSITORY / "src" / package), str(copy / "src" / package)],
            check=True,
        )
    (copy / "pyproject.toml").write_text((REPOSITORY / "pyproject.toml").read_text())
    (copy / "src" / importer).write_text(f"import {imported}  # noqa: F401\n")
    result = _lint_imports(copy)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout
    assert importer.removesuffix(".py").replace("/", ".") in broken
