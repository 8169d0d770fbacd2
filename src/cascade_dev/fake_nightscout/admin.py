"""The fake's own control endpoints under `/__admin`: faults, stats and document edits.

Unauthenticated, and no part of Nightscout: they let a test or a person steer a fake that
was started separately (`cascade nightscout serve`), as `FakeNightscout`'s methods do in
process: inject faults, read request statistics, and insert, edit or delete documents as
an uploader or a user would.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cascade_dev.fake_nightscout.protocol import (
    _error,
    _json_response,
    _Response,
)
from cascade_dev.fake_nightscout.schema import COLLECTIONS

if TYPE_CHECKING:
    from cascade_dev.fake_nightscout.server import FakeNightscout


def admin(fake: FakeNightscout, method: str, path: str, body: bytes) -> _Response:
    """Unauthenticated control endpoints, so a separately started server can be steered."""
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return _error(400, "body must be JSON")
    parts = [part for part in path.split("/") if part][1:]
    try:
        if parts == ["sites"] and method == "GET":
            return _json_response(200, {"sites": {s: fake.site_url(s) for s in fake.site_ids}})
        if parts == ["stats"] and method == "GET":
            return _json_response(200, fake.stats())
        if parts == ["faults"] and method == "POST":
            fake.inject(
                str(payload["kind"]),
                times=int(payload.get("times", 1)),
                path_contains=payload.get("path_contains"),
                delay_seconds=float(payload.get("delay_seconds", 2.0)),
            )
            return _json_response(200, {"status": "ok"})
        if parts == ["faults", "random"] and method == "POST":
            fake.set_random_faults(
                float(payload["rate"]),
                list(payload.get("kinds", [])),
                int(payload.get("seed", 0)),
                delay_seconds=float(payload.get("delay_seconds", 0.5)),
            )
            return _json_response(200, {"status": "ok"})
        if (parts == ["faults"] and method == "DELETE") or parts == ["faults", "clear"]:
            fake.clear_faults()
            return _json_response(200, {"status": "ok"})
        if len(parts) == 3 and method == "POST":
            return _admin_write(fake, parts[0], parts[1], parts[2], payload)
    except (KeyError, TypeError, ValueError) as exc:
        return _error(400, f"bad admin request: {exc}")
    return _error(404, "unknown admin endpoint")


def _admin_write(
    fake: FakeNightscout, site_id: str, collection: str, action: str, payload: Any
) -> _Response:
    store = fake.stores.get(site_id)
    if store is None:
        return _error(404, f"no such site: {site_id}")
    if collection not in COLLECTIONS:
        return _error(404, f"no such collection: {collection}")
    if action == "insert":
        api = payload.get("api") if isinstance(payload, dict) else None
        docs = payload.get("docs") if isinstance(payload, dict) else payload
        if isinstance(docs, dict):
            docs = [docs]
        if not isinstance(docs, list):
            return _error(400, 'insert wants a JSON list of documents (or {"docs": [...]})')
        if api is not None and api not in ("v1", "v3"):
            return _error(400, 'api must be "v1" or "v3"')
        result = store.insert(collection, docs, api=api)
        return _json_response(200, {"status": 200, "result": result})
    identifier = str(payload["identifier"])
    doc: dict[str, Any] | None
    try:
        if action == "edit":
            doc = store.edit(
                collection,
                identifier,
                dict(payload.get("changes", {})),
                unset=payload.get("unset", ()),
                api=payload.get("api", "v3"),
            )
            return _json_response(200, {"status": 200, "result": doc})
        if action == "delete":
            doc = store.delete(collection, identifier, permanent=bool(payload.get("permanent")))
            return _json_response(200, {"status": 200, "result": doc})
    except KeyError:
        return _error(404, f"no such document: {collection}/{identifier}")
    return _error(404, f"unknown admin action: {action}")
