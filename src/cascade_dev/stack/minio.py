"""MinIO, built from its Go module at a pinned release, serving the lake bucket from the stack home.

`go install github.com/minio/minio@<version>` runs once; the binary, the module cache and the
build cache live in the download cache. The Go module proxy and checksum database verify every
module (go.sum), which is the download check here.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
from pyarrow import fs

from cascade.config import Settings
from cascade_dev.stack.process import (
    ManagedProcess,
    ProcessService,
    StackError,
    port_in_use,
)
from cascade_dev.stack.settings import LAKE_BUCKET, LAKE_PREFIXES

log = logging.getLogger(__name__)

MODULE = "github.com/minio/minio"


def _go() -> str:
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if found is None:
        raise StackError("building MinIO needs the Go toolchain (`go`), which is not on PATH")
    return found


class MinIO(ProcessService):
    name = "minio"
    label = "MinIO"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.stack_home / "minio" / "data"
        self.certs_dir = settings.stack_home / "minio" / "certs"
        self.log_path = settings.stack_home / "logs" / "minio.log"
        self.process = ManagedProcess(
            "minio", settings.stack_home / "run" / "minio.json", self.log_path
        )
        cache = settings.stack.download_cache
        self.binary = cache / "minio" / settings.stack.minio_version / "minio"
        self.go_env = {
            "GOMODCACHE": str(cache / "go" / "mod"),
            "GOCACHE": str(cache / "go" / "build"),
            "GOPATH": str(cache / "go" / "path"),
            "GOTOOLCHAIN": "local",  # MinIO's go.mod asks for go 1.24: the machine's 1.26 builds it
            "CGO_ENABLED": "0",
        }

    # ---- install -------------------------------------------------------------------------------
    def install(self) -> None:
        if self.binary.exists():
            return
        gobin = self.binary.parent / "build"
        shutil.rmtree(gobin, ignore_errors=True)
        gobin.mkdir(parents=True)
        target = f"{MODULE}@{self.settings.stack.minio_version}"
        log.info("building MinIO (go install %s); the first build takes about 5 minutes", target)
        started = time.monotonic()
        argv = ["nice", "-n", "10", _go(), "install", "-trimpath", "-ldflags", "-s -w", target]
        env = {**os.environ, **self.go_env, "GOBIN": str(gobin)}
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, check=False, cwd=gobin
        )
        if result.returncode != 0:
            raise StackError(f"go install {target} failed:\n{result.stderr[-4000:]}")
        (gobin / "minio").replace(self.binary)
        shutil.rmtree(gobin, ignore_errors=True)
        log.info("built MinIO in %.0fs: %s", time.monotonic() - started, self.binary)

    # ---- lifecycle -----------------------------------------------------------------------------
    def healthy(self) -> bool:
        if not self.is_running():
            return False
        for probe in ("live", "ready"):
            response = httpx.get(
                f"{self.settings.stack.s3_endpoint}/minio/health/{probe}", timeout=3
            )
            if response.status_code != 200:
                return False
        return True

    def start(self) -> None:
        for port, variable in (
            (self.settings.stack.minio_port, "MINIO_PORT"),
            (self.settings.stack.minio_console_port, "MINIO_CONSOLE_PORT"),
        ):
            if port_in_use(self.settings.stack.host, port):
                raise StackError(
                    f"port {port} is taken by another process: set {variable} to a free port"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        host = self.settings.stack.host
        argv = [
            str(self.binary),
            "server",
            str(self.data_dir),
            "--address",
            f"{host}:{self.settings.stack.minio_port}",
            "--console-address",
            f"{host}:{self.settings.stack.minio_console_port}",
            "--certs-dir",
            str(self.certs_dir),
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.data_dir.parent),
            "MINIO_ROOT_USER": self.settings.stack.minio_root_user.get_secret_value(),
            "MINIO_ROOT_PASSWORD": self.settings.stack.minio_root_password.get_secret_value(),
            "MINIO_REGION": self.settings.s3.region,
            "MINIO_UPDATE": "off",
            "MINIO_BROWSER": "on",
        }
        log.info("starting MinIO on %s", self.settings.stack.s3_endpoint)
        self.process.start(argv, env=env, cwd=self.data_dir.parent)

    # ---- provisioning --------------------------------------------------------------------------
    def filesystem(self) -> fs.S3FileSystem:
        return fs.S3FileSystem(
            access_key=self.settings.stack.minio_root_user.get_secret_value(),
            secret_key=self.settings.stack.minio_root_password.get_secret_value(),
            endpoint_override=f"{self.settings.stack.host}:{self.settings.stack.minio_port}",
            scheme="http",
            region=self.settings.s3.region,
            allow_bucket_creation=True,
        )

    def provision(self) -> None:
        """Create the lake bucket and its prefixes (empty `prefix/` marker objects); idempotent."""
        s3 = self.filesystem()
        if s3.get_file_info(LAKE_BUCKET).type == fs.FileType.NotFound:
            log.info("creating bucket s3://%s", LAKE_BUCKET)
            s3.create_dir(LAKE_BUCKET)
        for prefix in LAKE_PREFIXES:
            path = f"{LAKE_BUCKET}/{prefix.rstrip('/')}"
            if s3.get_file_info(path).type == fs.FileType.NotFound:
                s3.create_dir(path)

    def endpoint(self) -> str:
        return f"{self.settings.stack.s3_endpoint} (console http://{self.settings.stack.host}:{self.settings.stack.minio_console_port})"
