"""Who may read what: lib/api3/security.js (v3 wants a Bearer JWT, always) and
lib/authorization/index.js (v1: default roles, api-secret, Bearer JWT, `?token=`).

No test here sends wrong credentials: a real server delays every request from an address
for 5 s after each failed authentication (lib/authorization/delaylist.js). Missing
credentials are not a failure there.
"""

from __future__ import annotations

import pytest
from nightscout_api import NightscoutApi, Target

pytestmark = pytest.mark.integration

ENTRIES_V3 = "/api/v3/entries"


def test_v3_needs_a_jwt_even_where_v1_reads_anonymously(ns: NightscoutApi) -> None:
    anonymous = ns.get(ENTRIES_V3, {"limit": 1})
    assert anonymous.status_code == 401
    assert anonymous.json() == {"status": 401, "message": "Missing or bad access token or JWT"}
    # neither the API secret nor an access token in the query opens v3
    assert ns.get(ENTRIES_V3, {"limit": 1}, headers=ns.secret_header).status_code == 401
    assert ns.get(ENTRIES_V3, {"limit": 1, "token": ns.access_token()}).status_code == 401
    # /version is public; a JWT opens the rest
    version = ns.get("/api/v3/version")
    assert version.status_code == 200 and version.json()["result"]["version"].startswith("15.")
    assert ns.v3(ENTRIES_V3, {"limit": 1}).status_code == 200
    status = ns.v3_result("/api/v3/status")
    assert status["apiPermissions"]["treatments"] == "crud"  # the admin role


def test_v1_reads_anonymously_only_on_an_open_site(ns: NightscoutApi, target: Target) -> None:
    anonymous = ns.get("/api/v1/entries.json", {"count": 1, "find[date][$gte]": 0})
    if target.open:
        assert anonymous.status_code == 200 and isinstance(anonymous.json(), list)
    else:
        assert anonymous.status_code == 401
        assert anonymous.json()["message"] == "Unauthorized"
    verify = ns.get("/api/v1/verifyauth").json()["message"]
    assert verify["permissions"] == "DEFAULT" and verify["message"] == "UNAUTHORIZED"
    assert verify["canRead"] is target.open


def test_v1_accepts_the_api_secret_a_bearer_jwt_and_a_token_in_the_query(
    ns: NightscoutApi,
) -> None:
    by_secret = ns.get("/api/v1/verifyauth", headers=ns.secret_header).json()["message"]
    assert by_secret["isAdmin"] is True and by_secret["message"] == "OK"
    assert by_secret["rolefound"] == "NOTFOUND"  # the secret is no subject
    by_jwt = ns.get("/api/v1/verifyauth", headers=ns.bearer).json()["message"]
    assert by_jwt["rolefound"] == "FOUND" and by_jwt["isAdmin"] is True
    by_token = ns.get("/api/v1/verifyauth", {"token": ns.access_token()}).json()["message"]
    assert by_token["rolefound"] == "FOUND" and by_token["message"] == "OK"
    # a write needs more than the default roles: the JWT is what makes this one pass
    anonymous = ns.http.post("/api/v1/treatments", json=[])
    assert anonymous.status_code == 401
    with_jwt = ns.http.post("/api/v1/treatments", json=[], headers=ns.bearer)
    assert with_jwt.status_code == 200 and with_jwt.json() == []
    with_token = ns.http.post("/api/v1/treatments", params={"token": ns.access_token()}, json=[])
    assert with_token.status_code == 200
