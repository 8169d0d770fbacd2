"""docker-compose.yml, loaded and validated by docker compose itself (`docker compose config`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    COMPOSE_FILE,
    CONFIG,
    REPO,
    SECRET_NAME,
    SETUP,
    TEST_ENV,
    Compose,
    nessie_required_variables,
    trino_catalog_variables,
    write_env,
)

from cascade.config import DEFAULT_MINIO_VERSION, DEFAULT_NESSIE_VERSION, DEFAULT_TRINO_VERSION
from cascade_dev.stack.settings import LAKE_BUCKET

pytestmark = [pytest.mark.deploy, pytest.mark.integration, pytest.mark.timeout(2400)]

CORE = {"postgres", "postgres-setup", "minio", "minio-setup"}
QUERY = CORE | {"nessie", "nessie-setup", "trino"}
BI = QUERY | {"superset-init", "superset", "pgweb"}
PROFILES = {"core": CORE, "query": QUERY, "bi": BI, "all": BI}
ONE_SHOTS = {"postgres-setup", "minio-setup", "nessie-setup", "superset-init"}


def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def resolved(compose: Compose, test_env_file: Path) -> dict[str, Any]:
    return compose.config("all", env_file=test_env_file)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_resolves_to_its_services(
    compose: Compose, test_env_file: Path, profile: str
) -> None:
    project = compose.config(profile, env_file=test_env_file)
    assert project["name"] == "cascade"
    assert set(project["services"]) == PROFILES[profile]


def test_no_profile_starts_nothing(compose: Compose, test_env_file: Path) -> None:
    result = compose.run("config", "--services", env_file=test_env_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_env_example_configures_every_profile(compose: Compose, tmp_path: Path) -> None:
    """.env.example, copied to .env as the docs say, is enough for every profile."""
    env_file = tmp_path / ".env"
    env_file.write_text((REPO / ".env.example").read_text())
    result = compose.run("--profile", "all", "config", "--quiet", env_file=env_file)
    assert result.returncode == 0, (
        "docker compose config with .env.example failed: every ${VAR:?} of docker-compose.yml "
        f"needs a line in .env.example\n{result.stderr}"
    )


@pytest.mark.parametrize("missing", sorted(TEST_ENV))
def test_a_missing_secret_is_refused_by_name(
    compose: Compose, tmp_path: Path, missing: str
) -> None:
    env_file = write_env(tmp_path / "env", {k: v for k, v in TEST_ENV.items() if k != missing})
    result = compose.run("--profile", "all", "config", "--quiet", env_file=env_file)
    assert result.returncode != 0
    assert f"required variable {missing} is missing" in result.stderr


def test_settings_come_from_the_environment(compose: Compose, tmp_path: Path) -> None:
    env_file = write_env(
        tmp_path / "env",
        {
            **TEST_ENV,
            "STACK_HOST": "0.0.0.0",
            "TRINO_PORT": "18080",
            "MINIO_PORT": "19000",
            "S3_REGION": "eu-west-1",
            "NESSIE_MAX_HEAP": "2G",
        },
    )
    project = compose.config("all", env_file=env_file)
    trino = project["services"]["trino"]
    assert trino["ports"][0]["published"] == "18080"
    assert trino["ports"][0]["host_ip"] == "0.0.0.0"
    assert trino["environment"]["S3_REGION"] == "eu-west-1"
    nessie = project["services"]["nessie"]
    assert nessie["environment"]["S3_EXTERNAL_ENDPOINT"] == "http://127.0.0.1:19000"
    assert nessie["environment"]["JAVA_OPTS_APPEND"] == "-Xmx2G"


def test_ports_bind_to_loopback_by_default(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_long_running_services_have_health_checks(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", f"{name} is a one-shot"
            assert "healthcheck" not in service
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no health check"
        assert service["restart"] == "unless-stopped"


def test_dependencies_wait_for_health_or_completion(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            )
            assert how["condition"] == expected, f"{name} -> {dependency}"
    # every one-shot is waited for by something, or it would be fire-and-forget
    waited = {dep for service in services.values() for dep in service.get("depends_on", {})}
    assert waited >= ONE_SHOTS


def test_no_plaintext_secrets_in_the_file() -> None:
    """Every secret-looking value is an interpolation that is required, never a default."""
    found = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and SECRET_NAME.search(str(key)):
                    secrets = re.findall(r"\$\{([A-Z_]+)(:[?-])?", value)
                    if not secrets:
                        found.append(f"{path}.{key} is a literal")
                    for name, mode in secrets:
                        if SECRET_NAME.search(name) and mode != ":?":
                            found.append(f"{path}.{key} reads {name} without :? (a default secret)")
                visit(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                visit(item, f"{path}[{index}]")

    visit(raw(), "")
    assert not found, found
    text = COMPOSE_FILE.read_text()
    for value in ("cascade-postgres", "cascade-minio-secret", "minioadmin", "password="):
        assert value not in text


def test_secrets_land_only_in_environments(resolved: dict[str, Any]) -> None:
    secret_values = {v for k, v in TEST_ENV.items() if k != "MINIO_ROOT_USER"}
    for name, service in resolved["services"].items():
        outside = {k: v for k, v in service.items() if k != "environment"}
        for value in secret_values:
            assert value not in repr(outside), f"a secret appears outside {name}'s environment"


def test_nessie_and_trino_versions_equal_the_local_stack(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert services["nessie"]["image"] == f"ghcr.io/projectnessie/nessie:{DEFAULT_NESSIE_VERSION}"
    assert services["trino"]["image"] == f"trinodb/trino:{DEFAULT_TRINO_VERSION}"
    # MinIO: the image's release tag is the local stack's Go pseudo-version's timestamp
    stamp = re.search(r"-(\d{14})-", DEFAULT_MINIO_VERSION)
    assert stamp, DEFAULT_MINIO_VERSION
    s = stamp.group(1)
    release = f"RELEASE.{s[:4]}-{s[4:6]}-{s[6:8]}T{s[8:10]}-{s[10:12]}-{s[12:14]}Z"
    assert services["minio"]["image"] == f"minio/minio:{release}"
    assert services["minio-setup"]["image"] == services["minio"]["image"]


def test_images_are_pinned(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and "/" not in tag, f"{name}: {image} has no tag"
        assert tag not in {"latest", "main", "master", "nightly"}, f"{name}: {image} is not pinned"


def test_official_images() -> None:
    images = {name: service["image"] for name, service in raw()["services"].items()}
    assert images["postgres"].startswith("postgres:")
    assert images["minio"].startswith("minio/minio:RELEASE.")
    assert images["nessie"].startswith("ghcr.io/projectnessie/nessie:")
    assert images["trino"].startswith("trinodb/trino:")
    assert images["pgweb"].startswith("sosedoff/pgweb:")
    # Superset: the official image plus its database drivers, built as Superset's docs say
    dockerfile = (REPO / "deploy" / "superset" / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/superset:\$\{SUPERSET_VERSION\}$", dockerfile, re.MULTILINE)
    version = images["superset"].rsplit(":", 1)[1]
    assert raw()["services"]["superset"]["build"]["args"]["SUPERSET_VERSION"] == version


def test_data_lives_in_named_volumes(resolved: dict[str, Any]) -> None:
    assert {"postgres-data", "minio-data", "superset-home"} <= set(resolved["volumes"])
    mounts = {
        name: {m["target"]: m for m in service.get("volumes", [])}
        for name, service in resolved["services"].items()
    }
    assert mounts["postgres"]["/var/lib/postgresql/data"]["type"] == "volume"
    assert mounts["postgres"]["/var/lib/postgresql/data"]["source"] == "postgres-data"
    assert mounts["minio"]["/data"]["source"] == "minio-data"


def test_services_mount_the_one_shared_configuration(resolved: dict[str, Any]) -> None:
    """deploy/config (read by the local stack too) is mounted as is: one source, not two copies."""
    services = resolved["services"]
    trino = {m["target"]: m for m in services["trino"]["volumes"]}
    assert Path(trino["/etc/trino/catalog"]["source"]) == CONFIG / "trino" / "catalog"
    assert trino["/etc/trino/catalog"]["read_only"] is True
    nessie = {m["target"]: m for m in services["nessie"]["volumes"]}
    mounted = nessie["/deployments/config/application.properties"]
    assert Path(mounted["source"]) == CONFIG / "nessie" / "application.properties"
    for name in ("postgres-setup", "minio-setup"):
        setup = {m["target"]: m for m in services[name]["volumes"]}
        assert Path(setup["/cascade/setup"]["source"]) == SETUP
    # and every mounted file exists
    for service in services.values():
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":
                assert Path(mount["source"]).exists(), mount


def test_containers_get_every_variable_the_shared_configuration_reads(
    resolved: dict[str, Any],
) -> None:
    services = resolved["services"]
    assert trino_catalog_variables() <= set(services["trino"]["environment"])
    assert nessie_required_variables() <= set(services["nessie"]["environment"])
    # the values point at the compose services
    trino = services["trino"]["environment"]
    assert trino["NESSIE_URI"] == "http://nessie:19120"
    assert trino["S3_ENDPOINT"] == "http://minio:9000"
    assert trino["POSTGRES_HOST"] == "postgres"
    assert trino["MARTS_DB_PASSWORD"] == TEST_ENV["MARTS_DB_PASSWORD"]
    nessie = services["nessie"]["environment"]
    assert nessie["NESSIE_JDBC_URL"] == "jdbc:postgresql://postgres:5432/nessie"
    assert nessie["NESSIE_DB_PASSWORD"] == TEST_ENV["NESSIE_DB_PASSWORD"]
    assert nessie["S3_ACCESS_KEY_ID"] == TEST_ENV["MINIO_ROOT_USER"]
    assert nessie["S3_SECRET_ACCESS_KEY"] == TEST_ENV["MINIO_ROOT_PASSWORD"]
    # the management port Nessie's health check asks is the one the properties configure
    assert nessie["NESSIE_MANAGEMENT_PORT"] == "19121"
    assert "19121" in " ".join(services["nessie"]["healthcheck"]["test"])


def test_setup_one_shots_make_what_the_local_stack_makes(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    postgres = services["postgres-setup"]["environment"]
    for key in (
        "NESSIE_DB_PASSWORD",
        "DAGSTER_DB_PASSWORD",
        "SUPERSET_DB_PASSWORD",
        "MARTS_DB_PASSWORD",
        "BI_READER_PASSWORD",
    ):
        assert postgres[key] == TEST_ENV[key]
    assert postgres["PGPASSWORD"] == TEST_ENV["POSTGRES_PASSWORD"]
    assert "postgres-databases.sh" in " ".join(services["postgres-setup"]["entrypoint"])
    assert "minio-bucket.sh" in " ".join(services["minio-setup"]["entrypoint"])
    nessie_setup = services["nessie-setup"]
    assert nessie_setup["image"] == "cascade/cascade:0.1.0"
    assert nessie_setup["build"]["dockerfile"] == "deploy/cascade/Dockerfile"
    assert Path(nessie_setup["build"]["context"]) == REPO
    assert nessie_setup["command"] == ["branch", "create"]
    assert nessie_setup["environment"]["NESSIE_URI"] == "http://nessie:19120"
    bucket_script = (SETUP / "minio-bucket.sh").read_text()
    assert f'bucket="${{LAKE_BUCKET:-{LAKE_BUCKET}}}"' in bucket_script


def test_the_cascade_image_installs_the_repository_with_its_dbt_project() -> None:
    """The image builds from the repository root; the package's dbt_project link must resolve."""
    dockerfile = (REPO / "deploy" / "cascade" / "Dockerfile").read_text()
    link = REPO / "src" / "cascade" / "transform" / "dbt_project"
    assert link.is_symlink() and link.resolve() == REPO / "transforms" / "dbt"
    for copied in ("COPY src/ src/", "COPY transforms/ transforms/", "RUN pip install ."):
        assert copied in dockerfile
    assert 'ENTRYPOINT ["cascade"]' in dockerfile
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and {"!src/", "!transforms/", "!pyproject.toml"} <= set(ignored)
