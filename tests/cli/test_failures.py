"""Failures a user can cause or meet: one line naming what to fix, no traceback unless asked.

The disk-full and read-only cases use real file systems (a small tmpfs, a read-only bind mount),
so they need root, as CI has; they fail, not skip, without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_support import cascade

pytestmark = pytest.mark.integration


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed (these tests need root): {done.stderr}")


@contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def _made_read_only(directory: Path) -> Iterator[Path]:
    """The directory itself, read-only in place (a bind mount over itself), until the end."""
    _mount("--bind", str(directory), str(directory))
    try:
        _mount("-o", "remount,bind,ro", str(directory))
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def _entries(env: dict[str, str]) -> tuple[int, int]:
    rows = json.loads(
        cascade(
            "query",
            "select count(*) as n, count(distinct site_id || source_id) as d from raw.entries",
            "--format",
            "json",
            env=env,
        ).stdout
    )
    return rows[0]["n"], rows[0]["d"]


def test_a_home_that_cannot_be_created_is_named(env: dict[str, str], tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    line = _one_line_error(
        cascade("status", env=dict(env, CASCADE_HOME=str(in_the_way)), check=False)
    )
    assert str(in_the_way) in line and "CASCADE_HOME" in line and "Nessie" not in line


def test_malformed_sites_setting_is_named_without_its_value(env: dict[str, str]) -> None:
    broken = '[{"id": "alice", "url": "https://a.example", "api_secret": "s3cr3t-value"'
    line = _one_line_error(cascade("ingest", env=dict(env, NIGHTSCOUT_SITES=broken), check=False))
    assert "NIGHTSCOUT_SITES is not valid JSON" in line
    assert "s3cr3t-value" not in line


def test_doctor_reports_a_bad_setting_as_its_first_finding(env: dict[str, str]) -> None:
    result = cascade("doctor", env=dict(env, NESSIE_REF="HEAD"), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "configuration" in result.stdout and "NESSIE_REF" in result.stdout


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(
    served: dict[str, str], tmp_path: Path
) -> None:
    with _tmpfs(tmp_path / "small", "1m") as small:
        env = dict(served, CASCADE_HOME=str(small / "home"))
        line = _one_line_error(cascade("ingest", env=env, check=False))
        assert "no space left" in line and str(small) in line

        debug = cascade("--debug", "ingest", env=env, check=False)
        assert debug.returncode == 1 and "Traceback" in debug.stderr
        assert "no space left" in debug.stderr

        _mount("-o", "remount,size=256m", str(small))  # space freed: the next run completes
        cascade("ingest", env=env)
        rows, distinct = _entries(env)
        assert rows == distinct > 500


def test_a_read_only_home_can_be_checked_but_not_written(
    served: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    cascade("ingest", "--collections", "entries", env=dict(served, CASCADE_HOME=str(home)))
    with _made_read_only(home) as view:
        env = dict(served, CASCADE_HOME=str(view))
        cascade("ingest", "--collections", "entries", env=env)  # nothing new: nothing to write
        assert _entries(env)[0] > 500
        line = _one_line_error(cascade("ingest", env=env, check=False))  # treatments are new
        assert str(view) in line and "read-only" in line and "CASCADE_HOME" in line


def test_a_copied_home_never_writes_into_the_original(
    served: dict[str, str], tmp_path: Path
) -> None:
    original = tmp_path / "original"
    cascade("ingest", "--collections", "entries", env=dict(served, CASCADE_HOME=str(original)))
    before = sorted(str(p) for p in original.rglob("*"))
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    env = dict(served, CASCADE_HOME=str(copy))

    line = _one_line_error(cascade("ingest", "--collections", "entries", env=env, check=False))
    assert str(original / "warehouse") in line and "--from-stage" in line
    assert sorted(str(p) for p in original.rglob("*")) == before

    # What the message says to do makes the copy stand alone, with every row.
    aside = tmp_path / "aside"
    aside.mkdir()
    shutil.move(copy / "catalog.db", aside)
    shutil.move(copy / "warehouse", aside)
    cascade("ingest", "--from-stage", env=env)
    assert _entries(env) == _entries(dict(served, CASCADE_HOME=str(original)))
    cascade("ingest", "--collections", "entries", env=env)
    assert sorted(str(p) for p in original.rglob("*")) == before
    assert any((copy / "warehouse").rglob("*.metadata.json"))  # its own tables now
