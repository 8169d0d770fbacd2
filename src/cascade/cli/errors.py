"""What a failure tells the person who ran Cascade: one line naming the thing to fix.

Cascade's own errors (`CascadeError`) already say it. The rest are failures of the machine or of
a library, met mid-run: a full disk, a home made read-only, an unexpected bug. They get one line
too, and the traceback only with `--debug` (or CASCADE_DEBUG=1). Every line is scrubbed of the
configured secrets, since a library's message may quote a URL or a setting.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from cascade.config import Settings, get_settings
from cascade.exceptions import CascadeError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}
_NOTHING_HALF_WRITTEN = "Iceberg commits are atomic, so nothing was half-written"
_TOKEN_IN_PATH = re.compile(r"(/authorization/request/)[^\s\"'?/]+")


def explain(exc: BaseException) -> str:
    """One line (or a few, for several sites) for `exc`, free of secrets."""
    settings = _settings()
    return _scrub(_explain(exc, settings), settings)


def _explain(exc: BaseException, settings: Settings | None) -> str:
    if isinstance(exc, CascadeError):
        return str(exc)
    home = str(settings.lake.home.resolve()) if settings else "CASCADE_HOME"
    os_error = _cause(exc, OSError)
    if os_error is not None and os_error.errno in _NO_SPACE:
        return (
            f"no space left on the device holding {_where(os_error) or home}: free some space, "
            f"or point CASCADE_HOME elsewhere, and run again ({_NOTHING_HALF_WRITTEN})"
        )
    if os_error is not None and os_error.errno in _NOT_WRITABLE:
        return (
            f"cannot write {_where(os_error) or home}: {_NOT_WRITABLE[os_error.errno]}; "
            f"CASCADE_HOME ({home}) must be writable by this user ({_NOTHING_HALF_WRITTEN})"
        )
    sqlite = _sqlite_reason(exc)
    if sqlite is not None:
        catalog = settings.lake.catalog_db_path if settings else "CASCADE_HOME/catalog.db"
        if "full" in sqlite:
            return f"no space left for the lake's catalog {catalog}: free some space and run again"
        return (
            f"cannot write the lake's catalog {catalog}: {sqlite}; "
            f"CASCADE_HOME ({home}) must be writable by this user"
        )
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return (
        f"unexpected {type(exc).__name__}: {first_line} "
        "(run again with --debug for the traceback, and please report it)"
    )


def _cause(exc: BaseException, kind: type[OSError]) -> OSError | None:
    """The first `kind` in the chain of causes: libraries wrap the OS's error in their own."""
    return next((link for link in _chain(exc) if isinstance(link, kind)), None)


def _where(error: OSError) -> str | None:
    if error.filename:
        return str(Path(str(error.filename)))
    quoted = re.search(r"'(/[^']+)'", str(error))  # pyarrow names the path in its message
    return quoted.group(1) if quoted else None


def _sqlite_reason(exc: BaseException) -> str | None:
    """SQLite's reason when the local catalog could not be written (read-only, full, gone)."""
    for link in _chain(exc):
        if type(link).__module__.startswith(("sqlite3", "sqlalchemy")):
            reason = str(getattr(link, "orig", None) or link).splitlines()[0]
            if any(word in reason for word in ("readonly", "full", "unable to open")):
                return reason
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    links: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in links:
        links.append(current)
        current = current.__cause__ or current.__context__
    return links


def _settings() -> Settings | None:
    try:
        return get_settings()
    except CascadeError:
        return None


def _scrub(message: str, settings: Settings | None) -> str:
    message = _TOKEN_IN_PATH.sub(r"\1<token>", message)
    for secret in _secrets(settings):
        message = message.replace(secret, "***")
    return message


def _secrets(settings: Settings | None) -> list[str]:
    if settings is None:
        return []
    values = [  # the S3 access key id is a name, not a secret (and often a common word)
        settings.s3.secret_access_key,
        settings.nightscout.api_secret,
        settings.nightscout.token,
        settings.marts.database_url,
    ]
    for site in settings.nightscout.sites():
        values += [site.api_secret, site.token]
    found = [v.get_secret_value() for v in values if v is not None]
    for url in found[:]:
        password = re.search(r"://[^:/@]+:([^@]+)@", url)  # a DSN's password on its own
        if password:
            found.append(password.group(1))
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)
