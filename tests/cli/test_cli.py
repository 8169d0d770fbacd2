"""The `cascade` command as a person runs it: a real fake-Nightscout process, real subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration


def _cascade(
    *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "cascade", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIGHTSCOUT_", "CASCADE_", "ICEBERG_"))
    }
    return dict(base, CASCADE_HOME=str(tmp_path / "lake"), COLUMNS="200")


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[dict[str, str]]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cascade",
            "nightscout",
            "serve",
            "--port",
            str(port),
            "--subjects",
            "2",
            "--days",
            "2",
            "--api-secret",
            "clinic-secret-123",
            "--token",
            "reader-0123456789",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/subject-01/api/v3/version", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        sites = [
            {
                "id": f"subject-0{i}",
                "url": f"http://127.0.0.1:{port}/subject-0{i}",
                "token": "reader-0123456789",
            }
            for i in (1, 2)
        ]
        yield dict(env, NIGHTSCOUT_SITES=json.dumps(sites))
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
        assert "clinic-secret-123" not in output and "reader-0123456789" not in output


def test_ingest_status_query_over_a_served_fake(served: dict[str, str]) -> None:
    ingest = _cascade("ingest", env=served)
    assert "subject-01" in ingest.stdout and "entries" in ingest.stdout
    assert "reader-0123456789" not in ingest.stdout + ingest.stderr

    status = json.loads(_cascade("status", "--json", env=served).stdout)
    tables = {s["table"]: s for s in status}
    assert set(tables) >= {
        "raw.entries",
        "raw.treatments",
        "raw.devicestatus",
        "raw.profile",
        "raw.rejects",
    }
    assert tables["raw.entries"]["rows"] > 500
    assert "loaded_until" in tables["raw.entries"]["cursors"]["subject-02"]["v1"]

    rows = json.loads(
        _cascade(
            "query",
            "select site_id, count(*) as n from raw.entries group by 1 order by 1",
            "--format",
            "json",
            env=served,
        ).stdout
    )
    assert [r["site_id"] for r in rows] == ["subject-01", "subject-02"]
    assert sum(r["n"] for r in rows) == tables["raw.entries"]["rows"]
    csv_out = _cascade(
        "query", "select count(*) as n from raw.rejects", "--format", "csv", env=served
    ).stdout
    assert csv_out.splitlines()[0] == "n" and int(csv_out.splitlines()[1]) > 0

    again = _cascade("ingest", "--site", "subject-01", "--collections", "entries", env=served)
    assert "subject-02" not in again.stdout


def test_clear_errors_and_exit_codes(env: dict[str, str]) -> None:
    missing = _cascade("ingest", env=env, check=False)
    assert (
        missing.returncode == 1
        and "NIGHTSCOUT_URL" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    bad_sql = _cascade("query", "select * from raw.nope", env=env, check=False)
    assert (
        bad_sql.returncode == 1
        and "raw.nope" in bad_sql.stderr
        and "Traceback" not in bad_sql.stderr
    )
    unknown = _cascade(
        "ingest",
        "--collections",
        "food",
        env=dict(env, NIGHTSCOUT_URL="http://127.0.0.1:9"),
        check=False,
    )
    assert (
        unknown.returncode == 2
        and "unknown collection food" in unknown.stderr
        and "Traceback" not in unknown.stderr
    )


@pytest.mark.parametrize(
    "command", [[], ["ingest"], ["status"], ["query"], ["nightscout", "serve"]]
)
def test_every_command_explains_itself(env: dict[str, str], command: list[str]) -> None:
    result = _cascade(*command, "--help", env=env)
    assert "Usage" in result.stdout and len(result.stdout) > 300
