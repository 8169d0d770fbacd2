"""`explain`: the one line a failure prints, for failures that are not Cascade's own."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cascade.cli.errors import explain
from cascade.config import get_settings
from cascade.exceptions import CascadeError, LakeError


@pytest.fixture(autouse=True)
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("NIGHTSCOUT_SITES", "NIGHTSCOUT_TOKEN", "CASCADE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NIGHTSCOUT_URL", "https://ns.example.org")
    monkeypatch.setenv("NIGHTSCOUT_API_SECRET", "very-secret-api-secret")
    monkeypatch.setenv("MARTS_DATABASE_URL", "postgresql://bi:pg-password-42@db/marts")
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_cascade_errors_speak_for_themselves() -> None:
    assert explain(LakeError("raw.entries: run it again")) == "raw.entries: run it again"


def test_the_dev_stacks_errors_are_cascade_errors_too() -> None:
    """`cascade stack` failures read like the product's, and are scrubbed the same way."""
    from cascade_dev.stack import StackError

    failure = StackError("postgres: not healthy after 60s (pg-password-42 refused)")
    assert isinstance(failure, CascadeError)
    assert explain(failure) == "postgres: not healthy after 60s (*** refused)"


def test_a_full_disk_names_the_home_when_the_os_names_no_file(configured: Path) -> None:
    wrapped = RuntimeError("write failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "Error writing bytes to file")
    line = explain(wrapped)
    assert line.startswith(f"no space left on the device holding {configured}")


def test_a_read_only_path_is_named_as_pyarrow_reports_it() -> None:
    error = OSError(errno.EROFS, "Cannot create directory '/lake/stage/x'. Detail: read-only")
    assert explain(error).startswith("cannot write /lake/stage/x: the file system is read-only")


def test_a_read_only_catalog_names_the_catalog(configured: Path) -> None:
    line = explain(sqlite3.OperationalError("attempt to write a readonly database"))
    assert str(configured / "catalog.db") in line and "readonly" in line


def test_anything_else_is_one_line_that_offers_the_traceback() -> None:
    line = explain(RuntimeError("first line\nsecond line"))
    assert line.startswith("unexpected RuntimeError:") and "--debug" in line
    assert "second line" not in line


@pytest.mark.parametrize(
    "secret",
    ["very-secret-api-secret", "pg-password-42", "postgresql://bi:pg-password-42@db/marts"],
)
def test_no_configured_secret_survives(secret: str) -> None:
    line = explain(
        ValueError(f"bad reply from https://x/?s={secret} at /api/v2/authorization/request/tok-123")
    )
    assert secret not in line and "tok-123" not in line and "***" in line
