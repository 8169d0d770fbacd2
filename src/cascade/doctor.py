"""`cascade doctor`: is the active profile configured, and can Cascade reach everything it needs?

Each check says exactly what is wrong and what to do. Secrets are never printed: endpoints are
shown without credentials, and errors are reduced to their type and a short reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError

from cascade.config import Profile, Settings
from cascade.exceptions import CascadeError
from cascade.lake.nessie import NessieClient

if TYPE_CHECKING:
    from cascade.lake.ingest import Held


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _failure(name: str, exc: Exception) -> Check:
    """Any failure is a finding: Cascade's own errors as they are, others without their payload."""
    if isinstance(exc, CascadeError):
        return Check(name, False, str(exc))
    reason = str(exc).splitlines()[0][:200] if str(exc) else ""
    return Check(name, False, f"{type(exc).__name__}: {reason}")


def _run(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except Exception as exc:
        return _failure(name, exc)


def _catalog(settings: Settings) -> str:
    from cascade.lake.catalog import load_lake_catalog

    catalog = load_lake_catalog(settings)
    namespaces = [".".join(n) for n in catalog.list_namespaces()]
    where = (
        settings.nessie.catalog_uri
        if settings.lake.profile is Profile.LAKEHOUSE
        else str(settings.lake.catalog_db_path)
    )
    return f"{where}: namespaces {', '.join(namespaces) or 'none yet (run cascade ingest)'}"


def _stage(settings: Settings) -> str:
    import pyarrow.fs as pafs

    from cascade.lake.stage import Stage

    stage = Stage.for_settings(settings)
    info = stage.fs.get_file_info(stage.root)
    if settings.lake.profile is Profile.LAKEHOUSE and info.type == pafs.FileType.NotFound:
        bucket = stage.root.split("/", 1)[0]
        if stage.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise CascadeError(
                f"bucket {bucket!r} does not exist at {settings.s3.endpoint}: run `cascade stack up`"
            )
    return f"{settings.lake.stage_uri} reachable"


def _duckdb(settings: Settings) -> str:
    from cascade.lake.duck import connect

    con = connect(settings=settings)
    try:
        version = con.execute("select version()").fetchone()
    finally:
        con.close()
    return f"DuckDB {version[0] if version else '?'} with iceberg, avro{', httpfs' if settings.lake.profile is Profile.LAKEHOUSE else ''}"


def _dbt_project(settings: Settings) -> str:
    from cascade.transform.project import project_dir

    return str(project_dir(settings.transform.dbt_project_dir))


def _nessie(settings: Settings) -> str:
    with NessieClient(settings.nessie.uri, timeout=5) as nessie:
        default = nessie.config().get("defaultBranch")
        head = nessie.find_branch(settings.nessie.ref)
    if head is None:
        raise CascadeError(
            f"Nessie at {nessie.uri} has no branch {settings.nessie.ref!r} (NESSIE_REF): "
            f"create it with `cascade branch create {settings.nessie.ref}`"
        )
    return f"{nessie.uri}: default branch {default}, ref in use {settings.nessie.ref} @ {head[:12]}"


def _trino(settings: Settings) -> str:
    from cascade.transform.trino import trino_target

    uri = f"http://{settings.trino.host}:{settings.trino.port}"
    response = httpx.get(f"{uri}/v1/info", timeout=5)
    response.raise_for_status()
    info = response.json()
    if info.get("starting"):
        raise CascadeError(f"Trino at {uri} is still starting")
    target = trino_target(settings)  # refuses a NESSIE_REF no Trino catalog reads
    return (
        f"{uri}: Trino {info.get('nodeVersion', {}).get('version', '?')}; "
        f"dbt target {target.name} for NESSIE_REF {settings.nessie.ref}"
    )


def _held(catalog: Catalog, site_id: str, collection: str) -> Held:
    """What the lake holds of the site's collection; nothing if it was never ingested (doctor
    creates no table)."""
    from cascade.lake.ingest import Held, held_in_lake
    from cascade.lake.schemas import RAW_NAMESPACE, REJECTS_TABLE

    try:
        table = catalog.load_table(f"{RAW_NAMESPACE}.{collection}")
        rejects = catalog.load_table(f"{RAW_NAMESPACE}.{REJECTS_TABLE}")
    except NoSuchTableError:
        return Held(0, 0)
    return held_in_lake(table, rejects, site_id, collection)


V3_COUNT_LIMIT = 10_000  # doctor pages v3 history by ids only, and stops counting here


def _site(settings: Settings, site_id: str) -> list[Check]:
    """The site's version and credentials, then per collection what v1 and v3 can each see, what
    the lake holds, and the strategy `cascade ingest` will use with the reason."""
    from cascade.lake.catalog import load_lake_catalog
    from cascade.lake.ingest import choose_strategy, make_client
    from cascade.lake.schemas import RAW_COLLECTIONS
    from cascade.source.nightscout.collections import get_collection

    site = settings.nightscout.site(site_id)
    name = f"nightscout {site_id}"
    with make_client(settings.with_values(**{"nightscout_max_retries": 0}), site) as client:
        version = client.status().get("version", "?")
        access = client.v3_access()
        checks = [
            Check(
                name,
                True,
                f"{site.url}: Nightscout {version}; v3 history {'usable' if access.usable else 'not used'}: {access.reason}",
            )
        ]
        catalog = load_lake_catalog(settings)
        for collection_name in RAW_COLLECTIONS:
            collection = get_collection(collection_name)
            v1_count = (
                client.count(collection)
                if collection.paged
                else len(next(client.v1_pages(collection)).docs)
            )
            seen: list[str] = [f"v1 {v1_count:,}" if v1_count is not None else "v1 cannot count"]
            if access.usable:
                v3_count = client.history_count(collection, at_most=V3_COUNT_LIMIT)
                seen.append(f"v3 history {v3_count:,}{'+' if v3_count >= V3_COUNT_LIMIT else ''}")
            held = _held(catalog, site_id, collection_name)
            seen.append(f"lake {held.documents:,} ({held.outside_history:,} without srvModified)")
            strategy = choose_strategy(
                access, collection, v1_count if collection.paged else None, held
            )
            checks.append(
                Check(f"{name} {collection_name}", True, f"{', '.join(seen)} → {strategy.reason}")
            )
    return checks


def configuration_failed(exc: CascadeError) -> list[Check]:
    """The report when the settings cannot be read: the one failing check, naming the variable."""
    return [Check("configuration", False, str(exc))]


def run_checks(settings: Settings) -> list[Check]:
    """Every check the active profile needs, on the settings the caller read (the CLI's)."""
    checks: list[Check] = []
    checks.append(
        Check(
            "configuration",
            True,
            f"profile {settings.lake.profile.value}, CASCADE_HOME {settings.lake.home}",
        )
    )
    if settings.lake.profile is Profile.LAKEHOUSE:
        checks.append(_run("nessie", lambda: _nessie(settings)))
        checks.append(_run("trino", lambda: _trino(settings)))
    checks.append(_run("iceberg catalog", lambda: _catalog(settings)))
    checks.append(_run("stage", lambda: _stage(settings)))
    checks.append(_run("duckdb", lambda: _duckdb(settings)))
    checks.append(_run("dbt project", lambda: _dbt_project(settings)))
    sites = settings.nightscout.sites()
    if not sites:
        checks.append(
            Check("nightscout", False, "no site configured: set NIGHTSCOUT_URL or NIGHTSCOUT_SITES")
        )
    for site in sites:
        try:
            checks.extend(_site(settings, site.id))
        except Exception as exc:  # one site's failure is its finding; the other sites still run
            checks.append(_failure(f"nightscout {site.id}", exc))
    return checks
