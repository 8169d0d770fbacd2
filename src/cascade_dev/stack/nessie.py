"""Nessie, from its runner jar on Maven Central: version store on PostgreSQL, Iceberg REST on MinIO.

The server's settings live in deploy/config/nessie/application.properties (shared with compose and
Helm); this module only supplies the environment those settings read. After start it makes sure
the branches `main` (Nessie's default branch) and `dev` exist, through Nessie's REST API v2.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx

from cascade.branching import BRANCHES, MAIN
from cascade.config import Settings
from cascade.exceptions import LakeError
from cascade.lake.branches import ensure_branches
from cascade.lake.nessie import NessieClient
from cascade_dev.stack.downloads import MavenArtifact, fetch_maven
from cascade_dev.stack.process import (
    ManagedProcess,
    ProcessService,
    StackError,
    port_in_use,
)
from cascade_dev.stack.settings import service_config_dir

log = logging.getLogger(__name__)


def _java(java_home: Path) -> str:
    java = java_home / "bin" / "java"
    if not java.exists():
        raise StackError(f"no Java at {java} (set NESSIE_JAVA_HOME / TRINO_JAVA_HOME to a JDK)")
    return str(java)


class Nessie(ProcessService):
    name = "nessie"
    label = "Nessie"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.work_dir = settings.stack_home / "nessie"
        self.log_path = settings.stack_home / "logs" / "nessie.log"
        self.process = ManagedProcess(
            "nessie", settings.stack_home / "run" / "nessie.json", self.log_path
        )
        self.artifact = MavenArtifact(
            "org.projectnessie.nessie",
            "nessie-quarkus",
            settings.stack.nessie_version,
            "jar",
            "runner",
        )
        self.config_file = service_config_dir(settings) / "nessie" / "application.properties"

    def install(self) -> Path:
        return fetch_maven(
            self.artifact,
            self.settings.stack.maven_repository_url,
            self.settings.stack.download_cache,
        )

    def environment(self) -> dict[str, str]:
        """The variables deploy/config/nessie/application.properties reads."""
        s = self.settings
        return {
            "NESSIE_PORT": str(s.stack.nessie_port),
            "NESSIE_MANAGEMENT_PORT": str(s.stack.nessie_management_port),
            "NESSIE_JDBC_URL": f"jdbc:postgresql://{s.stack.host}:{s.stack.postgres_port}/nessie",
            "NESSIE_DB_USER": "nessie",
            "NESSIE_DB_PASSWORD": s.stack.nessie_db_password.get_secret_value(),
            "S3_ENDPOINT": s.stack.s3_endpoint,
            "S3_REGION": s.s3.region,
            "S3_ACCESS_KEY_ID": s.stack.minio_root_user.get_secret_value(),
            "S3_SECRET_ACCESS_KEY": s.stack.minio_root_password.get_secret_value(),
            # local processes listen on loopback only (the images listen on all interfaces)
            "QUARKUS_HTTP_HOST": s.stack.host,
            "QUARKUS_MANAGEMENT_HOST": s.stack.host,
        }

    def healthy(self) -> bool:
        if not self.is_running():
            return False
        ready = httpx.get(
            f"http://{self.settings.stack.host}:{self.settings.stack.nessie_management_port}/q/health/ready",
            timeout=5,
        )
        if ready.status_code != 200:
            return False
        with NessieClient(self.settings.stack.nessie_uri, timeout=5) as nessie:
            try:
                nessie.config()
            except LakeError:
                return False
        return True

    def start(self) -> None:
        jar = self.install()
        if not self.config_file.exists():
            raise StackError(
                f"Nessie's configuration is missing: {self.config_file} (set CASCADE_DEPLOY_DIR)"
            )
        for port, variable in (
            (self.settings.stack.nessie_port, "NESSIE_PORT"),
            (self.settings.stack.nessie_management_port, "NESSIE_MANAGEMENT_PORT"),
        ):
            if port_in_use(self.settings.stack.host, port):
                raise StackError(
                    f"port {port} is taken by another process: set {variable} to a free port"
                )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        java_home = self.settings.stack.nessie_java_home
        argv = [
            _java(java_home),
            "-Xms256m",
            f"-Xmx{self.settings.stack.nessie_max_heap}",
            "-XX:+ExitOnOutOfMemoryError",
            # quiet the Java 24+ warnings about Netty's and Brotli's native access
            "--enable-native-access=ALL-UNNAMED",
            "--sun-misc-unsafe-memory-access=allow",
            f"-Dquarkus.config.locations={self.config_file.as_uri()}",
            "-jar",
            str(jar),
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work_dir),
            "JAVA_HOME": str(java_home),
            "LANG": "C.UTF-8",
            **self.environment(),
        }
        log.info(
            "starting Nessie %s on %s",
            self.settings.stack.nessie_version,
            self.settings.stack.nessie_uri,
        )
        self.process.start(argv, env=env, cwd=self.work_dir)

    # ---- branches ------------------------------------------------------------------------------
    def provision(self) -> None:
        """Make sure the branch model's branches exist (created from main's head); idempotent."""
        try:
            with NessieClient(self.settings.stack.nessie_uri, timeout=10) as nessie:
                for branch in ensure_branches(nessie):
                    log.info("created Nessie branch %s from %s", branch, MAIN.ref)
        except LakeError as exc:
            raise StackError(str(exc)) from None

    def endpoint(self) -> str:
        refs = ", ".join(b.ref for b in BRANCHES)
        return f"{self.settings.stack.nessie_uri} (Iceberg REST: {self.settings.stack.nessie_uri}/iceberg/<{refs}>)"
