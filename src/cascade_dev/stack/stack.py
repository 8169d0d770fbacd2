"""`up`, `down`, `status`, `logs`: the local lakehouse stack as a whole.

Services start in dependency order (PostgreSQL and MinIO, then Nessie, then Trino) and stop in
the reverse order. `up` is idempotent: a running, healthy service is left alone; every service is
then (re)provisioned, which is idempotent too (roles and databases, the bucket, the branches).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cascade.config import Settings
from cascade_dev.stack.minio import MinIO
from cascade_dev.stack.nessie import Nessie
from cascade_dev.stack.postgres import Postgres
from cascade_dev.stack.process import StackError, tail
from cascade_dev.stack.trino import Trino

log = logging.getLogger(__name__)

#: Every service, in start order, with the services it needs.
SERVICES: dict[str, tuple[str, ...]] = {
    "postgres": (),
    "minio": (),
    "nessie": ("postgres", "minio"),
    "trino": ("nessie", "minio", "postgres"),
}


class Service(Protocol):
    name: str
    log_path: Path

    def install(self) -> object: ...
    def is_running(self) -> bool: ...
    def pid(self) -> int | None: ...
    def healthy(self) -> bool: ...
    def start(self) -> None: ...
    def wait_healthy(self) -> None: ...
    def stop(self) -> bool: ...
    def provision(self) -> None: ...
    def endpoint(self) -> str: ...


@dataclass(frozen=True)
class ServiceStatus:
    """What `status` (and `up`, `down`) report for one service."""

    name: str
    running: bool
    healthy: bool
    endpoint: str
    log_path: Path
    version: str = ""
    detail: str = ""
    pid: int | None = None

    @property
    def state(self) -> str:
        if self.healthy:
            return "healthy"
        return "running, not healthy" if self.running else "stopped"

    def describe(self) -> str:
        version = f" {self.version}" if self.version else ""
        extra = ", ".join(
            part for part in (f"pid {self.pid}" if self.pid else "", self.detail) if part
        )
        extra = f" ({extra})" if extra else ""
        return f"{self.name}{version}: {self.state}{extra} - {self.endpoint} - log {self.log_path}"


def _services(settings: Settings) -> dict[str, Service]:
    return {
        "postgres": Postgres(settings),
        "minio": MinIO(settings),
        "nessie": Nessie(settings),
        "trino": Trino(settings),
    }


def _versions(settings: Settings) -> dict[str, str]:
    return {
        "postgres": "",
        "minio": settings.stack.minio_version,
        "nessie": settings.stack.nessie_version,
        "trino": settings.stack.trino_version,
    }


def _with_dependencies(names: Iterable[str]) -> list[str]:
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name not in SERVICES:
            raise StackError(f"unknown service {name!r} (known: {', '.join(SERVICES)})")
        wanted.add(name)
        for dependency in SERVICES[name]:
            add(dependency)

    for name in names:
        add(name)
    return [name for name in SERVICES if name in wanted]


def _status(service: Service, version: str, detail: str = "") -> ServiceStatus:
    running = service.is_running()
    try:
        healthy = running and service.healthy()
    except Exception as exc:  # a failing probe means "not healthy", and says why
        healthy, detail = False, detail or f"health check failed: {exc}"
    return ServiceStatus(
        service.name,
        running,
        healthy,
        service.endpoint(),
        service.log_path,
        version,
        detail,
        service.pid(),
    )


def _install(services: list[Service]) -> None:
    """Install (download, verify, build, unpack) every service at once: on a cold machine the
    Maven downloads then overlap the MinIO build. Each install is a no-op once cached."""
    if not services:
        return
    errors: list[tuple[str, Exception]] = []
    with ThreadPoolExecutor(max_workers=len(services), thread_name_prefix="stack-install") as pool:
        futures = {pool.submit(service.install): service.name for service in services}
        for future in as_completed(futures):
            try:
                future.result()
            except Exception as exc:
                errors.append((futures[future], exc))
    if errors:
        first = errors[0][1]
        if len(errors) == 1 and isinstance(first, StackError):
            raise first
        raise StackError("; ".join(f"installing {n} failed: {e}" for n, e in errors)) from first


def up(settings: Settings, services: Iterable[str] | None = None) -> list[ServiceStatus]:
    """Install what is missing, start what is not running, wait until healthy, provision; idempotent."""
    names = _with_dependencies(services or SERVICES)
    all_services = _services(settings)
    versions = _versions(settings)
    settings.stack_home.mkdir(parents=True, exist_ok=True)
    settings.stack_home.chmod(0o755)  # the postgres user walks through it
    _install([all_services[name] for name in names if not all_services[name].is_running()])
    statuses: list[ServiceStatus] = []
    for name in names:
        service = all_services[name]
        started = time.monotonic()
        if service.is_running():
            # ours and running: leave it alone, but wait if it is still starting up
            service.wait_healthy()
            detail = "already running"
        else:
            service.start()
            service.wait_healthy()
            detail = f"started in {time.monotonic() - started:.0f}s"
        service.provision()
        log.info("%s is healthy (%s)", name, detail)
        statuses.append(_status(service, versions[name], detail))
    return statuses


def down(settings: Settings, services: Iterable[str] | None = None) -> list[ServiceStatus]:
    """Stop the services this stack started (known by their pid files), in reverse order."""
    names = list(services) if services else list(SERVICES)
    for name in names:
        if name not in SERVICES:
            raise StackError(f"unknown service {name!r} (known: {', '.join(SERVICES)})")
    all_services = _services(settings)
    versions = _versions(settings)
    statuses: list[ServiceStatus] = []
    for name in reversed(list(SERVICES)):
        if name not in names:
            continue
        service = all_services[name]
        stopped = service.stop()
        statuses.append(
            _status(service, versions[name], "stopped now" if stopped else "was not running")
        )
    return list(reversed(statuses))


def status(settings: Settings) -> list[ServiceStatus]:
    """Whether each service is running and healthy, where it listens, where its log is."""
    all_services = _services(settings)
    versions = _versions(settings)
    return [_status(all_services[name], versions[name]) for name in SERVICES]


def logs(settings: Settings, service: str, lines: int = 100) -> str:
    """The last `lines` lines of a service's log."""
    if service not in SERVICES:
        raise StackError(f"unknown service {service!r} (known: {', '.join(SERVICES)})")
    path = _services(settings)[service].log_path
    if not path.exists():
        raise StackError(f"{service} has no log yet ({path}): it has not been started")
    return tail(path, lines)
