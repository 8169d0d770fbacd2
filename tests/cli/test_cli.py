"""The `cascade` command as a person runs it: a real fake-Nightscout process, real subprocesses."""

from __future__ import annotations

import json

import pytest
from cli_support import cascade as _cascade

pytestmark = pytest.mark.integration


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
