"""deploy/setup/*.sh: the setup that docker-compose's one-shots and the Helm chart's Jobs run.

(Nessie's branches are made by `cascade branch create` in Cascade's image, tested on the real
Nessie in tests/stack/test_branches.py.)

The PostgreSQL script runs against a real PostgreSQL (Debian's, as the local stack installs it);
the MinIO script with a stand-in `mc` that records its calls (the real `mc` ships in
the MinIO image only).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import SETUP

pytestmark = [pytest.mark.deploy, pytest.mark.integration]

POSTGRES_SCRIPT = SETUP / "postgres-databases.sh"
MINIO_SCRIPT = SETUP / "minio-bucket.sh"


@pytest.mark.parametrize("script", sorted(SETUP.glob("*.sh")), ids=lambda p: p.name)
def test_scripts_parse(script: Path) -> None:
    shell = "bash" if script.read_text().startswith("#!/usr/bin/env bash") else "sh"
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK)


# ---- PostgreSQL ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL cluster (trust on its Unix socket); yields libpq's environment."""
    if os.geteuid() != 0:
        pytest.skip(
            "the throwaway PostgreSQL runs as the 'postgres' user: needs root, like `cascade stack`"
        )
    from cascade_dev.stack.postgres import ensure_installed

    bin_dir = ensure_installed()
    # directly under /tmp: the postgres user must be able to walk down to its data
    home = Path(tempfile.mkdtemp(prefix="cascade-test-pg-"))
    home.chmod(0o755)
    shutil.chown(home, "postgres")
    data, port = home / "data", str(_free_port())

    def as_postgres(*argv: str) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            capture_output=True,
            text=True,
            cwd="/",
            check=False,
        )
        assert result.returncode == 0, f"{argv[0]} failed: {result.stderr}"

    as_postgres(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
    )
    as_postgres(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(home / "log"),
        "-w",
        "-o",
        f"-p {port} -k {home} -c listen_addresses=''",
        "start",
    )
    try:
        yield {
            "PGHOST": str(home),
            "PGPORT": port,
            "PGUSER": "postgres",
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
        }
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


PASSWORDS = {
    "NESSIE_DB_PASSWORD": "n-pass",
    "DAGSTER_DB_PASSWORD": "d-pass",
    "SUPERSET_DB_PASSWORD": "s-pass",
    "MARTS_DB_PASSWORD": "m-pass with ' quote",
    "BI_READER_PASSWORD": "b-pass",
}


def _psql(
    env: dict[str, str], sql: str, database: str = "postgres", user: str = "postgres"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-A", "-t", "-U", user, "-d", database, "-c", sql],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_postgres_databases_and_roles(postgres: dict[str, str]) -> None:
    env = {**postgres, **PASSWORDS}
    for _ in range(2):  # idempotent
        result = subprocess.run(
            ["bash", str(POSTGRES_SCRIPT)], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
    owners = _psql(
        env, "SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database"
    ).stdout.split()
    assert {"nessie:nessie", "dagster:dagster", "superset:superset", "marts:marts"} <= set(owners)
    # the marts role writes; bi_reader reads what it writes and nothing else
    assert (
        _psql(
            env, "CREATE TABLE glucose (v int); INSERT INTO glucose VALUES (5)", "marts", "marts"
        ).returncode
        == 0
    )
    assert _psql(env, "SELECT v FROM glucose", "marts", "bi_reader").stdout.strip() == "5"
    assert _psql(env, "INSERT INTO glucose VALUES (6)", "marts", "bi_reader").returncode != 0
    assert _psql(env, "SELECT 1", "nessie", "bi_reader").returncode != 0
    assert _psql(env, "SELECT 1", "nessie", "dagster").returncode != 0
    # passwords are set (and re-set on every run), quotes and all
    stored = _psql(
        env, "SELECT rolname FROM pg_authid WHERE rolpassword IS NOT NULL ORDER BY 1"
    ).stdout.split()
    assert stored == ["bi_reader", "dagster", "marts", "nessie", "superset"]


def test_postgres_script_requires_every_password(postgres: dict[str, str]) -> None:
    env = {**postgres, **{k: v for k, v in PASSWORDS.items() if k != "MARTS_DB_PASSWORD"}}
    result = subprocess.run(
        ["bash", str(POSTGRES_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "MARTS_DB_PASSWORD is not set" in result.stderr


# ---- Nessie ----------------------------------------------------------------------------------------
def _run_sh(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # POSIX sh (dash here; busybox in the curl image), not bash
    return subprocess.run(
        ["sh", str(script)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_minio_bucket_and_prefixes(tmp_path: Path) -> None:
    log = tmp_path / "mc.log"
    fake = tmp_path / "bin" / "mc"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "S3_ENDPOINT": "http://minio:9000",
        "S3_ACCESS_KEY_ID": "k",
        "S3_SECRET_ACCESS_KEY": "s",
    }
    result = subprocess.run(
        ["sh", str(MINIO_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        "alias set cascade http://minio:9000 k s",
        "mb --ignore-existing cascade/lake",
        "mb --ignore-existing cascade/lake/warehouse/",
        "mb --ignore-existing cascade/lake/stage/",
    ]
    del env["S3_SECRET_ACCESS_KEY"]
    result = subprocess.run(
        ["sh", str(MINIO_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "S3_SECRET_ACCESS_KEY is not set" in result.stderr
