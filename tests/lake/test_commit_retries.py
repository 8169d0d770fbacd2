"""A commit another writer beat is retried on fresh tables, with growing pauses, and then gives up clearly."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pyiceberg.exceptions import CommitFailedException

from cascade.config import Settings
from cascade.exceptions import LakeError
from cascade.lake.ingest import COMMIT_ATTEMPTS, Ingestor, LoadReport, _SiteState
from cascade.lake.records import ParsedBatch


class _Table:
    def __init__(self) -> None:
        self.refreshes = 0

    def refresh(self) -> None:
        self.refreshes += 1


def _losing(times: int) -> Callable[..., Any]:
    """A `_write` that loses the commit race `times` times, then commits."""
    calls = [0]

    def write(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= times:
            raise CommitFailedException("another writer committed first")
        return SimpleNamespace(inserted=1, replaced=0, unchanged=0, stale=0, superseded=0)

    return write


def _state() -> _SiteState:
    return _SiteState(
        batch=ParsedBatch("entries", "s"), report=LoadReport("s", "entries"), cursor=None
    )


def test_a_lost_commit_race_is_retried_on_refreshed_tables(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    ingestor = Ingestor(settings, sleep=waits.append)
    monkeypatch.setattr(ingestor, "_write", _losing(2))
    table, rejects, state = _Table(), _Table(), _state()
    ingestor._commit(table, rejects, state, "load")
    assert state.report.commits == 1 and state.report.inserted == 1
    assert table.refreshes == rejects.refreshes == 2
    assert len(waits) == 2
    assert 0.05 <= waits[0] <= 0.25 and 0.1 <= waits[1] <= 0.5  # longer after each lost race


def test_a_commit_that_keeps_losing_gives_up_with_a_clear_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    ingestor = Ingestor(settings, sleep=waits.append)
    monkeypatch.setattr(ingestor, "_write", _losing(COMMIT_ATTEMPTS))
    with pytest.raises(LakeError, match=rf"kept committing first \({COMMIT_ATTEMPTS} attempts\)"):
        ingestor._commit(_Table(), _Table(), _state(), "load")
    assert len(waits) == COMMIT_ATTEMPTS - 1
