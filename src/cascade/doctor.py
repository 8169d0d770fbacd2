"""`cascade doctor`: is the active profile configured, and can Cascade reach everything it needs?

Each check says exactly what is wrong and what to do. Secrets are never printed: endpoints are
shown without credentials, and errors are reduced to their type and a short reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from cascade.config import Profile, Settings, load_settings
from cascade.exceptions import CascadeError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _run(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except CascadeError as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # any failure is a finding, reported without its payload
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        return Check(name, False, f"{type(exc).__name__}: {reason}")


def _catalog(settings: Settings) -> str:
    from cascade.lake.catalog import load_lake_catalog

    catalog = load_lake_catalog(settings)
    namespaces = [".".join(n) for n in catalog.list_namespaces()]
    where = settings.nessie_catalog_uri if settings.cascade_profile is Profile.LAKEHOUSE else str(settings.catalog_db_path)
    return f"{where}: namespaces {', '.join(namespaces) or 'none yet (run cascade ingest)'}"


def _stage(settings: Settings) -> str:
    import pyarrow.fs as pafs

    from cascade.lake.stage import Stage

    stage = Stage.for_settings(settings)
    info = stage.fs.get_file_info(stage.root)
    if settings.cascade_profile is Profile.LAKEHOUSE and info.type == pafs.FileType.NotFound:
        bucket = stage.root.split("/", 1)[0]
        if stage.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise CascadeError(f"bucket {bucket!r} does not exist at {settings.s3_endpoint}: run `cascade stack up`")
    return f"{settings.stage_uri} reachable"


def _duckdb(settings: Settings) -> str:
    from cascade.serve.duck import connect

    con = connect(settings=settings)
    try:
        version = con.execute("select version()").fetchone()
    finally:
        con.close()
    return f"DuckDB {version[0] if version else '?'} with iceberg, avro{', httpfs' if settings.cascade_profile is Profile.LAKEHOUSE else ''}"


def _dbt_project() -> str:
    from cascade.transform.project import project_dir

    return str(project_dir())


def _nessie(settings: Settings) -> str:
    response = httpx.get(f"{settings.nessie_uri.rstrip('/')}/api/v2/config", timeout=5)
    response.raise_for_status()
    payload = response.json()
    return f"{settings.nessie_uri}: default branch {payload.get('defaultBranch')}, ref in use {settings.nessie_ref}"


def _trino(settings: Settings) -> str:
    from cascade.transform.trino import trino_target

    uri = f"http://{settings.trino_host}:{settings.trino_port}"
    response = httpx.get(f"{uri}/v1/info", timeout=5)
    response.raise_for_status()
    info = response.json()
    if info.get("starting"):
        raise CascadeError(f"Trino at {uri} is still starting")
    target = trino_target(settings)  # refuses a NESSIE_REF no Trino catalog reads
    return (
        f"{uri}: Trino {info.get('nodeVersion', {}).get('version', '?')}; "
        f"dbt target {target.name} for NESSIE_REF {settings.nessie_ref}"
    )


def _site(settings: Settings, site_id: str) -> str:
    from cascade.lake.ingest import make_client

    with make_client(settings.model_copy(update={"nightscout_max_retries": 0}), settings.site(site_id)) as client:
        version = client.status().get("version", "?")
        api = "v3 history" if client.has_v3() else "v1 paging"
    return f"{settings.site(site_id).url}: Nightscout {version}, read with {api}"


def run_checks(settings: Settings | None = None) -> list[Check]:
    checks: list[Check] = []
    try:
        settings = settings or load_settings()
    except CascadeError as exc:
        return [Check("configuration", False, str(exc))]
    checks.append(Check("configuration", True, f"profile {settings.cascade_profile.value}, CASCADE_HOME {settings.cascade_home}"))
    if settings.cascade_profile is Profile.LAKEHOUSE:
        checks.append(_run("nessie", lambda: _nessie(settings)))
        checks.append(_run("trino", lambda: _trino(settings)))
    checks.append(_run("iceberg catalog", lambda: _catalog(settings)))
    checks.append(_run("stage", lambda: _stage(settings)))
    checks.append(_run("duckdb", lambda: _duckdb(settings)))
    checks.append(_run("dbt project", _dbt_project))
    sites = settings.sites()
    if not sites:
        checks.append(Check("nightscout", False, "no site configured: set NIGHTSCOUT_URL or NIGHTSCOUT_SITES"))
    for site in sites:
        checks.append(_run(f"nightscout {site.id}", lambda site_id=site.id: _site(settings, site_id)))  # type: ignore[misc]
    return checks
