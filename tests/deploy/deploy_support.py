"""Paths, the test environment and small wrappers around the deployment tools (tests/deploy)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
CHART = REPO / "deploy" / "helm" / "cascade"
CONFIG = REPO / "deploy" / "config"
SETUP = REPO / "deploy" / "setup"
INSTALL = REPO / "deploy" / "tools" / "install.sh"
INSTALL_TIMEOUT_SECONDS = 1800

# A complete environment for the compose file: every value distinct, so the tests can tell
# where each one lands.
TEST_ENV: dict[str, str] = {
    "POSTGRES_PASSWORD": "t-postgres-0001",
    "NESSIE_DB_PASSWORD": "t-nessie-0002",
    "DAGSTER_DB_PASSWORD": "t-dagster-0003",
    "SUPERSET_DB_PASSWORD": "t-superset-0004",
    "MARTS_DB_PASSWORD": "t-marts-0005",
    "BI_READER_PASSWORD": "t-bi-reader-0006",
    "MINIO_ROOT_USER": "t-minio-user-0007",
    "MINIO_ROOT_PASSWORD": "t-minio-secret-0008",
    "SUPERSET_SECRET_KEY": "t-superset-key-0009",
    "SUPERSET_ADMIN_PASSWORD": "t-superset-admin-0010",
}


def install_tool(tool: str) -> dict[str, str]:
    """Run deploy/tools/install.sh TOOL; return its NAME=VALUE lines. Fails loudly."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", str(INSTALL), tool],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"deploy/tools/install.sh {tool} took over {exc.timeout}s", pytrace=False)
    if result.returncode != 0:
        pytest.fail(
            f"deploy/tools/install.sh {tool} failed (exit {result.returncode}); CI needs it:\n"
            f"{result.stderr[-4000:]}",
            pytrace=False,
        )
    took = time.monotonic() - started
    if took > 5:
        print(f"\ndeploy/tools/install.sh {tool} took {took:.0f}s")
    values = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if re.match(r"^[A-Z0-9_]+=", line)
    )
    return values


@dataclass(frozen=True)
class Compose:
    binary: Path
    docker_config: Path

    def run(
        self, *args: str, env_file: Path, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose --env-file ENV_FILE -f docker-compose.yml ARGS` in a clean environment.

        Through the docker CLI when it is there (the plugin from DOCKER_CONFIG), else the plugin
        binary standalone (it is the same program). Only PATH and HOME are passed on, so nothing
        in the developer's environment leaks into the interpolation.
        """
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
        }
        env["DOCKER_CONFIG"] = str(self.docker_config)
        env.update(extra_env or {})
        docker = shutil.which("docker")
        argv = [docker, "compose"] if docker else [str(self.binary)]
        argv += [
            "--project-directory",
            str(REPO),
            "--env-file",
            str(env_file),
            "-f",
            str(COMPOSE_FILE),
            *args,
        ]
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=120, check=False
        )

    def config(self, *profiles: str, env_file: Path) -> dict[str, Any]:
        args = [arg for profile in profiles for arg in ("--profile", profile)]
        result = self.run(*args, "config", "--format", "json", env_file=env_file)
        assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
        loaded: dict[str, Any] = json.loads(result.stdout)
        return loaded


def write_env(path: Path, values: Mapping[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": "/tmp/cascade-helm/cache",
            "HELM_CONFIG_HOME": "/tmp/cascade-helm/config",
            "HELM_DATA_HOME": "/tmp/cascade-helm/data",
        }
        return subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    def template(self, *args: str, release: str = "cascade") -> str:
        result = self.run("template", release, str(CHART), *args)
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return result.stdout

    def manifests(self, *args: str, release: str = "cascade") -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(self.template(*args, release=release)) if doc]


@dataclass(frozen=True)
class Kubeconform:
    binary: Path
    schemas: Path

    def validate(self, manifests: str, kubernetes_version: str) -> dict[str, Any]:
        """Validate with the offline strict schemas; return kubeconform's JSON report."""
        location = str(self.schemas) + (
            "/{{.NormalizedKubernetesVersion}}-local{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json"
        )
        result = subprocess.run(
            [
                str(self.binary),
                "-strict",
                "-summary",
                "-output",
                "json",
                "-kubernetes-version",
                kubernetes_version,
                "-schema-location",
                location,
                "-",
            ],
            input=manifests,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        try:
            report: dict[str, Any] = json.loads(result.stdout)
        except json.JSONDecodeError:
            pytest.fail(
                f"kubeconform gave no report (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        report["exit_code"] = result.returncode
        return report


def kubernetes_versions() -> list[str]:
    """KUBERNETES_SCHEMA_VERSIONS from deploy/tools/versions.env."""
    text = (REPO / "deploy" / "tools" / "versions.env").read_text()
    match = re.search(r'^KUBERNETES_SCHEMA_VERSIONS="([^"]+)"', text, re.MULTILINE)
    assert match, "versions.env has no KUBERNETES_SCHEMA_VERSIONS"
    return match.group(1).split()


# ---- the shared configuration --------------------------------------------------------------------
def config_variables(text: str, pattern: str) -> tuple[set[str], set[str]]:
    """(required, optional) variable names of a config file's expressions."""
    required: set[str] = set()
    optional: set[str] = set()
    for name, follow in re.findall(pattern, text):
        (optional if follow == ":" else required).add(name)
    return required, optional - required


def _properties_values(path: Path) -> str:
    """A .properties file without its comments."""
    return "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith(("#", "!"))
    )


def trino_catalog_variables() -> set[str]:
    names: set[str] = set()
    for path in (CONFIG / "trino" / "catalog").glob("*.properties"):
        names |= set(re.findall(r"\$\{ENV:([A-Za-z_][A-Za-z0-9_]*)\}", _properties_values(path)))
    return names


def nessie_required_variables() -> set[str]:
    text = _properties_values(CONFIG / "nessie" / "application.properties")
    required, _ = config_variables(text, r"\$\{([A-Z][A-Z0-9_]*)(:|\})")
    return required


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|DATABASE_URL", re.IGNORECASE)
