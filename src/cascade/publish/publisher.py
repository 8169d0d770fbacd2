"""`publish()`: copy the lake's marts into PostgreSQL for BI, atomically for readers.

1. Look up the marts in the lake (`marts.*`), each pinned to its current Iceberg snapshot (and, on
   the lakehouse profile, Nessie's `main` commit hash). Refuse when one is missing.
2. Skip every mart whose snapshot is already published (`<schema>._published`) in the same layout
   and still in place: publishing the same snapshot again changes nothing.
3. Load each remaining mart into `<schema>_staging.<mart>`: CREATE TABLE, COPY (CSV, FREEZE) from
   the snapshot's Arrow batches, the indexes of its grain, comments, the BI grant; ANALYZE.
4. Swap all of them in ONE transaction: lock the old tables (`lock_timeout`), drop them, move the
   staged ones into `<schema>` and record them in `<schema>._published`. A reader sees either the
   whole old set or the whole new one. If a reader holds an old table, the swap gives up its lock
   request after `PUBLISH_LOCK_TIMEOUT_SECONDS` (so new readers queued behind it are not stalled
   longer), waits and tries again, up to `PUBLISH_LOCK_WAIT_SECONDS`, then fails with the sessions
   that held it; the old marts are then left as they were.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_before_delay,
    wait_random_exponential,
)

from cascade.config import Settings
from cascade.exceptions import PublishError
from cascade.publish.dsn import mask_dsn, resolve_dsn, scrub, with_options
from cascade.publish.schema import (
    Layout,
    UnsupportedType,
    csv_bytes,
    layout_for,
    quote_ident,
    quote_literal,
)
from cascade.publish.source import (
    Source,
    SourceMart,
    check_ref,
    load_source,
    mart_grains,
)
from cascade.transform.manifest import manifest
from cascade.transform.project import project_dir

log = logging.getLogger(__name__)

PUBLISHED_TABLE = "_published"
CONNECT_TIMEOUT_SECONDS = 10
APPLICATION_NAME = "cascade publish"

_PUBLISHED_DDL = """
CREATE TABLE {table} (
    mart text PRIMARY KEY,
    source_table text NOT NULL,
    snapshot_id bigint NOT NULL,
    metadata_location text,
    profile text NOT NULL,
    nessie_ref text,
    nessie_hash text,
    row_count bigint NOT NULL,
    layout text NOT NULL,
    published_at timestamptz NOT NULL
)
"""


@dataclass(frozen=True)
class MartPublish:
    """What happened to one mart: published (and why) or skipped (already published)."""

    mart: str
    source_table: str
    snapshot_id: int
    rows: int
    published: bool
    reason: str
    previous_snapshot_id: int | None = None
    seconds: float = 0.0  # read + COPY + indexes + ANALYZE into staging


@dataclass(frozen=True)
class PublishResult:
    target: str  # the DSN without its password
    schema: str
    profile: str
    nessie_ref: str | None
    nessie_hash: str | None
    marts: tuple[MartPublish, ...]
    published_at: datetime | None  # None when nothing changed
    lock_attempts: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0

    @property
    def published(self) -> tuple[MartPublish, ...]:
        return tuple(m for m in self.marts if m.published)

    @property
    def skipped(self) -> tuple[MartPublish, ...]:
        return tuple(m for m in self.marts if not m.published)

    @property
    def rows(self) -> int:
        return sum(m.rows for m in self.published)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.load_seconds if self.load_seconds > 0 else 0.0

    def summary(self) -> str:
        source = (
            f" (Nessie {self.nessie_ref} @ {self.nessie_hash[:12]})" if self.nessie_hash else ""
        )
        if not self.published:
            return f"nothing to publish: all {len(self.marts)} marts already published in {self.schema}{source}"
        waited = f", swap after {self.lock_attempts} lock tries" if self.lock_attempts > 1 else ""
        return (
            f"{len(self.published)} marts published to {self.schema} at {self.target}{source}, "
            f"{len(self.skipped)} unchanged; {self.rows:,} rows in {self.seconds:.1f}s{waited}"
        )


def publish(
    settings: Settings, *, marts: list[str] | None = None, force: bool = False
) -> PublishResult:
    """Publish the lake's marts (all, or the named ones) into PostgreSQL; see the module doc.

    `force` republishes marts whose snapshot is already published.
    """
    started = time.monotonic()
    check_ref(settings)
    dsn = resolve_dsn(settings)
    target = mask_dsn(dsn)
    parsed = manifest(project_dir(settings.transform.dbt_project_dir), settings.lake.home / "dbt")
    source = load_source(settings, marts, parsed=parsed)
    grains = mart_grains(parsed)
    layouts: dict[str, Layout] = {}
    for mart in source.marts:
        try:
            layouts[mart.name] = layout_for(mart.name, mart.schema, grains.get(mart.name))
        except UnsupportedType as exc:
            raise PublishError(f"cannot publish {mart.source_table}: {exc}") from None
    try:
        conn = psycopg.connect(
            with_options(
                dsn, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name=APPLICATION_NAME
            ),
            autocommit=True,
        )
    except psycopg.Error as exc:
        raise PublishError(
            f"cannot connect to PostgreSQL at {target}: {_reason(exc, dsn)}"
        ) from None
    try:
        with conn:
            result = _Publisher(conn, settings, source, layouts, target, force).run()
    except psycopg.Error as exc:
        raise PublishError(
            f"publishing to PostgreSQL at {target} failed: {_reason(exc, dsn)}"
        ) from None
    return PublishResult(**{**result, "seconds": time.monotonic() - started})


@dataclass(frozen=True)
class _Loaded:
    rows: int
    seconds: float


def _reason(exc: psycopg.Error, dsn: str) -> str:
    text = str(exc).strip() or type(exc).__name__
    return scrub(" ".join(text.split()), dsn)


class _Publisher:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        settings: Settings,
        source: Source,
        layouts: dict[str, Layout],
        target: str,
        force: bool,
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.source = source
        self.layouts = layouts
        self.target = target
        self.force = force
        self.schema = settings.marts.schema_name
        self.staging = f"{settings.marts.schema_name}_staging"
        self.role = settings.marts.bi_reader_role
        self._role_exists: bool | None = None

    # ---------------------------------------------------------------- helpers
    def q(self, schema: str, name: str) -> str:
        return f"{quote_ident(schema)}.{quote_ident(name)}"

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # ---------------------------------------------------------------- the run
    def run(self) -> dict[str, Any]:
        if not self.one(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
            [f"cascade.publish:{self.schema}"],
        ):
            raise PublishError(
                f"another `cascade publish` into schema {self.schema!r} at {self.target} is running: "
                "wait for it to finish"
            )
        self.prepare()
        previous = self.published_records()
        decisions: list[tuple[SourceMart, str, int | None]] = []
        skipped: list[MartPublish] = []
        for mart in self.source.marts:
            record = previous.get(mart.name)
            reason = self.reason_to_publish(mart, record)
            old_snapshot = record["snapshot_id"] if record else None
            if reason is None:
                assert record is not None  # skipped only when recorded
                skipped.append(
                    MartPublish(
                        mart.name,
                        mart.source_table,
                        mart.snapshot_id,
                        int(record["row_count"]),
                        False,
                        "already published",
                        old_snapshot,
                    )
                )
            else:
                decisions.append((mart, reason, old_snapshot))
        published: list[MartPublish] = []
        published_at: datetime | None = None
        attempts = 0
        load_seconds = 0.0
        if decisions:
            published_at = datetime.now(UTC)
            try:
                for mart, reason, old_snapshot in decisions:
                    loaded = self.stage(mart, published_at)
                    published.append(
                        MartPublish(
                            mart.name,
                            mart.source_table,
                            mart.snapshot_id,
                            loaded.rows,
                            True,
                            reason,
                            old_snapshot,
                            loaded.seconds,
                        )
                    )
                    load_seconds += loaded.seconds
                attempts = self.swap(published, published_at)
            finally:
                with contextlib.suppress(psycopg.Error):  # never hide the error that got us here
                    self.drop_staged()
        self.ensure_grants()
        by_name = {m.mart: m for m in (*published, *skipped)}
        return {
            "target": self.target,
            "schema": self.schema,
            "profile": self.source.profile,
            "nessie_ref": self.source.nessie_ref,
            "nessie_hash": self.source.nessie_hash,
            "marts": tuple(by_name[m.name] for m in self.source.marts),
            "published_at": published_at,
            "lock_attempts": attempts,
            "load_seconds": load_seconds,
        }

    def prepare(self) -> None:
        """The target and staging schemas, the provenance table; leftovers of a killed run removed."""
        for schema in (self.schema, self.staging):
            if self.one("SELECT to_regnamespace(%s)", [schema]) is None:
                self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
                log.info("created schema %s", schema)
        # staging is ours alone: the BI role (default privileges may have granted it) never sees it
        if self.role_exists() and self.one(
            "SELECT has_schema_privilege(%s, %s, 'USAGE')", [self.role, self.staging]
        ):
            self.conn.execute(
                f"REVOKE ALL ON SCHEMA {quote_ident(self.staging)} FROM PUBLIC, {quote_ident(self.role)}"
            )
        self.drop_staged()
        if self.one("SELECT to_regclass(%s)", [self.q(self.schema, PUBLISHED_TABLE)]) is None:
            with self.conn.transaction():
                table = self.q(self.schema, PUBLISHED_TABLE)
                self.conn.execute(_PUBLISHED_DDL.format(table=table))
                self.conn.execute(
                    f"COMMENT ON TABLE {table} IS "
                    + quote_literal(
                        "Provenance of every mart published by `cascade publish`: the lake table, its Iceberg "
                        "snapshot, the Nessie ref and commit (lakehouse profile), the row count and when."
                    )
                )
        self.ensure_grants()

    def role_exists(self) -> bool:
        if self._role_exists is None:
            self._role_exists = bool(self.role) and bool(
                self.one("SELECT count(*) FROM pg_roles WHERE rolname = %s", [self.role])
            )
        return self._role_exists

    def published_records(self) -> dict[str, dict[str, Any]]:
        cursor = self.conn.cursor(row_factory=dict_row)
        cursor.execute(f"SELECT * FROM {self.q(self.schema, PUBLISHED_TABLE)}")
        return {row["mart"]: row for row in cursor.fetchall()}

    def reason_to_publish(self, mart: SourceMart, record: dict[str, Any] | None) -> str | None:
        if self.one("SELECT to_regclass(%s)", [self.q(self.schema, mart.name)]) is None:
            return "new" if record is None else "table missing"
        if record is None:
            return "not recorded"
        if self.force:
            return "forced"
        if record["snapshot_id"] != mart.snapshot_id or record["source_table"] != mart.source_table:
            return "new snapshot"
        if record["layout"] != self.layouts[mart.name].digest:
            return "layout changed"
        return None

    # ---------------------------------------------------------------- staging
    def stage(self, mart: SourceMart, published_at: datetime) -> _Loaded:
        started = time.monotonic()
        layout = self.layouts[mart.name]
        table = self.q(self.staging, mart.name)
        rows = 0
        with self.conn.transaction(), self.conn.cursor() as cursor:
            cursor.execute(layout.create_table(self.staging))
            with cursor.copy(layout.copy_statement(self.staging)) as copy:
                try:
                    for batch in mart.batches():
                        if batch.num_rows:
                            copy.write(csv_bytes(batch, layout))
                            rows += batch.num_rows
                except (OSError, ValueError, pa.ArrowException) as exc:
                    raise PublishError(
                        f"cannot read {mart.source_table} (snapshot {mart.snapshot_id}) from the lake: "
                        f"{type(exc).__name__}: {_first_line(exc)}"
                    ) from None
            if cursor.rowcount not in (-1, rows):
                raise PublishError(
                    f"{mart.source_table}: COPY loaded {cursor.rowcount} rows, the snapshot has {rows}"
                )
            for index in layout.indexes:
                try:
                    with self.conn.transaction():
                        cursor.execute(index.ddl(self.staging, mart.name))
                except pg_errors.UniqueViolation:
                    raise PublishError(
                        f"{mart.source_table} (snapshot {mart.snapshot_id}) has duplicate rows for its grain "
                        f"({', '.join(index.columns)}): the lake table breaks its dbt uniqueness test; not published"
                    ) from None
            cursor.execute(
                f"COMMENT ON TABLE {table} IS "
                + quote_literal(self.comment(mart, rows, published_at))
            )
            for column, doc in layout.docs:
                cursor.execute(
                    f"COMMENT ON COLUMN {table}.{quote_ident(column)} IS " + quote_literal(doc)
                )
            if self.role_exists():
                cursor.execute(f"GRANT SELECT ON {table} TO {quote_ident(self.role)}")
            cursor.execute(f"ANALYZE {table}")
        seconds = time.monotonic() - started
        log.info("staged %s: %d rows in %.2fs", mart.source_table, rows, seconds)
        return _Loaded(rows, seconds)

    def comment(self, mart: SourceMart, rows: int, published_at: datetime) -> str:
        nessie = (
            f", Nessie {self.source.nessie_ref} @ {self.source.nessie_hash}"
            if self.source.nessie_hash
            else ""
        )
        grain = ", ".join(self.layouts[mart.name].grain) or "not declared"
        return (
            f"Published by `cascade publish` from lake table {mart.source_table} "
            f"(Iceberg snapshot {mart.snapshot_id}{nessie}; profile {self.source.profile}): "
            f"{rows} rows at {published_at.isoformat(timespec='seconds')}. Grain: {grain}. "
            f"Provenance of every mart: {self.schema}.{PUBLISHED_TABLE}."
        )

    def drop_staged(self) -> None:
        names = self.conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", [self.staging]
        ).fetchall()
        for (name,) in names:
            self.conn.execute(f"DROP TABLE IF EXISTS {self.q(self.staging, name)}")

    # ---------------------------------------------------------------- the swap
    def swap(self, marts: list[MartPublish], published_at: datetime) -> int:
        """Swap every staged mart in, in one transaction; retry while readers hold the old ones.

        Each try waits at most PUBLISH_LOCK_TIMEOUT_SECONDS for the locks; tries go on, with
        jittered exponential pauses, until PUBLISH_LOCK_WAIT_SECONDS have passed.
        """
        timeout = self.settings.marts.lock_timeout_seconds
        wait = self.settings.marts.lock_wait_seconds
        names = [m.mart for m in marts]

        def tell(state: RetryCallState) -> None:
            log.info(
                "old marts locked by %s; trying again in %.1fs",
                self.blockers(names) or "a reader",
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = Retrying(
            retry=retry_if_exception_type(pg_errors.LockNotAvailable),
            stop=stop_before_delay(wait),
            wait=wait_random_exponential(multiplier=0.1, max=2.0),
            before_sleep=tell,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._swap_once(marts, published_at, timeout)
        except pg_errors.LockNotAvailable:
            tries = retrying.statistics.get("attempt_number", 1)
            blockers = self.blockers(names)
            raise PublishError(
                f"could not swap the new marts into {self.schema!r}: readers kept the old tables locked "
                f"for {wait:g}s ({tries} tries of {timeout:g}s each; held by {blockers or 'sessions that ended meanwhile'}). "
                "The old marts are unchanged. End those sessions, or raise PUBLISH_LOCK_WAIT_SECONDS, and publish again"
            ) from None
        except pg_errors.DependentObjectsStillExist as exc:
            raise PublishError(
                f"cannot replace a mart in {self.schema!r}: other objects depend on it ({_first_line(exc)}); "
                "BI views over the marts must live elsewhere or be dropped first"
            ) from None
        tries = int(retrying.statistics.get("attempt_number", 1))
        log.info("swapped %d marts into %s (lock try %d)", len(marts), self.schema, tries)
        return tries

    def _swap_once(self, marts: list[MartPublish], published_at: datetime, timeout: float) -> None:
        with self.conn.transaction():
            self.conn.execute(
                "SELECT set_config('lock_timeout', %s, true)", [f"{max(1, int(timeout * 1000))}ms"]
            )
            existing = [
                self.q(self.schema, m.mart)
                for m in marts
                if self.one("SELECT to_regclass(%s)", [self.q(self.schema, m.mart)]) is not None
            ]
            if existing:
                self.conn.execute(f"LOCK TABLE {', '.join(existing)} IN ACCESS EXCLUSIVE MODE")
            for mart in marts:
                self.conn.execute(f"DROP TABLE IF EXISTS {self.q(self.schema, mart.mart)}")
                self.conn.execute(
                    f"ALTER TABLE {self.q(self.staging, mart.mart)} SET SCHEMA {quote_ident(self.schema)}"
                )
                source = next(s for s in self.source.marts if s.name == mart.mart)
                self.conn.execute(
                    f"INSERT INTO {self.q(self.schema, PUBLISHED_TABLE)} AS p "
                    "(mart, source_table, snapshot_id, metadata_location, profile, nessie_ref, nessie_hash, "
                    " row_count, layout, published_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (mart) DO UPDATE SET source_table = excluded.source_table, "
                    "snapshot_id = excluded.snapshot_id, metadata_location = excluded.metadata_location, "
                    "profile = excluded.profile, nessie_ref = excluded.nessie_ref, nessie_hash = excluded.nessie_hash, "
                    "row_count = excluded.row_count, layout = excluded.layout, published_at = excluded.published_at",
                    [
                        mart.mart,
                        mart.source_table,
                        mart.snapshot_id,
                        source.metadata_location,
                        self.source.profile,
                        self.source.nessie_ref,
                        self.source.nessie_hash,
                        mart.rows,
                        self.layouts[mart.mart].digest,
                        published_at,
                    ],
                )

    def blockers(self, marts: list[str]) -> str:
        """Who holds locks on the old marts: `pid 123 (bi_reader, in a transaction for 42s)`."""
        rows = self.conn.execute(
            "SELECT DISTINCT a.pid, a.usename, coalesce(a.application_name, ''), "
            "       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::int "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.granted AND l.pid <> pg_backend_pid() "
            "  AND l.relation = ANY (SELECT to_regclass(n)::oid FROM unnest(%s::text[]) AS n WHERE to_regclass(n) IS NOT NULL) "
            "ORDER BY a.pid",
            [[self.q(self.schema, m) for m in marts]],
        ).fetchall()
        return ", ".join(
            f"pid {pid} ({user or '?'}{', ' + app if app else ''}"
            f"{f', in a transaction for {age}s' if age is not None else ''})"
            for pid, user, app, age in rows
        )

    # ---------------------------------------------------------------- the BI role
    def ensure_grants(self) -> None:
        """USAGE on the schema, SELECT on every table, default privileges: granted only where missing."""
        if not self.role:
            return
        if not self.role_exists():
            raise PublishError(
                f"the BI role {self.role!r} does not exist at {self.target}: the stack provisioning creates it "
                "(`cascade stack up postgres`, or deploy/setup/postgres-databases.sh); set BI_READER_ROLE to an "
                "existing role, or to nothing to skip the grants"
            )
        role = quote_ident(self.role)
        schema = quote_ident(self.schema)
        if not self.one(
            "SELECT has_database_privilege(%s, current_database(), 'CONNECT')", [self.role]
        ):
            database = self.one("SELECT current_database()")
            self.conn.execute(f"GRANT CONNECT ON DATABASE {quote_ident(database)} TO {role}")
        if not self.one("SELECT has_schema_privilege(%s, %s, 'USAGE')", [self.role, self.schema]):
            self.conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        unreadable = self.one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace(%s) "
            "AND relkind IN ('r', 'p', 'v', 'm') AND NOT has_table_privilege(%s, oid, 'SELECT')",
            [self.schema, self.role],
        )
        if unreadable:
            self.conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
        has_default = self.one(
            "SELECT EXISTS (SELECT 1 FROM pg_default_acl d, aclexplode(d.defaclacl) a "
            "WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) "
            "AND d.defaclnamespace = to_regnamespace(%s) AND d.defaclobjtype = 'r' "
            "AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s) AND a.privilege_type = 'SELECT')",
            [self.schema, self.role],
        )
        if not has_default:
            self.conn.execute(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}"
            )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
