"""API v1 as Nightscout 15 serves it, and API v2 (v1 mounted again, plus authorization).

Reads (`lib/api/*/index.js`, `lib/server/query.js`): newest first, per-route default
counts, `find[...]` conditions (see `v1_query`), the 4-day window without a time
condition; `/count/<storage>/where` (`lib/server/aggregate.js`); `status`, `verifyauth`;
writes (`POST`, `DELETE` by `_id`) through the store's v1 upload pipeline; and v2's
`/api/v2/authorization` (JWTs from access tokens, subjects). Every route checks its
permission first, through `auth`.
"""

from __future__ import annotations

from typing import Any, Final

from cascade_dev.fake_nightscout.auth import _Auth, _Grant
from cascade_dev.fake_nightscout.matching import Predicate, Query
from cascade_dev.fake_nightscout.protocol import (
    _ENTRY_ID,
    DEVICESTATUS_DEFAULT_COUNT,
    ENTRIES_DEFAULT_COUNT,
    NIGHTSCOUT_VERSION,
    PROFILES_DEFAULT_COUNT,
    QueryError,
    _express_404,
    _json_response,
    _Response,
    _unauthorized,
    _v1_error,
)
from cascade_dev.fake_nightscout.records import v1_array
from cascade_dev.fake_nightscout.schema import INDEX_FIELDS
from cascade_dev.fake_nightscout.store import DuplicateKeyError, SiteStore
from cascade_dev.fake_nightscout.v1_query import (
    COUNT_QUERY_OPTIONS,
    V1_QUERY_OPTIONS,
    QueryOptions,
    _limit,
    build_v1_query,
    qs_tree,
)
from cascade_dev.fake_nightscout.v1_uploads import InvalidIdError
from cascade_dev.fake_nightscout.values import (
    is_object_id,
    iso_ms,
    js_number,
)


class V1Api:
    """The API v1 and v2 routes of every site, answering for one `SiteStore` per request."""

    def __init__(self, auth: _Auth) -> None:
        self._auth = auth

    def authorization(
        self,
        store: SiteStore,
        method: str,
        parts: list[str],
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
        path: str,
    ) -> _Response:
        """`lib/authorization/endpoints.js`."""
        if method == "GET" and len(parts) == 2 and parts[0] == "request":
            authorized = self._auth.authorize(parts[1])
            if authorized is None:
                return _unauthorized()
            return _json_response(200, authorized)
        if parts == ["subjects"] and method in ("GET", "POST"):
            permission = "admin:api:subjects:" + ("read" if method == "GET" else "create")
            grant = self._auth.v1(headers, dict(params), body)
            if grant is None or not grant.can(permission):
                return _unauthorized()
            if method == "GET":
                return _json_response(200, self._auth.list_subjects())
            if not isinstance(body, dict):
                return _v1_error(500, "Mongo Error", "subject must be an object")
            try:
                return _json_response(200, self._auth.create_subject(body, store.now_ms()))
            except ValueError as exc:
                return _v1_error(500, "Mongo Error", str(exc))
        return _express_404(method, path)

    # ---------------------------------------------------------------- API v1

    def handle(
        self,
        store: SiteStore,
        method: str,
        parts: list[str],
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
        path: str,
    ) -> _Response:
        if not parts:
            return _express_404(method, path)
        name = parts[0].removesuffix(".json")
        extra = [part.removesuffix(".json") for part in parts[1:]]
        flat = dict(params)
        if name == "verifyauth" and method == "GET" and not extra:
            return self._verifyauth(headers, flat)
        permission = _V1_READ_PERMISSION.get(name)
        if permission is None:
            return _express_404(method, path)
        # every router checks its read permission first (api.use(isPermitted(...)))
        grant = self._auth.v1(headers, flat, body)
        if grant is None or not grant.can(permission):
            return _unauthorized()
        if method == "GET":
            return self._v1_get(store, name, extra, params, flat, grant, path)
        if method == "POST" and not extra and name in _V1_WRITABLE:
            if not grant.can(f"api:{name}:create"):
                return _unauthorized()
            return self._v1_post(store, name, body)
        if method == "DELETE" and len(extra) == 1 and name in _V1_WRITABLE:
            if not grant.can(f"api:{name}:delete"):
                return _unauthorized()
            return self._v1_delete(store, name, extra[0])
        return _express_404(method, path)

    def _v1_get(
        self,
        store: SiteStore,
        name: str,
        extra: list[str],
        params: list[tuple[str, str]],
        flat: dict[str, str],
        grant: _Grant,
        path: str,
    ) -> _Response:
        if name == "status" and not extra:
            return _json_response(200, self._status_v1(store, flat))
        if name == "count":  # lib/api/entries/index.js: /count/:storage/where
            if len(extra) != 2 or extra[1] != "where":
                return _express_404("GET", path)
            return self._v1_count(store, extra[0], params)
        if name == "entries":
            return self._v1_entries(store, extra, params, flat, path)
        if name == "treatments" and not extra:
            return self._v1_list(store, "treatments", params, flat)
        if name == "devicestatus" and not extra:
            return self._v1_list(store, "devicestatus", params, flat)
        if name == "profile":
            return self._v1_profile(store, extra, flat, path)
        if name == "profiles" and not extra:
            return self._v1_list(store, "profile", params, flat)
        if name == "food" and not extra:  # lib/server/food.js list: find({}), stored order
            records = sorted(store.records("food"), key=lambda stored: stored.seq)
            return _Response(200, v1_array(records))
        return _express_404("GET", path)

    def _v1_query(
        self,
        store: SiteStore,
        collection: str,
        params: list[tuple[str, str]],
        *,
        find: Any = None,
        options: QueryOptions | None = None,
    ) -> list[Predicate]:
        tree = qs_tree(params, "find") if find is None else find
        return build_v1_query(
            tree,
            options or V1_QUERY_OPTIONS[collection],
            store.now_ms(),
            INDEX_FIELDS[collection][0],
        )

    def _v1_entries(
        self,
        store: SiteStore,
        extra: list[str],
        params: list[tuple[str, str]],
        flat: dict[str, str],
        path: str,
    ) -> _Response:
        """`lib/api/entries/index.js`: /entries, /entries/current, /entries/<id or type>."""
        count: Any = flat.get("count") or ENTRIES_DEFAULT_COUNT
        find: Any = qs_tree(params, "find")
        if extra == ["current"]:
            find, count = {}, 1  # entries.list({count: 1}): no find at all
        elif len(extra) == 1 and _ENTRY_ID.match(extra[0]):
            stored = store.find_by_oid("entries", extra[0])
            if stored is None:  # getEntry answers [null] with an error: "Mongo Error"
                return _v1_error(500, "Mongo Error", f"No such id: '{extra[0]}'")
            return _Response(200, v1_array([stored]))
        elif len(extra) == 1:  # prepReqModel: find.type = the model
            find = {**(find if isinstance(find, dict) else {}), "type": extra[0]}
        elif extra:
            return _express_404("GET", path)
        try:
            predicates = self._v1_query(store, "entries", params, find=find or {})
        except QueryError as exc:  # entries answer a storage error with 500 "Mongo Error"
            return _v1_error(500, "Mongo Error", {"message": str(exc)})
        query = Query(
            tuple(predicates), "date", descending=True, limit=_limit(count), only_valid=False
        )
        return _Response(200, v1_array(store.select("entries", query)))

    def _v1_list(
        self,
        store: SiteStore,
        collection: str,
        params: list[tuple[str, str]],
        flat: dict[str, str],
    ) -> _Response:
        """treatments (`lib/api/treatments/index.js`), devicestatus, and `/profiles`
        (`lib/api/profile/index.js` query_models → `lib/server/profile.js` list_query)."""
        find = qs_tree(params, "find")
        count: Any = flat.get("count")
        if not count:
            if collection == "treatments":  # a date search wants more by default
                count = 1000 if find is not None else 100
            elif collection == "devicestatus":
                count = DEVICESTATUS_DEFAULT_COUNT
            else:
                count = PROFILES_DEFAULT_COUNT
        try:
            predicates = self._v1_query(store, collection, params, find=find or {})
        except QueryError:
            # the storage call fails; these routes send its (null) result as JSON anyway
            return _Response(200, b"null")
        descending = True
        if collection == "profile":  # list_query honours ?sort[field]=1 (query_sort)
            sort = qs_tree(params, "sort")
            if isinstance(sort, dict) and sort:
                descending = str(next(iter(sort.values()))) != "1"
        query = Query(
            tuple(predicates),
            INDEX_FIELDS[collection][0],
            descending=descending,
            limit=_limit(count),
            only_valid=False,
        )
        return _Response(200, v1_array(store.select(collection, query)))

    def _v1_profile(
        self, store: SiteStore, extra: list[str], flat: dict[str, str], path: str
    ) -> _Response:
        """`GET /api/v1/profile` (`lib/server/profile.js` list: find({}), newest startDate
        first, limit Number(count) or PROFILES_DEFAULT_COUNT) and `/profile/current`."""
        if extra == ["current"]:
            records = store.select(
                "profile", Query((), "startDate", descending=True, limit=1, only_valid=False)
            )
            return _Response(200, records[0].v1_json() if records else b"null")
        if extra:
            return _express_404("GET", path)
        raw = flat.get("count")
        limit: int | None = PROFILES_DEFAULT_COUNT
        if raw:
            number = js_number(raw)
            limit = None if number is None or number == 0 else abs(int(number))
        query = Query((), "startDate", descending=True, limit=limit, only_valid=False)
        return _Response(200, v1_array(store.select("profile", query)))

    def _v1_count(self, store: SiteStore, storage: str, params: list[tuple[str, str]]) -> _Response:
        """`lib/server/aggregate.js`: {$match: query.js(default options)} + {$group: count}."""
        collection = storage if storage in ("entries", "treatments", "devicestatus") else "entries"
        try:
            predicates = self._v1_query(store, collection, params, options=COUNT_QUERY_OPTIONS)
        except QueryError as exc:  # thrown before the aggregate runs: Express's error page
            return _v1_error(500, "Internal Server Error", str(exc))
        count = store.count_matching(collection, predicates)
        return _json_response(200, [{"_id": None, "count": count}] if count else [])

    def _v1_post(self, store: SiteStore, name: str, body: Any) -> _Response:
        """`POST /api/v1/<collection>` (`lib/api/*/index.js` → `lib/server/*.js` create)."""
        docs: list[Any]
        if name == "entries":  # insert_entries: one doc with a `date`, or a list
            if isinstance(body, dict):
                docs = [body] if "date" in body else []
            else:
                docs = list(body) if isinstance(body, list) else []
        else:
            docs = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
        docs = [doc for doc in docs if isinstance(doc, dict)]
        try:
            created = store.v1_create(name, docs)
        except InvalidIdError as exc:
            return _v1_error(400, "Invalid _id format", str(exc))
        except DuplicateKeyError as exc:
            return _v1_error(500, "Mongo Error", str(exc))
        return _json_response(200, created)

    def _v1_delete(self, store: SiteStore, name: str, spec: str) -> _Response:
        """`DELETE /api/v1/<collection>/<_id>`: a permanent delete by `_id`."""
        if name == "profile":  # lib/api/profile/index.js: {} whatever happened
            if not is_object_id(spec):
                return _v1_error(
                    400, "Invalid _id format", f"Must be 24-character hex string. Got: {spec}"
                )
            stored = store.find_by_oid(name, spec)
            if stored is not None:
                store.remove(name, stored)
            return _json_response(200, {})
        if name == "devicestatus" and not is_object_id(spec):
            return _v1_error(
                400, "Invalid _id format", f"Must be 24-character hex string. Got: {spec}"
            )
        stored = store.find_by_oid(name, spec) if is_object_id(spec) else None
        if stored is not None:
            store.remove(name, stored)
        return _json_response(200, {"acknowledged": True, "deletedCount": int(stored is not None)})

    def _verifyauth(self, headers: dict[str, str], flat: dict[str, str]) -> _Response:
        """`lib/api/verifyauth.js`."""
        grant = self._auth.v1(headers, flat)
        can_read = grant is not None and grant.can("*:*:read")
        message = {
            "canRead": can_read,
            "canWrite": grant is not None and grant.can("*:*:write"),
            "isAdmin": grant is not None and grant.can("*:*:admin"),
            "message": "OK"
            if can_read and grant is not None and not grant.defaults
            else "UNAUTHORIZED",
            "rolefound": "FOUND" if grant is not None and grant.subject else "NOTFOUND",
            "permissions": "DEFAULT" if grant is not None and grant.defaults else "ROLE",
        }
        return _json_response(200, {"status": 200, "message": message})

    def _status_v1(self, store: SiteStore, flat: dict[str, str]) -> dict[str, Any]:
        now = store.now_ms()
        auth_token = flat.get("token") or flat.get("secret") or ""
        return {
            "status": "ok",
            "name": "nightscout",
            "version": NIGHTSCOUT_VERSION,
            "serverTime": iso_ms(now),
            "serverTimeEpoch": now,
            "apiEnabled": True,
            "careportalEnabled": True,
            "boluscalcEnabled": True,
            "settings": {
                "units": store.units,
                "timeFormat": 24,
                "dayStart": 7,
                "dayEnd": 21,
                "nightMode": False,
                "customTitle": "Nightscout",
                "theme": "default",
                "language": "en",
                "authDefaultRoles": ",".join(self._auth.default_roles),
                "thresholds": {
                    "bgHigh": 260,
                    "bgTargetTop": 180,
                    "bgTargetBottom": 70,
                    "bgLow": 55,
                },
                "enable": [
                    "careportal",
                    "boluscalc",
                    "iob",
                    "cob",
                    "basal",
                    "rawbg",
                    "pump",
                    "openaps",
                    "loop",
                ],
                "DEFAULT_FEATURES": [
                    "bgnow",
                    "delta",
                    "direction",
                    "timeago",
                    "devicestatus",
                    "upbat",
                    "errorcodes",
                    "profile",
                    "bolus",
                    "dbsize",
                    "runtimestate",
                    "basal",
                    "careportal",
                ],
            },
            "extendedSettings": {"devicestatus": {"advanced": True}},
            # lib/api/status.js: authorization.authorize(token or secret)
            "authorized": self._auth.authorize(auth_token) if auth_token else None,
            "runtimeState": "loaded",
        }


_V1_READ_PERMISSION: Final = {
    # the permission each v1 router demands first (lib/api/index.js routes → routers)
    "entries": "api:entries:read",
    "count": "api:entries:read",  # /count is served by the entries router
    "treatments": "api:treatments:read",
    "devicestatus": "api:devicestatus:read",
    "profile": "api:profile:read",
    "profiles": "api:profile:read",
    "food": "api:food:read",
    "status": "api:status:read",
}
_V1_WRITABLE: Final = frozenset({"entries", "treatments", "devicestatus", "profile"})
