"""Trino, from its server tarball on Maven Central, as one node (coordinator and worker).

Only the plugins the catalogs need are unpacked from the tarball (TRINO_PLUGINS, default iceberg and
postgresql). The catalogs themselves are the files in deploy/config/trino/catalog, shared with
compose and Helm: Trino reads them in place and fills `${ENV:VAR}` from the environment set here.
The node's own settings (memory, ports, data directory) are local-process matters, written to the
stack home on every start. Sized for 2 cores and 24 GB: a 3 GB heap and 1 GB per query by default.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_result, wait_fixed

from cascade.branching import BRANCHES
from cascade.config import Settings
from cascade_dev.stack.downloads import MavenArtifact, fetch_maven
from cascade_dev.stack.process import (
    ManagedProcess,
    ProcessService,
    StackError,
    port_in_use,
)
from cascade_dev.stack.settings import service_config_dir

log = logging.getLogger(__name__)

JVM_OPTIONS = (
    "-server",
    "-XX:InitialRAMPercentage=10",
    "-XX:G1HeapRegionSize=32M",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:ReservedCodeCacheSize=256M",
    "-XX:PerMethodRecompilationCutoff=10000",
    "-XX:PerBytecodeRecompilationCutoff=10000",
    "-Djdk.attach.allowAttachSelf=true",
    "-Djdk.nio.maxCachedBufferSize=2000000",
    "-Dfile.encoding=UTF-8",
    "-XX:+EnableDynamicAgentLoading",
    "-XX:ActiveProcessorCount=2",
)


class TrinoQueryError(StackError):
    """Trino answered a statement with an error."""


def run_query(
    uri: str,
    sql: str,
    *,
    user: str = "cascade",
    timeout: float = 120.0,
    transport: httpx.BaseTransport | None = None,
) -> list[list[Any]]:
    """Run one statement through Trino's HTTP protocol and return all its rows.

    Small and dependency-free on purpose (the health check and the tests need nothing more);
    applications can use the `trino` client package instead.
    """
    headers = {"X-Trino-User": user, "X-Trino-Source": "cascade-stack"}
    deadline = time.monotonic() + timeout
    rows: list[list[Any]] = []
    with httpx.Client(timeout=30, transport=transport) as client:
        statement = client.build_request(
            "POST", f"{uri}/v1/statement", content=sql.encode(), headers=headers
        )
        response = _send_while_unavailable(client, statement, deadline)
        while True:
            response.raise_for_status()
            payload = response.json()
            if "error" in payload:
                error = payload["error"]
                raise TrinoQueryError(f"Trino: {error.get('errorName')}: {error.get('message')}")
            rows.extend(payload.get("data") or [])
            next_uri = payload.get("nextUri")
            if not next_uri:
                return rows
            if time.monotonic() > deadline:
                client.delete(next_uri, headers=headers)
                raise TrinoQueryError(f"Trino: no result after {timeout:.0f}s for: {sql[:200]}")
            response = _send_while_unavailable(
                client, client.build_request("GET", next_uri, headers=headers), deadline
            )


def _send_while_unavailable(
    client: httpx.Client, request: httpx.Request, deadline: float
) -> httpx.Response:
    """Send `request`, and again every 0.2 s while Trino answers 502/503 (still starting).

    Trino's protocol asks for the same request again on these; by `deadline` the last answer is
    returned as it is (for `raise_for_status`).
    """
    sending = Retrying(
        retry=retry_if_result(lambda response: response.status_code in (502, 503)),
        stop=lambda state: time.monotonic() > deadline,
        wait=wait_fixed(0.2),
        retry_error_callback=_last_answer,
    )
    return sending(client.send, request)


def _last_answer(state: RetryCallState) -> httpx.Response:
    assert state.outcome is not None
    answer: httpx.Response = state.outcome.result()
    return answer


class Trino(ProcessService):
    name = "trino"
    label = "Trino"
    health_interval = 1.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.stack_home / "trino"
        self.etc_dir = self.home / "etc"
        self.data_dir = self.home / "data"
        self.log_path = settings.stack_home / "logs" / "trino.log"
        self.process = ManagedProcess(
            "trino", settings.stack_home / "run" / "trino.json", self.log_path
        )
        self.artifact = MavenArtifact(
            "io.trino", "trino-server", settings.stack.trino_version, "tar.gz"
        )
        self.install_dir = (
            settings.stack.download_cache / "trino" / f"trino-server-{settings.stack.trino_version}"
        )
        self.catalog_dir = service_config_dir(settings) / "trino" / "catalog"

    # ---- install -------------------------------------------------------------------------------
    def install(self) -> Path:
        """Unpack the server (lib, bin) and the wanted plugins from the verified tarball; idempotent."""
        marker = self.install_dir / ".cascade-unpacked.json"
        wanted = self.settings.stack.trino_plugin_names
        if marker.exists():
            unpacked = json.loads(marker.read_text())
            if set(wanted) <= set(unpacked.get("plugins", [])):
                return self.install_dir
        tarball = fetch_maven(
            self.artifact,
            self.settings.stack.maven_repository_url,
            self.settings.stack.download_cache,
        )
        staging = self.install_dir.with_name(self.install_dir.name + ".unpacking")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        top = f"trino-server-{self.settings.stack.trino_version}/"
        keep_plugins = tuple(f"{top}plugin/{name}/" for name in wanted)
        log.info(
            "unpacking Trino %s with plugins %s",
            self.settings.stack.trino_version,
            ", ".join(wanted),
        )

        def wanted_member(name: str) -> bool:
            if not name.startswith(top):
                return False
            return (
                not name.startswith(f"{top}plugin/")
                or name.rstrip("/") == f"{top}plugin"
                or name.startswith(keep_plugins)
            )

        # Plugins share jars as hard links, often to a copy inside a plugin we skip: a first pass
        # finds those link targets, the second pass unpacks them too (and they are removed after).
        with tarfile.open(tarball, "r:gz") as archive:
            link_targets = {m.linkname for m in archive if m.islnk() and wanted_member(m.name)}
        found_plugins: set[str] = set()
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:
                if not (wanted_member(member.name) or member.name in link_targets):
                    continue
                archive.extract(member, staging, filter="data")
                for plugin in wanted:
                    if member.name.startswith(f"{top}plugin/{plugin}/"):
                        found_plugins.add(plugin)
        missing = set(wanted) - found_plugins
        if missing:
            shutil.rmtree(staging, ignore_errors=True)
            raise StackError(
                f"Trino {self.settings.stack.trino_version} has no plugin(s) {', '.join(sorted(missing))}"
            )
        unpacked = staging / top.rstrip("/")
        for plugin_dir in (unpacked / "plugin").iterdir():
            if plugin_dir.name not in wanted:
                shutil.rmtree(
                    plugin_dir
                )  # only link targets were unpacked there; the links keep the data
        (unpacked / ".cascade-unpacked.json").write_text(json.dumps({"plugins": wanted}))
        shutil.rmtree(self.install_dir, ignore_errors=True)
        unpacked.replace(self.install_dir)
        shutil.rmtree(staging, ignore_errors=True)
        return self.install_dir

    # ---- configuration -------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The variables the catalog files in deploy/config/trino/catalog read with ${ENV:...}."""
        s = self.settings
        return {
            "NESSIE_URI": s.stack.nessie_uri,
            "S3_ENDPOINT": s.stack.s3_endpoint,
            "S3_REGION": s.s3.region,
            "S3_ACCESS_KEY_ID": s.stack.minio_root_user.get_secret_value(),
            "S3_SECRET_ACCESS_KEY": s.stack.minio_root_password.get_secret_value(),
            "POSTGRES_HOST": s.stack.host,
            "POSTGRES_PORT": str(s.stack.postgres_port),
            "MARTS_DB_PASSWORD": s.stack.marts_db_password.get_secret_value(),
        }

    def _write_etc(self) -> None:
        s = self.settings
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        node_id_file = self.home / "node-id"
        if not node_id_file.exists():
            node_id_file.write_text(str(uuid.uuid4()))
        files = {
            "node.properties": [
                "node.environment=cascade",
                f"node.id={node_id_file.read_text().strip()}",
                f"node.data-dir={self.data_dir}",
                f"node.bind-ip={s.stack.host}",
                f"node.internal-address={s.stack.host}",
            ],
            "jvm.config": [*JVM_OPTIONS, f"-Xmx{s.stack.trino_max_heap}"],
            "config.properties": [
                "coordinator=true",
                "node-scheduler.include-coordinator=true",
                f"http-server.http.port={s.trino.port}",
                f"discovery.uri=http://{s.stack.host}:{s.trino.port}",
                f"catalog.config-dir={self.catalog_dir}",
                f"query.max-memory={s.stack.trino_query_max_memory}",
                f"query.max-memory-per-node={s.stack.trino_query_max_memory}",
                "task.concurrency=2",
                "task.max-worker-threads=4",
            ],
            "log.properties": ["io.trino=INFO"],
        }
        for name, lines in files.items():
            (self.etc_dir / name).write_text(
                "# Written by `cascade stack up`; edits are overwritten.\n"
                + "\n".join(lines)
                + "\n"
            )

    # ---- lifecycle -----------------------------------------------------------------------------
    def info(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"{self.settings.stack_trino_uri}/v1/info", timeout=5)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        info: dict[str, Any] = response.json()
        return info

    def healthy(self) -> bool:
        if not self.is_running():
            return False
        info = self.info()
        if info is None or info.get("starting", True):
            return False
        # Ready means a query on each catalog gets a node: right after a start, Trino answers
        # `SELECT 1` before the node announces its catalogs (NO_NODES_AVAILABLE on a table scan).
        for catalog in sorted(path.stem for path in self.catalog_dir.glob("*.properties")):
            run_query(
                self.settings.stack_trino_uri,
                f"SELECT count(*) FROM {catalog}.information_schema.schemata",
                timeout=30,
            )
        return True

    def start(self) -> None:
        install_dir = self.install()
        if not self.catalog_dir.is_dir():
            raise StackError(
                f"Trino's catalogs are missing: {self.catalog_dir} (set CASCADE_DEPLOY_DIR)"
            )
        if port_in_use(self.settings.stack.host, self.settings.trino.port):
            raise StackError(
                f"port {self.settings.trino.port} is taken by another process: set TRINO_PORT to a free port"
            )
        java_home = self.settings.stack.trino_java_home
        if not (java_home / "bin" / "java").exists():
            raise StackError(
                f"Trino {self.settings.stack.trino_version} needs Java 24 or newer: no JDK at {java_home} (set TRINO_JAVA_HOME)"
            )
        self._write_etc()
        argv = [
            str(install_dir / "bin" / "launcher"),
            "run",
            f"--etc-dir={self.etc_dir}",
            f"--data-dir={self.data_dir}",
        ]
        env = {
            "PATH": f"{java_home / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.home),
            "JAVA_HOME": str(java_home),
            "LANG": "C.UTF-8",
            **self.environment(),
        }
        log.info(
            "starting Trino %s on %s",
            self.settings.stack.trino_version,
            self.settings.stack_trino_uri,
        )
        self.process.start(argv, env=env, cwd=self.home)

    def provision(self) -> None:
        """Nothing to create: the catalogs come from deploy/config/trino/catalog."""

    def endpoint(self) -> str:
        catalogs = ", ".join([*(b.trino_catalog for b in BRANCHES), "postgres"])
        return f"{self.settings.stack_trino_uri} (catalogs: {catalogs})"
