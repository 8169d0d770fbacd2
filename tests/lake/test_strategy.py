"""Choosing how to read a site's collection: v1 paging, v3 history, or both, and saying why."""

from __future__ import annotations

import pytest

from cascade.lake.ingest import Held, choose_strategy
from cascade.source.nightscout.client import V3Access
from cascade.source.nightscout.collections import ENTRIES, PROFILE

USABLE = V3Access(True, "the token is accepted by v3")
NO_TOKEN = V3Access(False, "no token configured")


def test_without_v3_every_collection_is_read_with_v1_and_the_reason_says_why() -> None:
    strategy = choose_strategy(NO_TOKEN, ENTRIES, server_count=100, held=Held(100, 0))
    assert (strategy.v1, strategy.v3, strategy.name) == (True, False, "v1")
    assert "no token configured" in strategy.reason


@pytest.mark.parametrize(
    ("server_count", "held", "name"),
    [
        (100, Held(100, 0), "v3"),  # everything v1 counts came through v3 history
        (100, Held(120, 0), "v3"),  # documents deleted through v1 stay in the lake, marked
        (100, Held(99, 0), "v1+v3"),  # one document v3 history cannot see: read v1 too
        (100, Held(100, 1), "v1+v3"),  # all held, but a v1 uploader: v1 also sees its edits
        (100, None, "v1+v3"),
        (None, Held(500, 0), "v1+v3"),  # no count from the server: never trust v3 alone
    ],
)
def test_v3_alone_only_where_history_covers_every_document_v1_counts(
    server_count: int | None, held: Held | None, name: str
) -> None:
    strategy = choose_strategy(USABLE, ENTRIES, server_count=server_count, held=held)
    assert strategy.name == name
    assert strategy.reason.startswith("v3 history")


def test_profiles_are_always_read_whole_through_v1() -> None:
    assert choose_strategy(USABLE, PROFILE, server_count=None, held=Held(10, 0)).name == "v1+v3"
    assert choose_strategy(NO_TOKEN, PROFILE, server_count=None, held=Held(10, 0)).name == "v1"
