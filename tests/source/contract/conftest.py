"""The Nightscout contract suite: the same tests against the fake or a real Nightscout 15.

By default a fake Nightscout (cascade_dev.fake_nightscout) is started for the session. Set
`NIGHTSCOUT_CONTRACT_URL` to run against a real server instead, with
`NIGHTSCOUT_CONTRACT_API_SECRET` (its API_SECRET: admin, used to write through v1 and to
create the token the v3 calls use) and `NIGHTSCOUT_CONTRACT_OPEN=1|0` (whether the site
reads anonymously, AUTH_DEFAULT_ROLES=readable). `NIGHTSCOUT_CONTRACT_OPEN` also chooses
how the fake is configured (default 1).

Isolation: every test writes into its own day, picked at random one to ten years back
(`day`), and tags its documents with a unique marker; documents written close to now (the
4-day window tests) are tagged the same way. Everything written is removed afterwards.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from nightscout_api import Day, NightscoutApi, Target

from cascade_dev.fake_nightscout.server import FakeNightscout
from cascade_dev.fake_nightscout.store import SiteStore

FAKE_SECRET = "contract fake secret"


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    is_open = _flag("NIGHTSCOUT_CONTRACT_OPEN", "1")
    url = os.environ.get("NIGHTSCOUT_CONTRACT_URL", "").strip()
    if url:
        secret = os.environ.get("NIGHTSCOUT_CONTRACT_API_SECRET", "")
        if not secret:
            pytest.fail("NIGHTSCOUT_CONTRACT_URL needs NIGHTSCOUT_CONTRACT_API_SECRET")
        yield Target(url=url, api_secret=secret, open=is_open, fake=None)
        return
    store = SiteStore("contract", uploaded_through="v1")
    with FakeNightscout(
        {"contract": store},
        api_secret=FAKE_SECRET,
        auth_default_roles="readable" if is_open else "denied",
    ) as fake:
        yield Target(url=fake.site_url("contract"), api_secret=FAKE_SECRET, open=is_open, fake=fake)


@pytest.fixture(scope="session")
def session_api(target: Target) -> Iterator[NightscoutApi]:
    api = NightscoutApi(target.url, target.api_secret)
    yield api
    api.cleanup()
    api.close()


@pytest.fixture
def ns(session_api: NightscoutApi) -> Iterator[NightscoutApi]:
    """The API client; whatever a test writes is removed after it."""
    yield session_api
    session_api.cleanup()


@pytest.fixture
def day() -> Day:
    """A random UTC day one to ten years ago, and a marker for this test's documents."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=random.SystemRandom().randrange(366, 3650))
    return Day(start=start, marker=f"contract-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def server_now(ns: NightscoutApi) -> int:
    """The server's time before the test writes anything (a history cursor)."""
    return ns.server_time_ms() - 1
