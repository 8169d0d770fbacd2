"""The local lakehouse stack for the tests marked `stack`: up once per session, down at the end.

The test stack has its own state directory and free ports picked at start, so it never meets a
developer's own `cascade stack up`. Downloads and builds go to the shared download cache
(CASCADE_DOWNLOAD_CACHE), so only the first run on a machine pays for them.
Set CASCADE_TEST_STACK_KEEP=1 to leave the stack running after the session (to look around).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cascade.branching import BRANCHES
from cascade.config import Settings, SiteConfig, load_settings
from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.stack import down, trino_query, up

log = logging.getLogger("cascade_dev.stack")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    # Under /tmp (world-searchable), made searchable itself: the postgres user must reach its data.
    home = Path(tempfile.mkdtemp(prefix="cascade-test-stack-"))
    home.chmod(0o755)
    postgres, minio, console, nessie, management, trino = _free_ports(6)
    settings = load_settings(
        cascade_stack_home=home,
        postgres_port=postgres,
        minio_port=minio,
        minio_console_port=console,
        nessie_port=nessie,
        nessie_management_port=management,
        trino_port=trino,
        stack_start_timeout_seconds=300,
    )
    yield settings
    if os.environ.get("CASCADE_TEST_STACK_KEEP") != "1":
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(stack_settings: Settings) -> Iterator[Settings]:
    """The whole stack, running and healthy, for the session."""
    started = time.monotonic()
    try:
        up(stack_settings)
    except BaseException:
        down(stack_settings)
        raise
    # Shown with -rA / -s: how long this session's `up` took (cold: includes downloads and build).
    print(f"\ncascade stack up took {time.monotonic() - started:.0f}s")
    yield stack_settings
    if os.environ.get("CASCADE_TEST_STACK_KEEP") != "1":
        down(stack_settings)


@pytest.fixture(scope="session")
def lakehouse(stack: Settings) -> Callable[..., Settings]:
    """Settings of the `lakehouse` profile on the test stack, reading the given fake's sites, on `ref`."""

    def build(home: Path, ns: FakeNightscout, ref: str) -> Settings:
        return stack.on_local_stack(
            ref,
            cascade_home=home,
            nightscout_sites=[SiteConfig(id=s, url=ns.site_url(s)) for s in ns.site_ids],
        )

    return build


#: Trino catalog bound to each Nessie branch (the branch model).
TRINO_CATALOGS = {branch.ref: branch.trino_catalog for branch in BRANCHES}
# `_cascade`: the dbt project's incremental bookkeeping tables (e.g. glycemic events' day versions).
CASCADE_NAMESPACES = ("raw", "bronze", "silver", "gold", "marts", "_cascade")


@pytest.fixture(scope="session")
def empty_branch(stack: Settings) -> Callable[[str], None]:
    """Drop every table and view Cascade writes on a branch, so a test starts from nothing there."""

    def empty(ref: str) -> None:
        for namespace in CASCADE_NAMESPACES:
            trino_query(
                stack.stack_trino_uri,
                f"drop schema if exists {TRINO_CATALOGS[ref]}.{namespace} cascade",
            )

    return empty


@pytest.fixture(scope="session")
def fresh_main_and_dev(stack: Settings, empty_branch: Callable[[str], None]) -> Callable[[], None]:
    """Empty `main`, then point `dev` at main's head: both start from nothing, and dev's work
    merges into main without conflicts (write-audit-publish from a clean slate)."""

    def reset() -> None:
        empty_branch("main")
        api = f"{stack.stack.nessie_uri}/api/v2/trees"
        main = httpx.get(f"{api}/main").json()["reference"]
        dev = httpx.get(f"{api}/dev").json()["reference"]
        assigned = httpx.put(f"{api}/dev@{dev['hash']}", json=main)
        assert assigned.status_code in (200, 204), assigned.text

    return reset
