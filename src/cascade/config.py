"""Settings: one model, read from the environment only (12-factor), with `.env` read if present.

`Settings` has one section per part of the system: `lake` (profile, home, warehouse, stage),
`nightscout` (the sites and how to read them), `nessie`, `s3`, `trino`, `transform` (the dbt
project), `marts` (publishing to PostgreSQL) and `stack` (the local services the development
platform runs). Each section is a pydantic-settings model that reads its own variables, under the
flat names users set (`NESSIE_URI`, `S3_ENDPOINT`, `POSTGRES_PORT`...): pydantic-settings' nested
models would name them `NESSIE__URI`, which would break every deployment. An `env_prefix` per
section does not fit either: one section's names share no prefix (the stack reads
`POSTGRES_PORT`, `MINIO_ROOT_PASSWORD`, `TRINO_JAVA_HOME`). So each field names its variable with
`validation_alias=AliasChoices(VARIABLE, field)` (the helper `env()`): the name a user sets is
written next to the field that reads it, and the same table routes overrides and error messages
back to the variable. Every variable is read by exactly one field.

The local PostgreSQL's host, port and marts password are the `stack` section's (`STACK_HOST`,
`POSTGRES_PORT`, `MARTS_DB_PASSWORD`); `stack.marts_dsn` built from them is the lakehouse
profile's default `MARTS_DATABASE_URL`. Values derived from several sections (`stack_home`,
`on_local_stack`) are properties of `Settings`, computed in one place.

The CLI (or a dev tool, or a test) builds `Settings` once with `load_settings()` and passes it
down; nothing below the CLI reads the environment. Overrides use the variables' own names, the
one vocabulary for settings: `load_settings(CASCADE_HOME="/tmp/lake", NESSIE_REF="dev")`, and
`settings.with_values(NESSIE_REF="main")` for a changed copy.

Several Nightscout sites can be followed at once (a research clinic follows many people): either
the single-site variables `NIGHTSCOUT_URL` / `NIGHTSCOUT_API_SECRET` / `NIGHTSCOUT_TOKEN` /
`NIGHTSCOUT_SITE_ID`, or `NIGHTSCOUT_SITES`, a JSON list of `{"id", "url", "api_secret", "token"}`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from cascade.branching import MAIN, check_ref_name
from cascade.exceptions import ConfigurationError

SITE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def env(name: str, default: Any = ..., **constraints: Any) -> Any:
    """A field read from environment variable `name` (also settable by its field name)."""
    return Field(default, validation_alias=AliasChoices(name, name.lower()), **constraints)


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


class _Section(BaseSettings):
    """A group of settings, each field read from the one variable its alias names."""

    # No populate_by_name: pydantic-settings would then also read each field's own name from the
    # environment (`home` from HOME, `user` from USER). Fields are set by their variable only.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")


class LakeSettings(_Section):
    """Where the lake lives and which way Cascade runs."""

    profile: Profile = env("CASCADE_PROFILE", Profile.LOCAL)
    #: Everything the local profile writes (catalog, warehouse, stage, dbt artifacts) lives here.
    home: Path = env("CASCADE_HOME", Path(".cascade"))
    catalog_name: str = env("ICEBERG_CATALOG_NAME", "cascade")
    warehouse_dir: Path | None = env("ICEBERG_WAREHOUSE_PATH", None)
    staging_dir: Path | None = env("ICEBERG_STAGING_PATH", None)
    # lakehouse profile: tables and stage on S3.
    warehouse_uri: str = env("LAKE_WAREHOUSE", "s3://lake/warehouse")
    stage_location: str = env("LAKE_STAGE_URI", "s3://lake/stage")

    @property
    def warehouse_path(self) -> Path:
        return (self.warehouse_dir or self.home / "warehouse").resolve()

    @property
    def staging_path(self) -> Path:
        return (self.staging_dir or self.home / "stage").resolve()

    @property
    def catalog_db_path(self) -> Path:
        return (self.home / "catalog.db").resolve()

    @property
    def stage_uri(self) -> str:
        if self.profile is Profile.LAKEHOUSE:
            return self.stage_location.rstrip("/")
        return self.staging_path.as_uri()


class NightscoutSettings(_Section):
    """The Nightscout sites to read, and how to be a good client of them."""

    url: str | None = env("NIGHTSCOUT_URL", None)
    api_secret: SecretStr | None = env("NIGHTSCOUT_API_SECRET", None)
    token: SecretStr | None = env("NIGHTSCOUT_TOKEN", None)
    site_id: str = env("NIGHTSCOUT_SITE_ID", "default")
    site_list: list[SiteConfig] = Field(
        default_factory=list,
        validation_alias=AliasChoices("NIGHTSCOUT_SITES", "nightscout_sites"),
    )

    page_size: int = env("NIGHTSCOUT_PAGE_SIZE", 1000, ge=10, le=10_000)
    timeout_seconds: float = env("NIGHTSCOUT_TIMEOUT_SECONDS", 30.0, gt=0)
    max_retries: int = env("NIGHTSCOUT_MAX_RETRIES", 6, ge=0, le=20)
    backoff_seconds: float = env("NIGHTSCOUT_BACKOFF_SECONDS", 0.5, ge=0)
    concurrency: int = env("NIGHTSCOUT_CONCURRENCY", 2, ge=1, le=16)
    v1_lookback_hours: float = env("NIGHTSCOUT_V1_LOOKBACK_HOURS", 6.0, ge=0)
    commit_rows: int = env("INGEST_COMMIT_ROWS", 200_000, ge=1)
    site_concurrency: int = env("INGEST_SITE_CONCURRENCY", 4, ge=1, le=64)

    @model_validator(mode="after")
    def _single_or_many_sites(self) -> NightscoutSettings:
        if self.url and self.site_list:
            raise ValueError(
                "set either NIGHTSCOUT_URL (one site) or NIGHTSCOUT_SITES (many), not both"
            )
        return self

    def sites(self) -> list[SiteConfig]:
        """The configured Nightscout sites, whichever way they were given."""
        if self.site_list:
            return list(self.site_list)
        if self.url:
            return [
                SiteConfig(
                    id=self.site_id, url=self.url, api_secret=self.api_secret, token=self.token
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


class NessieSettings(_Section):
    """Nessie (lakehouse profile): its URL and the branch ingest and dbt write to."""

    uri: str = env("NESSIE_URI", "http://127.0.0.1:19120")
    ref: str = env("NESSIE_REF", MAIN.ref)
    #: How long one call of Cascade's Nessie client (promote, `cascade branch`) may take.
    timeout_seconds: float = env("NESSIE_TIMEOUT_SECONDS", 30.0, gt=0)

    @field_validator("ref")
    @classmethod
    def _nessie_ref_name(cls, value: str) -> str:
        try:
            return check_ref_name(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc).removeprefix(f"NESSIE_REF={value!r} ")) from None

    @property
    def catalog_uri(self) -> str:
        """Nessie's Iceberg REST endpoint for the ref: PyIceberg ignores a separate ref parameter."""
        return f"{self.uri.rstrip('/')}/iceberg/{self.ref}"


class S3Settings(_Section):
    """The lake's S3-compatible object store (lakehouse profile)."""

    endpoint: str = env("S3_ENDPOINT", "http://127.0.0.1:9000")
    access_key_id: SecretStr = env("S3_ACCESS_KEY_ID", SecretStr("cascade"))
    secret_access_key: SecretStr = env("S3_SECRET_ACCESS_KEY", SecretStr("cascade-minio-secret"))
    region: str = env("S3_REGION", "us-east-1")

    def properties(self) -> dict[str, str]:
        """PyIceberg FileIO properties for the endpoint (path-style, as MinIO serves)."""
        return {
            "s3.endpoint": self.endpoint,
            "s3.access-key-id": self.access_key_id.get_secret_value(),
            "s3.secret-access-key": self.secret_access_key.get_secret_value(),
            "s3.region": self.region,
            "s3.path-style-access": "true",
        }


class TrinoSettings(_Section):
    """Trino, which builds the dbt project on the lakehouse profile (also the local stack's port)."""

    host: str = env("TRINO_HOST", "127.0.0.1")
    port: int = env("TRINO_PORT", 8080, ge=1, le=65535)
    user: str = env("TRINO_USER", "cascade")

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"


class TransformSettings(_Section):
    """The dbt project and how hard dbt works."""

    #: A fork of the models; default: the project shipped inside the package.
    dbt_project_dir: Path | None = env("CASCADE_DBT_PROJECT_DIR", None)
    #: dbt threads; default 4 on DuckDB, 2 on Trino.
    dbt_threads: int | None = env("CASCADE_DBT_THREADS", None, ge=1, le=64)


class MartsSettings(_Section):
    """`cascade publish`: the marts copied into PostgreSQL for BI (see docs/PUBLISH.md)."""

    database_url: SecretStr | None = env("MARTS_DATABASE_URL", None)
    schema_name: str = env("MARTS_SCHEMA", "marts", pattern=r"^[a-z_][a-z0-9_]{0,50}$")
    bi_reader_role: str = env("BI_READER_ROLE", "bi_reader", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")
    lock_timeout_seconds: float = env("PUBLISH_LOCK_TIMEOUT_SECONDS", 2.0, gt=0)
    lock_wait_seconds: float = env("PUBLISH_LOCK_WAIT_SECONDS", 120.0, ge=0)


# Versions this machine's registries serve (checked 2026-11-26; see docs/STACK.md for why these):
# Maven Central here serves the Nessie runner jar only at 0.99.0 (0.105+ answer 404), and Trino's
# server tarballs up to 476 (477+ answer 404). MinIO is a Go module pseudo-version: release
# RELEASE.2025-09-07T16-13-09Z (the newest release tag the Go module proxy serves).
DEFAULT_NESSIE_VERSION = "0.99.0"
DEFAULT_TRINO_VERSION = "476"
DEFAULT_MINIO_VERSION = "v0.0.0-20250907161309-07c3a429bfed"


class StackSettings(_Section):
    """The local services (`cascade stack`): where they live, ports, versions, dev credentials.

    Every value has a development default, so `cascade stack up` works on a fresh machine; the
    same names are what deploy/config, docker-compose and Helm read. Trino's port is TRINO_PORT
    and the object store's region S3_REGION (sections `trino`, `s3`): one variable, one field.
    """

    # ---- where things go -----------------------------------------------------------------------
    #: State of the running stack: data directories, logs, pid files. Default: <CASCADE_HOME>/stack.
    home_dir: Path | None = env("CASCADE_STACK_HOME", None)
    #: Downloads, builds and unpacked servers, shared by every checkout. Outside the repository.
    download_cache_dir: Path = env("CASCADE_DOWNLOAD_CACHE", Path("~/.cache/cascade/downloads"))
    #: A deploy/ directory whose config/ (Trino catalogs, Nessie properties) the services read;
    #: default: the configuration shipped with the development platform (the repository's).
    deploy_dir: Path | None = env("CASCADE_DEPLOY_DIR", None)
    #: Maven repository the Nessie jar and Trino tarball come from.
    maven_repository_url: str = env("MAVEN_REPOSITORY_URL", "https://repo1.maven.org/maven2")

    # ---- network -------------------------------------------------------------------------------
    #: Every service listens on this loopback address only.
    host: str = env("STACK_HOST", "127.0.0.1")
    postgres_port: int = env("POSTGRES_PORT", 55432, ge=1, le=65535)
    minio_port: int = env("MINIO_PORT", 9000, ge=1, le=65535)
    minio_console_port: int = env("MINIO_CONSOLE_PORT", 9001, ge=1, le=65535)
    nessie_port: int = env("NESSIE_PORT", 19120, ge=1, le=65535)
    #: Nessie's Quarkus management port (health, metrics); Quarkus' default 9000 clashes with MinIO.
    nessie_management_port: int = env("NESSIE_MANAGEMENT_PORT", 19121, ge=1, le=65535)

    # ---- versions ------------------------------------------------------------------------------
    nessie_version: str = env("NESSIE_VERSION", DEFAULT_NESSIE_VERSION)
    trino_version: str = env("TRINO_VERSION", DEFAULT_TRINO_VERSION)
    minio_version: str = env("MINIO_VERSION", DEFAULT_MINIO_VERSION)
    #: Trino plugins unpacked from the server tarball: the catalogs under deploy/config need these
    #: (the postgresql connector needs the Geometry type of the geospatial plugin).
    trino_plugins: str = env("TRINO_PLUGINS", "iceberg,postgresql,geospatial")

    # ---- sizing (2 cores, 24 GB) ---------------------------------------------------------------
    trino_max_heap: str = env("TRINO_MAX_HEAP", "3G")
    trino_query_max_memory: str = env("TRINO_QUERY_MAX_MEMORY", "1GB")
    nessie_max_heap: str = env("NESSIE_MAX_HEAP", "1G")

    # ---- Java ----------------------------------------------------------------------------------
    #: Trino 476 needs Java 24+: the Temurin 25 JDK these machines have.
    trino_java_home: Path = env("TRINO_JAVA_HOME", Path("/usr/lib/jvm/temurin-25-jdk-amd64"))
    #: Nessie 0.99's server classes are built for Java 21: the machine's default 17 cannot run it.
    nessie_java_home: Path = env("NESSIE_JAVA_HOME", Path("/usr/lib/jvm/temurin-25-jdk-amd64"))

    # ---- credentials (development defaults; set real ones anywhere else) ------------------------
    postgres_password: SecretStr = env("POSTGRES_PASSWORD", SecretStr("cascade-postgres"))
    nessie_db_password: SecretStr = env("NESSIE_DB_PASSWORD", SecretStr("cascade-nessie"))
    dagster_db_password: SecretStr = env("DAGSTER_DB_PASSWORD", SecretStr("cascade-dagster"))
    superset_db_password: SecretStr = env("SUPERSET_DB_PASSWORD", SecretStr("cascade-superset"))
    marts_db_password: SecretStr = env("MARTS_DB_PASSWORD", SecretStr("cascade-marts"))
    bi_reader_password: SecretStr = env("BI_READER_PASSWORD", SecretStr("cascade-bi-reader"))
    minio_root_user: SecretStr = env("MINIO_ROOT_USER", SecretStr("cascade"))
    minio_root_password: SecretStr = env("MINIO_ROOT_PASSWORD", SecretStr("cascade-minio-secret"))

    # ---- behaviour -----------------------------------------------------------------------------
    #: How long `up` waits for one service to become healthy.
    start_timeout_seconds: float = env("STACK_START_TIMEOUT_SECONDS", 240.0, gt=0)
    #: How long `down` waits for one service to exit after SIGTERM before SIGKILL.
    stop_timeout_seconds: float = env("STACK_STOP_TIMEOUT_SECONDS", 60.0, gt=0)

    @field_validator("minio_root_password")
    @classmethod
    def _minio_password_length(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 8:
            raise ValueError(
                "MINIO_ROOT_PASSWORD must be at least 8 characters (MinIO refuses shorter)"
            )
        return value

    @property
    def trino_plugin_names(self) -> list[str]:
        return sorted({part.strip() for part in self.trino_plugins.split(",") if part.strip()})

    @property
    def download_cache(self) -> Path:
        return self.download_cache_dir.expanduser().resolve()

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.minio_port}"

    @property
    def nessie_uri(self) -> str:
        """The stack's Nessie; the Iceberg REST catalog of a branch is `{nessie_uri}/iceberg/{ref}`."""
        return f"http://{self.host}:{self.nessie_port}"

    def postgres_dsn(self, database: str, user: str, password: SecretStr) -> str:
        return f"postgresql://{user}:{password.get_secret_value()}@{self.host}:{self.postgres_port}/{database}"

    @property
    def marts_dsn(self) -> str:
        """The stack's `marts` database: the lakehouse profile's default MARTS_DATABASE_URL."""
        return self.postgres_dsn("marts", "marts", self.marts_db_password)


class Settings(BaseModel):
    """Every setting Cascade reads, one section per part. See `.env.example` for the list."""

    model_config = ConfigDict(frozen=True)

    lake: LakeSettings
    nightscout: NightscoutSettings
    nessie: NessieSettings
    s3: S3Settings
    trino: TrinoSettings
    transform: TransformSettings
    marts: MartsSettings
    stack: StackSettings

    SECTIONS: ClassVar[dict[str, type[_Section]]] = {
        "lake": LakeSettings,
        "nightscout": NightscoutSettings,
        "nessie": NessieSettings,
        "s3": S3Settings,
        "trino": TrinoSettings,
        "transform": TransformSettings,
        "marts": MartsSettings,
        "stack": StackSettings,
    }

    @property
    def profile(self) -> Profile:
        return self.lake.profile

    @property
    def stack_home(self) -> Path:
        """The local stack's state directory: CASCADE_STACK_HOME, else <CASCADE_HOME>/stack."""
        return (self.stack.home_dir or self.lake.home / "stack").expanduser().resolve()

    @property
    def stack_trino_uri(self) -> str:
        return f"http://{self.stack.host}:{self.trino.port}"

    def on_local_stack(self, ref: str = MAIN.ref, **variables: Any) -> Settings:
        """These settings on the lakehouse profile, pointed at the local stack, on branch `ref`."""
        return self.with_values(
            CASCADE_PROFILE=Profile.LAKEHOUSE,
            NESSIE_URI=self.stack.nessie_uri,
            NESSIE_REF=ref,
            S3_ENDPOINT=self.stack.s3_endpoint,
            S3_ACCESS_KEY_ID=self.stack.minio_root_user,
            S3_SECRET_ACCESS_KEY=self.stack.minio_root_password,
            TRINO_HOST=self.stack.host,
            **variables,
        )

    def variables(self) -> dict[str, Any]:
        """Every setting by the variable it is read from ({"NESSIE_REF": "dev", ...}), for
        handing these exact settings to another process; values as held (secrets included)."""
        return {
            _aliases(field_name, info)[0].upper(): getattr(getattr(self, section), field_name)
            for section, model in self.SECTIONS.items()
            for field_name, info in model.model_fields.items()
        }

    def with_values(self, **variables: Any) -> Settings:
        """A validated copy with the given variables changed; the environment is not read again."""
        updates = _route(variables)
        sections: dict[str, Any] = {}
        for name, section in self:
            if name in updates:
                merged = {
                    _aliases(field_name, info)[0]: getattr(section, field_name)
                    for field_name, info in type(section).model_fields.items()
                } | updates[name]
                try:
                    section = type(section).model_validate(merged)
                except ValidationError as exc:
                    raise configuration_error(exc) from None
            sections[name] = section
        return Settings(**sections)


def _variables() -> dict[str, tuple[str, str]]:
    """Every variable name (upper case) → (section, field)."""
    names: dict[str, tuple[str, str]] = {}
    for section, model in Settings.SECTIONS.items():
        for field_name, info in model.model_fields.items():
            for alias in _aliases(field_name, info):
                names[alias.upper()] = (section, field_name)
    return names


def _aliases(field_name: str, info: FieldInfo) -> list[str]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [field_name]


def variable_names() -> set[str]:
    """The environment variables the settings read (for documentation checks)."""
    return {
        _aliases(field_name, info)[0].upper()
        for model in Settings.SECTIONS.values()
        for field_name, info in model.model_fields.items()
    }


def _route(variables: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"nessie_ref": "dev"} → {"nessie": {"NESSIE_REF": "dev"}}; an unknown name is a TypeError."""
    known = _variables()
    routed: dict[str, dict[str, Any]] = {}
    for name, value in variables.items():
        if name.upper() not in known:
            raise TypeError(f"no setting is read from a variable named {name.upper()}")
        section, _ = known[name.upper()]
        routed.setdefault(section, {})[name.upper()] = value
    return routed


def configuration_error(exc: ValidationError, what: str = "configuration") -> ConfigurationError:
    """One message naming each bad variable and why; never the value (it may be a secret)."""
    problems = "; ".join(
        f"{_variable_of(exc.title, err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return ConfigurationError(f"invalid {what}: {problems}")


def _variable_of(model_title: str, loc: tuple[int | str, ...]) -> str:
    """The variable a validation error is about (NESSIE_REF), from the model and field."""
    model = next((m for m in Settings.SECTIONS.values() if m.__name__ == model_title), None)
    if model is not None and loc and str(loc[0]) in model.model_fields:
        return _aliases(str(loc[0]), model.model_fields[str(loc[0])])[0].upper()
    return ".".join(str(p) for p in loc).upper() or "settings"


def load_settings(**variables: Any) -> Settings:
    """Read every section from the environment (and `.env`), with `variables` taking precedence.

    Errors become one ConfigurationError naming each bad variable, never its value.
    """
    routed = _route(variables)
    sections: dict[str, Any] = {}
    for name, model in Settings.SECTIONS.items():
        try:
            sections[name] = model(**routed.get(name, {}))
        except ValidationError as exc:
            raise configuration_error(exc) from None
        except SettingsError as exc:  # a JSON-valued variable that is not JSON
            field = re.search(r'field "(\w+)"', str(exc))
            variable = (
                _aliases(field.group(1), model.model_fields[field.group(1)])[0].upper()
                if field and field.group(1) in model.model_fields
                else "a setting"
            )
            # The decoder's reason gives a position, never the value (it may hold a secret).
            reason = f" ({exc.__cause__})" if exc.__cause__ else ""
            example = (
                ': a JSON list such as [{"id": "alice", "url": "https://alice.example.org"}]'
                if variable == "NIGHTSCOUT_SITES"
                else ""
            )
            raise ConfigurationError(
                f"invalid configuration: {variable} is not valid JSON{reason}{example}"
            ) from None
    return Settings(**sections)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once: only the CLI (and other entry points) call this."""
    return load_settings()
