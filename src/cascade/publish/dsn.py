"""Where the marts are published: the PostgreSQL DSN, and how it is shown (never with its password)."""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cascade.config import Profile, Settings
from cascade.exceptions import ConfigurationError

MASK = "***"

#: What `cascade publish` tells a user who has not said where PostgreSQL is.
NO_DSN_MESSAGE = (
    "no PostgreSQL to publish the marts to: set MARTS_DATABASE_URL to the marts database, e.g. "
    "MARTS_DATABASE_URL=postgresql://marts:PASSWORD@127.0.0.1:55432/marts "
    "(the local stack's: `cascade stack up postgres`, the password is MARTS_DB_PASSWORD); "
    "optionally MARTS_SCHEMA (default marts) and BI_READER_ROLE (default bi_reader)"
)


def resolve_dsn(settings: Settings) -> str:
    """The DSN to publish to: MARTS_DATABASE_URL, else (lakehouse profile) the local stack's marts DB."""
    if settings.marts.database_url is not None and settings.marts.database_url.get_secret_value():
        dsn = settings.marts.database_url.get_secret_value()
    elif settings.lake.profile is Profile.LAKEHOUSE:
        # The lakehouse default: the marts database of the local stack (STACK_HOST, POSTGRES_PORT,
        # MARTS_DB_PASSWORD), as docker-compose and `cascade stack up` provision it.
        dsn = settings.stack.marts_dsn
    else:
        raise ConfigurationError(NO_DSN_MESSAGE)
    try:
        conninfo_to_dict(dsn)
    except Exception:
        raise ConfigurationError(
            "MARTS_DATABASE_URL is not a PostgreSQL connection string "
            "(expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        ) from None
    return dsn


def _password(dsn: str) -> str | None:
    try:
        value = conninfo_to_dict(dsn).get("password")
    except Exception:
        return None
    return str(value) if value else None


def mask_dsn(dsn: str) -> str:
    """The DSN as it may be shown: `postgresql://user:***@host:port/db` (no password, no options)."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "postgresql://" + MASK
    user = params.get("user")
    auth = f"{user}{':' + MASK if params.get('password') else ''}@" if user else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    database = params.get("dbname") or ""
    return f"postgresql://{auth}{host}{port}/{database}"


def scrub(text: str, dsn: str) -> str:
    """`text` with the DSN's password (and any `user:password@` in a URL) replaced by ***."""
    password = _password(dsn)
    if password:
        text = text.replace(password, MASK)
    text = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", rf"\g<1>{MASK}@", text)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", rf"\g<1>{MASK}", text, flags=re.IGNORECASE)


def with_options(dsn: str, **options: str | int) -> str:
    """The DSN with libpq options added (connect_timeout, application_name, ...)."""
    return make_conninfo(dsn, **options)
