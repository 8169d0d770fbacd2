"""Nightscout's authorization: API secret, access tokens, JWTs, roles and Shiro permissions."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jwt

from cascade_dev.fake_nightscout.protocol import Headers, _error, _Response
from cascade_dev.fake_nightscout.values import iso_ms, js_string

# --------------------------------------------------------------------------- auth

ROLE_PERMISSIONS: Final[Mapping[str, tuple[str, ...]]] = {
    # lib/authorization/storage.js defaultRoles
    "admin": ("*",),
    "denied": (),
    "status-only": ("api:status:read",),
    "readable": ("*:*:read",),
    "careportal": ("api:treatments:create",),
    "devicestatus-upload": ("api:devicestatus:create",),
    "activity": ("api:activity:create",),
}
_NON_WORD = re.compile(r"[^A-Za-z0-9_]")


def shiro_implies(pattern: str, permission: str) -> bool:
    """Whether an Apache Shiro-style pattern (`*`, `*:*:read`, `api:entries`) grants a
    permission, as shiro-trie checks it: `*` matches one part, a shorter pattern the rest."""
    wanted = permission.split(":")
    parts = pattern.split(":")
    for position, part in enumerate(wanted):
        if position >= len(parts):
            return True
        choices = parts[position].split(",")
        if "*" not in choices and part not in choices:
            return False
    return all(part == "*" for part in parts[len(wanted) :])


@dataclass
class _Subject:
    """A token subject (`lib/authorization/storage.js`): roles and a derived access token."""

    oid: str
    name: str
    roles: tuple[str, ...]
    digest: str
    access_token: str
    record: dict[str, Any]


@dataclass(frozen=True)
class _Grant:
    """What a request may do: Shiro patterns, and the subject whose token it showed."""

    patterns: tuple[str, ...]
    subject: _Subject | None = None
    defaults: bool = False

    def can(self, permission: str) -> bool:
        return any(shiro_implies(pattern, permission) for pattern in self.patterns)


_ADMIN_GRANT: Final = _Grant(("*",))


class _Auth:
    """Nightscout's authorization (`lib/authorization/index.js`, `storage.js`, `enclave.js`).

    `default_roles` (AUTH_DEFAULT_ROLES) is what a request without credentials gets:
    "readable" for an open site, "denied" for a locked one. A request *with* credentials
    that fail is refused whatever the default roles (`resolve` returns no permissions).
    """

    def __init__(
        self,
        api_secret: str | None,
        tokens: Iterable[str],
        lifetime_seconds: int,
        clock: Callable[[], float],
        default_roles: Sequence[str],
        api3_security: bool,
    ) -> None:
        self._sha1 = hashlib.sha1(api_secret.encode()).hexdigest() if api_secret else None
        self._sha512 = hashlib.sha512(api_secret.encode()).hexdigest() if api_secret else None
        self.default_roles = tuple(role for role in default_roles if role)
        self.open = self.can_default("api:entries:read")
        self.api3_security = api3_security
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._subjects: list[_Subject] = []
        for token in tokens:
            # A real access token is `<name>-<16 hex>`; a shorter one given here (a test's
            # shorthand) is accepted by exact match only, which Nightscout itself never does.
            name, _, suffix = token.rpartition("-")
            name = name or token
            oid = hashlib.blake2b(token.encode(), digest_size=12).hexdigest()
            self._subjects.append(
                _Subject(
                    oid=oid,
                    name=name,
                    roles=("readable",),
                    digest=suffix,
                    access_token=token,
                    record={"_id": oid, "name": name, "roles": ["readable"]},
                )
            )

    # ---------------------------------------------------------------- building blocks

    def _patterns(self, roles: Iterable[str]) -> tuple[str, ...]:
        return tuple(pattern for role in roles for pattern in ROLE_PERMISSIONS.get(role, ()))

    def can_default(self, permission: str) -> bool:
        return _Grant(self._patterns(self.default_roles)).can(permission)

    def is_api_key(self, value: str) -> bool:
        """`enclave.isApiKey`: the SHA-1 (any case) or SHA-512 hex of API_SECRET."""
        if self._sha1 is None or self._sha512 is None:
            return False
        return hmac.compare_digest(value.lower().encode(), self._sha1.encode()) or (
            hmac.compare_digest(value.encode(), self._sha512.encode())
        )

    def find_subject(self, access_token: str | None) -> _Subject | None:
        """`storage.findSubject`: the last `-` part (16+ characters) starts a subject's
        digest, or the whole token starts the SHA-1 of a subject's token."""
        if not access_token:
            return None
        prefix = access_token.split("-")[-1]
        if len(prefix) < 16:
            with self._lock:  # a short token given to the constructor: exact match only
                return next(
                    (
                        s
                        for s in self._subjects
                        if len(s.digest) < 16 and s.access_token == access_token
                    ),
                    None,
                )
        with self._lock:
            for subject in self._subjects:
                token_digest = hashlib.sha1(subject.access_token.encode()).hexdigest()
                if token_digest.startswith(access_token) or subject.digest.startswith(prefix):
                    return subject
        return None

    def sign(self, access_token: str) -> tuple[str, int, int]:
        iat = int(self.clock())
        exp = iat + self.lifetime_seconds
        token = jwt.encode({"accessToken": access_token, "iat": iat, "exp": exp}, self._key)
        return token, iat, exp

    def verify(self, token: str | None) -> dict[str, Any] | None:
        """`enclave.verifyJWT`: the claims of a JWT signed here and not expired, else None."""
        if not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return None
        exp = claims.get("exp")
        if isinstance(exp, int | float) and self.clock() >= exp:
            return None
        return claims

    def authorize(self, access_token: str) -> dict[str, Any] | None:
        """`authorization.authorize`: a fresh JWT for an access token (or a valid JWT)."""
        claims = self.verify(access_token)
        user_token = claims.get("accessToken") if claims else None
        subject = self.find_subject(user_token if isinstance(user_token, str) else access_token)
        if subject is None:
            return None
        token, iat, exp = self.sign(subject.access_token)
        roles = list(dict.fromkeys([*subject.roles, *self.default_roles]))
        return {
            "token": token,
            "sub": subject.name,
            "permissionGroups": [list(ROLE_PERMISSIONS.get(role, ())) for role in roles],
            "iat": iat,
            "exp": exp,
        }

    def _subject_grant(self, subject: _Subject) -> _Grant:
        return _Grant(self._patterns([*subject.roles, *self.default_roles]), subject)

    def resolve(self, secret: str | None, token: str | None) -> _Grant | None:
        """`authorization.resolve`: default roles without credentials, admin for the API
        secret, a subject's roles (plus defaults) for a valid JWT or access token given as
        the secret; None (refused) when credentials were given and none is valid."""
        if secret == "null":
            secret = None
        if not secret and not token:
            return _Grant(self._patterns(self.default_roles), defaults=True)
        if secret and self.is_api_key(secret):
            return _ADMIN_GRANT
        claims = self.verify(token)
        access = claims.get("accessToken") if claims else None
        if not access and secret and self.find_subject(secret):
            access = secret
        if isinstance(access, str) and access:
            subject = self.find_subject(access)
            return None if subject is None else self._subject_grant(subject)
        return None

    # ---------------------------------------------------------------- per API

    def v1(self, headers: Headers, params: Mapping[str, str], body: Any = None) -> _Grant | None:
        """The grant of a v1 request (`isPermitted`), or None: refused (401)."""
        secret = params.get("secret") or headers.get("api-secret") or _body_field(body, "secret")
        token: str | None = None
        parts = (headers.get("authorization") or "").split(" ")
        if len(parts) == 2 and parts[0] == "Bearer":  # extractJWTfromRequest (case-sensitive)
            token = parts[1]
        if not token:
            access = params.get("token") or _body_field(body, "token")
            if access:
                authorized = self.authorize(access)
                token = authorized["token"] if authorized else None
        return self.resolve(secret or None, token or None)

    def v3(self, headers: Headers) -> _Grant | _Response | None:
        """`lib/api3/security.js` authenticate: only `Authorization: Bearer <JWT>`.

        Returns the 401 to answer, or the grant; None means a valid JWT whose subject is
        gone (every permission check then answers 403).
        """
        if not self.api3_security:  # API3_SECURITY_ENABLE=false
            return _ADMIN_GRANT
        parts = (headers.get("authorization") or "").split(" ")
        token = parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else None
        if not token:
            return _error(401, "Missing or bad access token or JWT")
        claims = self.verify(token)
        access = claims.get("accessToken") if claims else None
        if not isinstance(access, str) or not access:
            return _error(401, "Bad access token or JWT")
        subject = self.find_subject(access)
        return None if subject is None else self._subject_grant(subject)

    # ---------------------------------------------------------------- subjects

    def create_subject(self, payload: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """`POST /api/v2/authorization/subjects` (storage.createSubject + reload)."""
        if self._sha1 is None:
            raise ValueError("subjects need an API_SECRET")
        record = dict(payload)
        if "created_at" not in record:
            record["created_at"] = iso_ms(now_ms)
        oid = secrets.token_hex(12)
        record["_id"] = oid
        name = js_string(record.get("name", ""))
        roles = record.get("roles")
        roles_tuple = tuple(js_string(role) for role in roles) if isinstance(roles, list) else ()
        digest = hashlib.sha1((self._sha1 + oid).encode()).hexdigest()
        abbrev = _NON_WORD.sub("", name.lower())[:10]
        subject = _Subject(oid, name, roles_tuple, digest, f"{abbrev}-{digest[:16]}", record)
        with self._lock:
            self._subjects.append(subject)
            self._subjects.sort(key=lambda item: item.name)
        return record

    def list_subjects(self) -> list[dict[str, Any]]:
        """`GET /api/v2/authorization/subjects`: _id, name, accessToken, roles."""
        with self._lock:
            return [
                {
                    "_id": subject.oid,
                    "name": subject.name,
                    "accessToken": subject.access_token,
                    "roles": list(subject.roles),
                }
                for subject in self._subjects
            ]


def _body_field(body: Any, name: str) -> str | None:
    """A secret or token sent in a JSON body (and taken out of it, as Nightscout does)."""
    holder = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else body
    if isinstance(holder, dict) and holder.get(name):
        return js_string(holder.pop(name))
    return None
