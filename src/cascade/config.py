"""Settings, read from the environment only (12-factor), with a `.env` file read if present.

One `Settings` object holds everything; `get_settings()` builds it once per process. Several
Nightscout sites can be followed at once (a research clinic follows many people): either the
single-site variables `NIGHTSCOUT_URL` / `NIGHTSCOUT_API_SECRET` / `NIGHTSCOUT_TOKEN` /
`NIGHTSCOUT_SITE_ID`, or `NIGHTSCOUT_SITES`, a JSON list of `{"id", "url", "api_secret", "token"}`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from cascade.exceptions import ConfigurationError

SITE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Profile(StrEnum):
    """Which way Cascade runs: embedded on one disk, or on the real lakehouse services."""

    LOCAL = "local"
    LAKEHOUSE = "lakehouse"


class SiteConfig(BaseModel):
    """One Nightscout site (one person). Every ingested row carries its `id` as `site_id`."""

    id: str
    url: str
    api_secret: SecretStr | None = None
    token: SecretStr | None = None

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not SITE_ID_PATTERN.match(value):
            raise ValueError(
                f"site id {value!r} must be lowercase letters, digits, '-' or '_' (max 63 chars)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"site url {value!r} must start with http:// or https://")
        if "@" in value.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError("put credentials in api_secret or token, not in the URL")
        return value.rstrip("/")


class Settings(BaseSettings):
    """Every setting Cascade reads. See `.env.example` for the documented list."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    cascade_profile: Profile = Profile.LOCAL
    cascade_home: Path = Path(".cascade")

    iceberg_catalog_name: str = "cascade"
    iceberg_warehouse_path: Path | None = None
    iceberg_staging_path: Path | None = None

    nightscout_url: str | None = None
    nightscout_api_secret: SecretStr | None = None
    nightscout_token: SecretStr | None = None
    nightscout_site_id: str = "default"
    nightscout_sites: list[SiteConfig] = Field(default_factory=list)

    nightscout_page_size: int = Field(default=1000, ge=10, le=10_000)
    nightscout_timeout_seconds: float = Field(default=30.0, gt=0)
    nightscout_max_retries: int = Field(default=6, ge=0, le=20)
    nightscout_backoff_seconds: float = Field(default=0.5, ge=0)
    nightscout_concurrency: int = Field(default=2, ge=1, le=16)
    nightscout_v1_lookback_hours: float = Field(default=6.0, ge=0)
    ingest_commit_rows: int = Field(default=200_000, ge=1)
    ingest_site_concurrency: int = Field(default=4, ge=1, le=64)

    # lakehouse profile: Nessie's Iceberg REST catalog on a branch, tables and stage on S3.
    # Defaults point at the local stack (`cascade stack up`); versions and ports of the services
    # themselves are the stack's settings (cascade_dev.stack.settings).
    nessie_uri: str = "http://127.0.0.1:19120"
    nessie_ref: str = "main"
    lake_warehouse: str = "s3://lake/warehouse"
    lake_stage_uri: str = "s3://lake/stage"
    s3_endpoint: str = "http://127.0.0.1:9000"
    s3_access_key_id: SecretStr = SecretStr("cascade")
    s3_secret_access_key: SecretStr = SecretStr("cascade-minio-secret")
    s3_region: str = "us-east-1"
    # dbt builds through Trino on this profile: catalog `iceberg` is Nessie's main, `iceberg_dev`
    # its dev branch (deploy/config/trino/catalog). TRINO_PORT is also the local stack's port.
    trino_host: str = "127.0.0.1"
    trino_port: int = Field(default=8080, ge=1, le=65535)
    trino_user: str = "cascade"

    # `cascade publish`: the marts copied into PostgreSQL for BI (see docs/PUBLISH.md).
    marts_database_url: SecretStr | None = None
    marts_schema: str = Field(default="marts", pattern=r"^[a-z_][a-z0-9_]{0,50}$")
    bi_reader_role: str = Field(default="bi_reader", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")
    publish_lock_timeout_seconds: float = Field(default=2.0, gt=0)
    publish_lock_wait_seconds: float = Field(default=120.0, ge=0)

    @model_validator(mode="after")
    def _single_or_many_sites(self) -> Settings:
        if self.nightscout_url and self.nightscout_sites:
            raise ValueError(
                "set either NIGHTSCOUT_URL (one site) or NIGHTSCOUT_SITES (many), not both"
            )
        return self

    @property
    def warehouse_path(self) -> Path:
        return (self.iceberg_warehouse_path or self.cascade_home / "warehouse").resolve()

    @property
    def staging_path(self) -> Path:
        return (self.iceberg_staging_path or self.cascade_home / "stage").resolve()

    @property
    def stage_uri(self) -> str:
        if self.cascade_profile is Profile.LAKEHOUSE:
            return self.lake_stage_uri.rstrip("/")
        return self.staging_path.as_uri()

    @property
    def nessie_catalog_uri(self) -> str:
        """Nessie's Iceberg REST endpoint for the ref: PyIceberg ignores a separate ref parameter."""
        return f"{self.nessie_uri.rstrip('/')}/iceberg/{self.nessie_ref}"

    def s3_properties(self) -> dict[str, str]:
        """PyIceberg FileIO properties for the lake's S3 endpoint (path-style, as MinIO serves)."""
        return {
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": self.s3_access_key_id.get_secret_value(),
            "s3.secret-access-key": self.s3_secret_access_key.get_secret_value(),
            "s3.region": self.s3_region,
            "s3.path-style-access": "true",
        }

    @property
    def catalog_db_path(self) -> Path:
        return (self.cascade_home / "catalog.db").resolve()

    def sites(self) -> list[SiteConfig]:
        """The configured Nightscout sites, whichever way they were given."""
        if self.nightscout_sites:
            return list(self.nightscout_sites)
        if self.nightscout_url:
            return [
                SiteConfig(
                    id=self.nightscout_site_id,
                    url=self.nightscout_url,
                    api_secret=self.nightscout_api_secret,
                    token=self.nightscout_token,
                )
            ]
        return []

    def site(self, site_id: str) -> SiteConfig:
        for site in self.sites():
            if site.id == site_id:
                return site
        known = ", ".join(s.id for s in self.sites()) or "none"
        raise ConfigurationError(
            f"no Nightscout site with id {site_id!r} is configured (known: {known})"
        )


def configuration_error(exc: ValidationError, what: str = "configuration") -> ConfigurationError:
    """One message naming each bad variable and why; never the value (it may be a secret)."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}"
        for err in exc.errors()
    )
    return ConfigurationError(f"invalid {what}: {problems}")


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise configuration_error(exc) from None
    except SettingsError as exc:  # a JSON-valued variable that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "a setting"
        # The decoder's reason gives a position, never the value (it may hold a secret).
        reason = f" ({exc.__cause__})" if exc.__cause__ else ""
        example = (
            ': a JSON list such as [{"id": "alice", "url": "https://alice.example.org"}]'
            if name == "NIGHTSCOUT_SITES"
            else ""
        )
        raise ConfigurationError(
            f"invalid configuration: {name} is not valid JSON{reason}{example}"
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
