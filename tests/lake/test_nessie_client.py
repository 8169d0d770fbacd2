"""The Nessie client's wording and its reading of Nessie's answers, on a scripted transport.

The real server is exercised by tests/stack/test_branches.py; these pin what the stack cannot
easily provoke: unreachable servers, refusals, escaping, and that no message leaks a request.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from cascade.exceptions import ConfigurationError, LakeError
from cascade.lake.branches import ensure_branches
from cascade.lake.nessie import (
    BranchMovedError,
    NessieClient,
    NoCommonAncestorError,
    NoSuchBranchError,
)

URI = "http://nessie.test:19120"
MAIN_HASH = "a" * 64
DEV_HASH = "b" * 64

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> NessieClient:
    return NessieClient(URI + "/", transport=httpx.MockTransport(handler))


def reference(name: str, hash_: str) -> dict[str, object]:
    return {"reference": {"type": "BRANCH", "name": name, "hash": hash_}}


def test_reads_a_branch_head_and_finds_none_for_a_missing_branch() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        if request.url.path.endswith("/trees/main"):
            return httpx.Response(200, json=reference("main", MAIN_HASH))
        return httpx.Response(404, json={"message": "Named reference 'x' not found"})

    with client(handler) as nessie:
        assert nessie.uri == URI
        assert nessie.branch_hash("main") == MAIN_HASH
        assert nessie.find_branch("feature/x") is None
        with pytest.raises(NoSuchBranchError, match=rf"Nessie at {URI} has no branch 'gone'"):
            nessie.branch_hash("gone")
    # A `/` in a branch name stays inside one path segment.
    assert seen[1] == "/api/v2/trees/feature%2Fx"


def test_an_invalid_branch_name_never_reaches_a_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected, got {request.url}")

    with client(handler) as nessie, pytest.raises(ConfigurationError, match="branch="):
        nessie.find_branch("../main?x=1")


def test_an_unreachable_nessie_is_a_lake_error_naming_the_setting() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with client(handler) as nessie, pytest.raises(LakeError) as caught:
        nessie.branches()
    message = str(caught.value)
    assert f"cannot reach Nessie at {URI} to list its branches: ConnectError" in message
    assert "NESSIE_URI" in message


def test_lists_only_branches() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "references": [
                    {"type": "BRANCH", "name": "main", "hash": MAIN_HASH},
                    {"type": "TAG", "name": "v1", "hash": MAIN_HASH},
                    {"type": "BRANCH", "name": "dev", "hash": DEV_HASH},
                ]
            },
        )

    with client(handler) as nessie:
        assert nessie.branches() == {"main": MAIN_HASH, "dev": DEV_HASH}


def test_a_merge_is_conditional_on_the_target_head_and_reports_the_keys() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(
            200,
            json={
                "wasSuccessful": True,
                "resultantTargetHash": "c" * 64,
                "details": [{"key": {"elements": ["gold", "daily"]}}],
            },
        )

    with client(handler) as nessie:
        merge = nessie.merge(
            source="dev", source_hash=DEV_HASH, target="main", target_hash=MAIN_HASH, message="m"
        )
    assert merge.target_hash == "c" * 64
    assert merge.keys == ("gold.daily",)
    (request,) = requests
    assert request.method == "POST"
    assert request.url.path == f"/api/v2/trees/main@{MAIN_HASH}/history/merge"
    assert json.loads(request.content) == {
        "fromRefName": "dev",
        "fromHash": DEV_HASH,
        "message": "m",
    }


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (409, {"message": "Expected hash mismatch"}, BranchMovedError),
        (404, {"message": "No common ancestor found"}, NoCommonAncestorError),
        (500, None, LakeError),
    ],
)
def test_a_refused_merge_says_what_nessie_said_and_not_the_request(
    status: int, body: dict[str, str] | None, error: type[LakeError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body else httpx.Response(status, text="oops")

    with client(handler) as nessie, pytest.raises(error) as caught:
        nessie.merge(
            source="dev",
            source_hash=DEV_HASH,
            target="main",
            target_hash=MAIN_HASH,
            message="secret-commit-message",
        )
    message = str(caught.value)
    assert f"Nessie at {URI} refused to merge 'dev' into 'main' ({status})" in message
    assert (body or {}).get("message", "no reason given") in message
    assert "secret-commit-message" not in message


def test_ensure_branches_creates_only_the_missing_ones_from_main() -> None:
    heads = {"main": MAIN_HASH}
    created: list[tuple[dict[str, str], object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            name = request.url.path.rsplit("/", 1)[1]
            if name in heads:
                return httpx.Response(200, json=reference(name, heads[name]))
            return httpx.Response(404, json={"message": "not found"})
        assert request.method == "POST"
        assert request.url.path == "/api/v2/trees"
        created.append((dict(request.url.params), json.loads(request.content)))
        heads[request.url.params["name"]] = MAIN_HASH
        return httpx.Response(200, json=reference(request.url.params["name"], MAIN_HASH))

    with client(handler) as nessie:
        assert ensure_branches(nessie) == ["dev"]
        assert ensure_branches(nessie) == []  # idempotent
    assert created == [
        ({"name": "dev", "type": "BRANCH"}, {"type": "BRANCH", "name": "main", "hash": MAIN_HASH})
    ]


def test_ensure_branches_needs_main() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "not found"})

    with client(handler) as nessie, pytest.raises(LakeError, match="has no branch 'main'"):
        ensure_branches(nessie)


def test_the_client_takes_its_url_and_timeout_from_the_settings() -> None:
    from cascade.config import load_settings

    timeouts: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, json={"defaultBranch": "main"})

    settings = load_settings(NESSIE_URI=URI, NESSIE_TIMEOUT_SECONDS=7.5).nessie
    with NessieClient.from_settings(settings, transport=httpx.MockTransport(handler)) as nessie:
        assert nessie.uri == URI
        assert nessie.config() == {"defaultBranch": "main"}
    assert timeouts == [{"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}]
