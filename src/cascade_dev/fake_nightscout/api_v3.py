"""API v3 as Nightscout 15 serves it (`lib/api3`): search, read, history and writes.

Answers are wrapped `{"status", "result"}`; every route but `/version` needs a JWT.
Search and read show only valid documents, a v1 upload with v3's stand-in `identifier`
and `srvModified`; history pages strictly after its cursor by the *stored* `srvModified`,
deletions included; create deduplicates, update/patch check `If-Unmodified-Since` and
immutable fields, delete is soft unless `?permanent=true`. The document rules these
routes share (routing table, filters, validation) are in `documents`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cascade_dev.fake_nightscout.auth import _Auth, _Grant
from cascade_dev.fake_nightscout.documents import (
    _normalized,
    _read_only,
    _resolved,
    _unmodified_since_failed,
    _v3_bodies,
    _v3_predicate,
    _v3_route,
    _validate_common,
    _validate_update,
    normalize_treatment_duration,
)
from cascade_dev.fake_nightscout.matching import Predicate, Query
from cascade_dev.fake_nightscout.protocol import (
    _V3_FILTER_KEY,
    API3_VERSION,
    NIGHTSCOUT_VERSION,
    V3_COLLECTIONS,
    V3_OPERATORS,
    V3_RESERVED,
    _error,
    _Response,
    _v3_status,
    _wrap,
    _wrap_list,
)
from cascade_dev.fake_nightscout.records import StoredDoc
from cascade_dev.fake_nightscout.store import SiteStore
from cascade_dev.fake_nightscout.values import (
    http_date,
    is_object_id,
    iso_ms,
    number_in_string,
    parse_iso_ms,
    parse_to_moment,
    parse_to_moment_ms,
    v3_identifier,
)


class V3Api:
    """The API v3 routes of every site; `max_limit` is API3_MAX_LIMIT (the largest page)."""

    def __init__(self, auth: _Auth, max_limit: int) -> None:
        self._auth = auth
        self.max_limit = max_limit

    # ---------------------------------------------------------------- API v3

    def handle(
        self,
        store: SiteStore,
        method: str,
        parts: list[str],
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
    ) -> _Response:
        flat = dict(params)
        if parts and parts[-1].endswith(".json"):  # renderer.extension2accept
            parts = [*parts[:-1], parts[-1].removesuffix(".json")]
        if method == "GET" and parts == ["version"]:  # lib/api3/specific/version.js: public
            return _Response(200, _wrap(self._version_info(store)))
        route = _v3_route(method, parts)
        if route is None:  # lib/api3/index.js: the final 404, before any auth
            return _error(404, "Bad operation or collection")
        grant = self._auth.v3(headers)
        if isinstance(grant, _Response):
            return grant
        operation, collection, argument = route
        if operation == "status":
            return self._v3_status_info(store, grant)
        if operation == "lastModified":
            return self._v3_last_modified(store, grant)
        if operation == "search":
            return self._v3_search(store, collection, flat, grant)
        if operation == "history":
            return self._v3_history(store, collection, argument, flat, headers, grant)
        if operation == "read":
            return self._v3_read(store, collection, argument or "", flat, headers, grant)
        with store.lock:  # writes: look up and change atomically
            if operation == "create":
                return self._v3_create(store, collection, body, grant)
            if operation == "update":
                return self._v3_update(store, collection, argument or "", body, headers, grant)
            if operation == "patch":
                return self._v3_patch(store, collection, argument or "", body, headers, grant)
            return self._v3_delete(store, collection, argument or "", flat, grant)

    def _version_info(self, store: SiteStore) -> dict[str, Any]:
        return {
            "version": NIGHTSCOUT_VERSION,
            "apiVersion": API3_VERSION,
            "srvDate": store.now_ms(),
            "storage": {"storage": "mongodb", "version": "4.4.29"},
        }

    def _v3_status_info(self, store: SiteStore, grant: _Grant | None) -> _Response:
        """`lib/api3/specific/status.js`: version info and c/r/u/d per collection."""
        info = self._version_info(store)
        permissions: dict[str, str] = {}
        for collection in V3_COLLECTIONS:
            letters = "".join(
                letter
                for letter, action in (
                    ("c", "create"),
                    ("r", "read"),
                    ("u", "update"),
                    ("d", "delete"),
                )
                if grant is not None and grant.can(f"api:{collection}:{action}")
            )
            if letters:
                permissions[collection] = letters
        info["apiPermissions"] = permissions
        return _Response(200, _wrap(info))

    def _v3_last_modified(self, store: SiteStore, grant: _Grant | None) -> _Response:
        """`lib/api3/specific/lastModified.js`."""
        now = store.now_ms()
        collections = {
            name: value
            for name, value in store.last_modified().items()
            if grant is not None and grant.can(f"api:{name}:read")
        }
        return _Response(200, _wrap({"srvDate": now, "collections": collections}))

    def _parse_limit(self, flat: Mapping[str, str]) -> int | _Response:
        """Collection parseLimit (`lib/api3/generic/collection.js`)."""
        raw = flat.get("limit")
        if not raw:
            return self.max_limit
        number = number_in_string(raw)
        if number is None or number <= 0 or number > self.max_limit:
            return _error(400, "Parameter limit out of tolerance")
        return int(number)

    def _demand(self, grant: _Grant | None, permission: str) -> _Response | None:
        """`security.demandPermission`: the 403 to answer, or None."""
        if grant is not None and grant.can(permission):
            return None
        return _error(403, f"Missing permission {permission}")

    def _read_permission(self, collection: str) -> str:
        return f"api:{collection}:admin" if collection == "settings" else f"api:{collection}:read"

    def _v3_search(
        self, store: SiteStore, collection: str, flat: dict[str, str], grant: _Grant | None
    ) -> _Response:
        """`lib/api3/generic/search/operation.js`: valid documents only."""
        refused = self._demand(grant, self._read_permission(collection))
        if refused:
            return refused
        by_field: dict[str, Predicate] = {}
        for key, raw in flat.items():
            if key in V3_RESERVED:
                continue
            field_name, op = key, "eq"
            found = _V3_FILTER_KEY.match(key)
            if found:
                field_name, op = found.group(1), found.group(2)
                if op not in V3_OPERATORS:
                    return _error(400, f"Unsupported filter operator {op}")
            try:
                # utils.js parseFilter builds {field: condition}: a later condition on the
                # same field replaces an earlier one (date$gte=a&date$lt=b keeps only $lt),
                # and onlyValid then sets isValid itself
                by_field[field_name] = _v3_predicate(collection, field_name, op, raw)
            except re.error:
                return _error(500, "Database error")
        by_field.pop("isValid", None)
        predicates = list(by_field.values())
        if flat.get("sort") and flat.get("sort$desc"):
            return _error(400, "Parameters sort and sort_desc cannot be combined")
        limit = self._parse_limit(flat)
        if isinstance(limit, _Response):
            return limit
        skip_raw = flat.get("skip")
        skip = 0
        if skip_raw:
            number = number_in_string(skip_raw)
            if number is None or number < 0:
                return _error(400, "Parameter skip out of tolerance")
            skip = int(number)
        sort_field = flat.get("sort$desc") or flat.get("sort") or None
        query = Query(
            predicates=tuple(predicates),
            sort_field=sort_field,
            descending=bool(flat.get("sort$desc")),
            skip=skip,
            limit=limit,
        )
        docs = store.select(collection, query)
        return _Response(200, _wrap_list(_v3_bodies(docs, flat.get("fields"))))

    def _v3_history(
        self,
        store: SiteStore,
        collection: str,
        param: str | None,
        flat: dict[str, str],
        headers: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/history/operation.js`: stored `srvModified` after the cursor."""
        refused = self._demand(grant, self._read_permission(collection))
        if refused:
            return refused
        bad = _error(400, "Bad or missing Last-Modified header/parameter")
        if param is not None:
            since = parse_to_moment_ms(param)
            if since is None:
                return bad
            op = "gt"
        else:
            header = headers.get("last-modified")
            parsed = parse_iso_ms(header) if header else None
            if parsed is None:
                return bad
            since = parsed - parsed % 1000  # floorSeconds
            op = "gte"
        limit = self._parse_limit(flat)
        if isinstance(limit, _Response):
            return limit
        query = Query(
            predicates=(Predicate("srvModified", op, since),),
            sort_field="srvModified",
            limit=limit,
            only_valid=False,
        )
        docs = store.select(collection, query)
        if not docs:
            return _Response(200, _wrap_list([]))
        newest = max(doc.srv_modified or 0 for doc in docs)
        headers_out = {"Last-Modified": http_date(newest), "ETag": f'W/"{newest}"'}
        return _Response(200, _wrap_list(_v3_bodies(docs, flat.get("fields"))), headers_out)

    def _v3_read(
        self,
        store: SiteStore,
        collection: str,
        identifier: str,
        flat: dict[str, str],
        headers: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/read/operation.js`."""
        refused = self._demand(grant, f"api:{collection}:read")
        if refused:
            return refused
        with store.lock:
            stored = store.find_one(collection, identifier)
            if stored is None:
                return _v3_status(404)
            if not stored.is_valid:
                return _v3_status(410)
            body = _v3_bodies([stored], flat.get("fields"))[0]
            modified = stored.v3_modified
        out_headers: dict[str, str] = {}
        if modified is not None:
            out_headers["Last-Modified"] = http_date(modified)
            since = headers.get("if-modified-since")
            since_ms = parse_iso_ms(since) if since else None
            if since_ms is not None and modified - modified % 1000 <= since_ms - since_ms % 1000:
                return _Response(304, b"", out_headers)
        return _Response(200, b'{"status":200,"result":' + body + b"}", out_headers)

    # ---------------------------------------------------------------- API v3 writes

    def _parse_date(self, doc: dict[str, Any]) -> None:
        """Collection parseDate (`lib/api3/generic/collection.js`, created_at fallback on)."""
        if not doc:
            return
        moment = parse_to_moment([doc.get("date"), doc.get("created_at")])
        if moment is None:
            return
        doc["date"] = moment[0]
        if "utcOffset" not in doc:
            doc["utcOffset"] = moment[1]
        doc["created_at"] = iso_ms(moment[0])

    def _v3_create(
        self, store: SiteStore, collection: str, body: Any, grant: _Grant | None
    ) -> _Response:
        """`lib/api3/generic/create/operation.js`: insert, or replace a duplicate."""
        if not body:
            return _error(400, "Bad or missing request body")
        if not isinstance(body, dict):
            return _error(400, "Bad or missing date field")
        doc = dict(body)
        self._parse_date(doc)
        if not doc.get("identifier"):  # resolveIdentifier
            doc["identifier"] = v3_identifier(doc)
        existing = store.v3_identify(collection, doc["identifier"], doc)
        if existing is not None:
            return self._v3_replace(store, collection, doc, existing, grant, deduplication=True)
        return self._v3_insert(store, collection, doc, grant)

    def _v3_insert(
        self, store: SiteStore, collection: str, doc: dict[str, Any], grant: _Grant | None
    ) -> _Response:
        """`lib/api3/generic/create/insert.js`: `srvModified` = `srvCreated` = now."""
        refused = self._demand(grant, f"api:{collection}:create")
        if refused:
            return refused
        identifier = doc.get("identifier")
        if not isinstance(identifier, str) or not identifier.strip():
            return _error(400, "Bad or missing identifier field")
        invalid = _validate_common(doc, patching=False)
        if invalid:
            return invalid
        now = store.next_srv_modified(collection)
        doc["srvModified"] = now
        doc["srvCreated"] = now
        if grant is not None and grant.subject is not None:
            doc["subject"] = grant.subject.name
        raw_id = doc.pop("_id", None)
        store.add(collection, doc, created_by="v3", oid=raw_id if is_object_id(raw_id) else None)
        return _v3_status(
            201,
            identifier=identifier,
            lastModified=now,
        ).with_headers(
            {"Last-Modified": http_date(now), "Location": f"/api/v3/{collection}/{identifier}"}
        )

    def _v3_replace(
        self,
        store: SiteStore,
        collection: str,
        doc: dict[str, Any],
        stored: StoredDoc,
        grant: _Grant | None,
        *,
        deduplication: bool = False,
        storage_doc: dict[str, Any] | None = None,
    ) -> _Response:
        """`lib/api3/generic/update/replace.js`."""
        refused = self._demand(grant, f"api:{collection}:update")
        if refused:
            return refused
        old = storage_doc if storage_doc is not None else _normalized(stored)
        invalid = _validate_update(doc, old, patching=False, deduplication=deduplication)
        if invalid:
            return invalid
        now = store.next_srv_modified(collection)
        doc["srvModified"] = now
        doc["srvCreated"] = old.get("srvCreated") or now
        if grant is not None and grant.subject is not None:
            doc["subject"] = grant.subject.name
        normalize_treatment_duration(doc)
        doc.pop("_id", None)
        store.replace(collection, stored, doc)
        fields: dict[str, Any] = {"lastModified": now}
        if old.get("identifier") != doc.get("identifier") or deduplication:
            fields["identifier"] = doc.get("identifier")
            fields["isDeduplication"] = True
            if old.get("identifier") != doc.get("identifier"):
                fields["deduplicatedIdentifier"] = old.get("identifier")
        return _v3_status(200, **fields).with_headers({"Last-Modified": http_date(now)})

    def _v3_update(
        self,
        store: SiteStore,
        collection: str,
        identifier: str,
        body: Any,
        headers: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/update/operation.js` (PUT): replace, or insert when absent."""
        if not body or not isinstance(body, dict):
            return _error(400, "Bad or missing request body")
        doc = dict(body)
        self._parse_date(doc)
        if not doc.get("identifier"):
            doc["identifier"] = v3_identifier(doc)
        stored = store.v3_identify(collection, identifier)
        doc["identifier"] = identifier
        if stored is None:
            return self._v3_insert(store, collection, doc, grant)
        if not stored.is_valid:
            return _v3_status(410)
        old = _resolved(stored)
        if _unmodified_since_failed(old, headers):
            return _v3_status(412)
        return self._v3_replace(store, collection, doc, stored, grant, storage_doc=old)

    def _v3_patch(
        self,
        store: SiteStore,
        collection: str,
        identifier: str,
        body: Any,
        headers: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/patch/operation.js`: $set the fields and a new `srvModified`
        (also on a v1 upload, which then shows in history); `identifier`, `srvCreated`
        and `isValid` are not added."""
        if not body or not isinstance(body, dict):
            return _error(400, "Bad or missing request body")
        refused = self._demand(grant, f"api:{collection}:update")
        if refused:
            return refused
        stored = store.v3_identify(collection, identifier)
        if stored is None:
            return _v3_status(404)
        if not stored.is_valid:
            return _v3_status(410)
        old = _resolved(stored)
        if _unmodified_since_failed(old, headers):
            return _v3_status(412)
        doc = dict(body)
        invalid = _validate_update(doc, old, patching=True, deduplication=False)
        if invalid:
            return invalid
        now = store.next_srv_modified(collection)
        doc["srvModified"] = now
        if grant is not None and grant.subject is not None:
            doc["modifiedBy"] = grant.subject.name
        normalize_treatment_duration(doc, old)
        store.update_fields(collection, stored, doc)
        return _v3_status(200).with_headers({"Last-Modified": http_date(now)})

    def _v3_delete(
        self,
        store: SiteStore,
        collection: str,
        identifier: str,
        flat: dict[str, str],
        grant: _Grant | None,
    ) -> _Response:
        """`lib/api3/generic/delete/operation.js`: soft unless `?permanent=true`."""
        refused = self._demand(grant, f"api:{collection}:delete")
        if refused:
            return refused
        stored = store.find_one(collection, identifier)
        if stored is None:
            return _v3_status(404)
        if _read_only(stored.doc):
            return _error(422, "Trying to modify read-only document")
        if flat.get("permanent") == "true":
            store.remove(collection, stored)
            return _v3_status(200)
        subject = grant.subject.name if grant is not None and grant.subject is not None else None
        store.delete(collection, identifier, subject=subject)
        return _v3_status(200)
