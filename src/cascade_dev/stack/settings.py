"""Settings of the local service stack, read from the environment (and `.env`) like `cascade.config`.

Every variable has a development default, so `cascade stack up` works on a fresh machine with no
configuration. The same names are what the shipped configuration under `deploy/config/` reads
(see docs/STACK.md), so a compose file or a Helm chart sets the same variables.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cascade.config import Settings, load_settings

# Versions this machine's registries serve (checked 2026-11-26; see docs/STACK.md for why these):
# Maven Central here serves the Nessie runner jar only at 0.99.0 (0.105+ answer 404), and Trino's
# server tarballs up to 476 (477+ answer 404). MinIO is a Go module pseudo-version: release
# RELEASE.2025-09-07T16-13-09Z (the newest release tag the Go module proxy serves).
DEFAULT_NESSIE_VERSION = "0.99.0"
DEFAULT_TRINO_VERSION = "476"
DEFAULT_MINIO_VERSION = "v0.0.0-20250907161309-07c3a429bfed"

#: The one bucket of the lake, and the prefixes inside it. Fixed: deploy/config refers to them.
LAKE_BUCKET = "lake"
LAKE_PREFIXES = ("warehouse/", "stage/")

_REPO_DEPLOY_DIR = Path(__file__).resolve().parents[3] / "deploy"


class StackSettings(BaseSettings):
    """Where the stack lives, which ports it listens on, which versions it runs, its dev secrets."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # ---- where things go -----------------------------------------------------------------------
    cascade_home: Path = Path(".cascade")
    #: State of the running stack: data directories, logs, pid files. Default: <CASCADE_HOME>/stack.
    cascade_stack_home: Path | None = None
    #: Downloads, builds and unpacked servers, shared by every checkout. Outside the repository.
    cascade_download_cache: Path = Path("~/.cache/cascade/downloads")
    #: The shared service configuration (Trino catalogs, Nessie properties). Default: the repo's.
    cascade_deploy_dir: Path = _REPO_DEPLOY_DIR
    #: Maven repository the Nessie jar and Trino tarball come from.
    maven_repository_url: str = "https://repo1.maven.org/maven2"

    # ---- network -------------------------------------------------------------------------------
    #: Every service listens on this loopback address only.
    stack_host: str = "127.0.0.1"
    postgres_port: int = Field(default=55432, ge=1, le=65535)
    minio_port: int = Field(default=9000, ge=1, le=65535)
    minio_console_port: int = Field(default=9001, ge=1, le=65535)
    nessie_port: int = Field(default=19120, ge=1, le=65535)
    #: Nessie's Quarkus management port (health, metrics); Quarkus' default 9000 clashes with MinIO.
    nessie_management_port: int = Field(default=19121, ge=1, le=65535)
    trino_port: int = Field(default=8080, ge=1, le=65535)

    # ---- versions ------------------------------------------------------------------------------
    nessie_version: str = DEFAULT_NESSIE_VERSION
    trino_version: str = DEFAULT_TRINO_VERSION
    minio_version: str = DEFAULT_MINIO_VERSION
    #: Trino plugins unpacked from the server tarball: the catalogs under deploy/config need these
    #: (the postgresql connector needs the Geometry type of the geospatial plugin).
    trino_plugins: str = "iceberg,postgresql,geospatial"

    # ---- sizing (2 cores, 24 GB) ---------------------------------------------------------------
    trino_max_heap: str = "3G"
    trino_query_max_memory: str = "1GB"
    nessie_max_heap: str = "1G"

    # ---- Java ----------------------------------------------------------------------------------
    #: Trino 476 needs Java 24+: the Temurin 25 JDK these machines have.
    trino_java_home: Path = Path("/usr/lib/jvm/temurin-25-jdk-amd64")
    #: Nessie 0.99's server classes are built for Java 21: the machine's default 17 cannot run it.
    nessie_java_home: Path = Path("/usr/lib/jvm/temurin-25-jdk-amd64")

    # ---- credentials (development defaults; set real ones anywhere else) ------------------------
    postgres_password: SecretStr = SecretStr("cascade-postgres")
    nessie_db_password: SecretStr = SecretStr("cascade-nessie")
    dagster_db_password: SecretStr = SecretStr("cascade-dagster")
    superset_db_password: SecretStr = SecretStr("cascade-superset")
    marts_db_password: SecretStr = SecretStr("cascade-marts")
    bi_reader_password: SecretStr = SecretStr("cascade-bi-reader")
    minio_root_user: SecretStr = SecretStr("cascade")
    minio_root_password: SecretStr = SecretStr("cascade-minio-secret")
    s3_region: str = "us-east-1"

    # ---- behaviour -----------------------------------------------------------------------------
    #: How long `up` waits for one service to become healthy.
    stack_start_timeout_seconds: float = Field(default=240.0, gt=0)
    #: How long `down` waits for one service to exit after SIGTERM before SIGKILL.
    stack_stop_timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("minio_root_password")
    @classmethod
    def _minio_password_length(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 8:
            raise ValueError(
                "MINIO_ROOT_PASSWORD must be at least 8 characters (MinIO refuses shorter)"
            )
        return value

    # ---- derived -------------------------------------------------------------------------------
    @property
    def stack_home(self) -> Path:
        return (self.cascade_stack_home or self.cascade_home / "stack").expanduser().resolve()

    @property
    def trino_plugin_names(self) -> list[str]:
        return sorted({part.strip() for part in self.trino_plugins.split(",") if part.strip()})

    @property
    def download_cache(self) -> Path:
        return self.cascade_download_cache.expanduser().resolve()

    @property
    def deploy_dir(self) -> Path:
        return self.cascade_deploy_dir.expanduser().resolve()

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.stack_host}:{self.minio_port}"

    @property
    def nessie_uri(self) -> str:
        """Nessie's base URL; the Iceberg REST catalog of a branch is `{nessie_uri}/iceberg/{branch}`."""
        return f"http://{self.stack_host}:{self.nessie_port}"

    @property
    def trino_uri(self) -> str:
        return f"http://{self.stack_host}:{self.trino_port}"

    def iceberg_rest_uri(self, branch: str = "main") -> str:
        return f"{self.nessie_uri}/iceberg/{branch}"

    def s3_properties(self) -> dict[str, str]:
        """PyIceberg FileIO properties for the lake bucket on the local S3 endpoint."""
        return {
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": self.minio_root_user.get_secret_value(),
            "s3.secret-access-key": self.minio_root_password.get_secret_value(),
            "s3.region": self.s3_region,
            "s3.path-style-access": "true",
        }

    def lakehouse_settings(self, ref: str = "main", **overrides: object) -> Settings:
        """Cascade's `lakehouse` profile pointed at this stack, on Nessie branch `ref`."""
        return load_settings(
            cascade_profile="lakehouse",
            nessie_uri=self.nessie_uri,
            nessie_ref=ref,
            s3_endpoint=self.s3_endpoint,
            s3_access_key_id=self.minio_root_user,
            s3_secret_access_key=self.minio_root_password,
            s3_region=self.s3_region,
            trino_host=self.stack_host,
            trino_port=self.trino_port,
            **overrides,
        )

    def postgres_dsn(self, database: str, user: str, password: SecretStr) -> str:
        return f"postgresql://{user}:{password.get_secret_value()}@{self.stack_host}:{self.postgres_port}/{database}"


def load_stack_settings(**overrides: object) -> StackSettings:
    """Build stack settings from the environment; validation errors become one clear message."""
    from pydantic import ValidationError

    from cascade.config import configuration_error

    try:
        return StackSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise configuration_error(exc, "stack configuration") from None
