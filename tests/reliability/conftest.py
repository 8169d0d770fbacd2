"""Fixtures of the reliability suite: one fork server for the whole session (see forkserver.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Launcher, launcher


@pytest.fixture(scope="session")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """Starts `cascade ingest` processes; their logs go under the session's temporary directory."""
    with launcher(tmp_path_factory.mktemp("process-logs")) as started:
        yield started
