"""The Helm chart: `helm lint`, `helm template`, and the rendered manifests against the Kubernetes
JSON schemas (kubeconform, strict, offline)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    CHART,
    CONFIG,
    SECRET_NAME,
    SETUP,
    Helm,
    Kubeconform,
    kubernetes_versions,
    nessie_required_variables,
    trino_catalog_variables,
)

from cascade.config import DEFAULT_NESSIE_VERSION, DEFAULT_TRINO_VERSION

pytestmark = [pytest.mark.deploy, pytest.mark.integration, pytest.mark.timeout(2400)]

BUNDLED = str(CHART / "ci" / "bundled-values.yaml")
EXTERNAL = str(CHART / "ci" / "external-values.yaml")
VALUES_FILES = {"bundled": BUNDLED, "external": EXTERNAL}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(manifest: dict[str, Any], container: int = 0) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in containers(manifest)[container].get("env", [])}


@pytest.fixture(scope="module")
def bundled(helm: Helm) -> list[dict[str, Any]]:
    return helm.manifests("-f", BUNDLED)


@pytest.fixture(scope="module")
def external(helm: Helm) -> list[dict[str, Any]]:
    return helm.manifests("-f", EXTERNAL)


# ---- lint, template, schemas ---------------------------------------------------------------------
@pytest.mark.parametrize("values", ["defaults", *sorted(VALUES_FILES)])
def test_helm_lint_strict(helm: Helm, values: str) -> None:
    args = [] if values == "defaults" else ["-f", VALUES_FILES[values]]
    result = helm.run("lint", "--strict", str(CHART), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kubernetes_version", kubernetes_versions())
@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_rendered_manifests_match_the_kubernetes_schemas(
    helm: Helm, kubeconform: Kubeconform, values: str, kubernetes_version: str
) -> None:
    rendered = helm.template("-f", VALUES_FILES[values], "--kube-version", kubernetes_version)
    count = len([doc for doc in yaml.safe_load_all(rendered) if doc])
    report = kubeconform.validate(rendered, kubernetes_version)
    assert report["resources"] == [], report["resources"]
    assert report["summary"] == {"valid": count, "invalid": 0, "errors": 0, "skipped": 0}
    assert report["exit_code"] == 0


def test_kubeconform_rejects_a_broken_manifest(kubeconform: Kubeconform) -> None:
    """The offline schemas really validate (strict: unknown fields; types; nested references)."""
    broken = yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "x"},
            "spec": {
                "replicas": "two",
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {
                        "containers": [{"name": "x", "image": "x:1", "imagePullPolcy": "Always"}]
                    },
                },
            },
        }
    )
    report = kubeconform.validate(broken, kubernetes_versions()[-1])
    assert report["summary"]["invalid"] == 1
    message = report["resources"][0]["msg"]
    assert "replicas" in message and "imagePullPolcy" in message


def test_without_secrets_helm_says_what_to_set(helm: Helm) -> None:
    result = helm.run("template", "cascade", str(CHART))
    assert result.returncode != 0
    assert "secrets.existingSecret" in result.stderr


def test_external_mode_needs_its_endpoints(helm: Helm) -> None:
    result = helm.run(
        "template", "cascade", str(CHART), "-f", BUNDLED, "--set", "postgresql.bundled=false"
    )
    assert result.returncode != 0 and "postgresql.host is required" in result.stderr
    result = helm.run(
        "template", "cascade", str(CHART), "-f", BUNDLED, "--set", "objectStorage.bundled=false"
    )
    assert result.returncode != 0 and "objectStorage.endpoint is required" in result.stderr


# ---- one source of configuration -----------------------------------------------------------------
def test_trino_catalogs_are_deploy_config_byte_for_byte(bundled: list[dict[str, Any]]) -> None:
    catalogs = by_kind(bundled, "ConfigMap")["cascade-trino-catalog"]["data"]
    expected = {p.name: p.read_text() for p in (CONFIG / "trino" / "catalog").glob("*.properties")}
    assert expected and catalogs == expected


def test_nessie_settings_are_deploy_config_byte_for_byte(bundled: list[dict[str, Any]]) -> None:
    data = by_kind(bundled, "ConfigMap")["cascade-nessie-config"]["data"]
    assert data == {
        "application.properties": (CONFIG / "nessie" / "application.properties").read_text()
    }


def test_setup_scripts_are_deploy_setup_byte_for_byte(bundled: list[dict[str, Any]]) -> None:
    data = by_kind(bundled, "ConfigMap")["cascade-setup"]["data"]
    assert data == {p.name: p.read_text() for p in SETUP.glob("*.sh")}


def test_the_chart_links_to_deploy_config_rather_than_copying() -> None:
    for name, target in (("config", CONFIG), ("setup", SETUP)):
        link = CHART / "files" / name
        assert link.is_symlink(), f"files/{name} must be a link to deploy/{name}, not a copy"
        assert link.resolve() == target.resolve()


def test_helm_package_carries_the_shared_files(helm: Helm, tmp_path: Path) -> None:
    """`helm package` follows the links: the packaged chart has deploy/config's content."""
    result = helm.run("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("cascade-*.tgz")
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for path in (CONFIG / "trino" / "catalog").glob("*.properties"):
            member = members[f"cascade/files/config/trino/catalog/{path.name}"]
            extracted = tar.extractfile(member)
            assert extracted is not None and extracted.read() == path.read_bytes()
        assert "cascade/files/setup/postgres-databases.sh" in members
        assert not any(name.startswith("cascade/ci/") for name in members)


def test_services_get_every_variable_the_shared_configuration_reads(
    bundled: list[dict[str, Any]],
) -> None:
    deployments = by_kind(bundled, "Deployment")
    for name in ("cascade-trino-coordinator", "cascade-trino-worker"):
        env = env_of(deployments[name])
        assert trino_catalog_variables() <= set(env), name
        assert env["NESSIE_URI"]["value"] == "http://cascade-nessie:19120"
        assert env["POSTGRES_HOST"]["value"] == "cascade-postgresql"
        assert env["S3_ENDPOINT"]["value"] == "http://cascade-minio:9000"
    nessie = env_of(deployments["cascade-nessie"])
    assert nessie_required_variables() <= set(nessie)
    assert nessie["NESSIE_JDBC_URL"]["value"] == "jdbc:postgresql://cascade-postgresql:5432/nessie"
    assert "NESSIE_CATALOG_WAREHOUSES_WAREHOUSE_LOCATION" not in nessie  # bucket `lake`: the file's


# ---- versions, workloads ---------------------------------------------------------------------------
def test_nessie_and_trino_versions_equal_the_local_stack(bundled: list[dict[str, Any]]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert str(values["nessie"]["image"]["tag"]) == DEFAULT_NESSIE_VERSION
    assert str(values["trino"]["image"]["tag"]) == DEFAULT_TRINO_VERSION
    deployments = by_kind(bundled, "Deployment")
    assert containers(deployments["cascade-nessie"])[0]["image"] == (
        f"ghcr.io/projectnessie/nessie:{DEFAULT_NESSIE_VERSION}"
    )
    for name in ("cascade-trino-coordinator", "cascade-trino-worker"):
        assert containers(deployments[name])[0]["image"] == f"trinodb/trino:{DEFAULT_TRINO_VERSION}"


def test_bundled_mode_runs_everything(bundled: list[dict[str, Any]]) -> None:
    assert set(by_kind(bundled, "StatefulSet")) == {"cascade-postgresql", "cascade-minio"}
    assert set(by_kind(bundled, "Deployment")) == {
        "cascade-nessie",
        "cascade-trino-coordinator",
        "cascade-trino-worker",
        "cascade-dagster-webserver",
        "cascade-dagster-daemon",
    }
    jobs = by_kind(bundled, "Job")
    assert set(jobs) == {"cascade-db-setup-1", "cascade-bucket-setup-1", "cascade-nessie-setup-1"}
    worker = by_kind(bundled, "Deployment")["cascade-trino-worker"]
    assert worker["spec"]["replicas"] == 2
    config = by_kind(bundled, "ConfigMap")
    assert "coordinator=false" in config["cascade-trino-worker"]["data"]["config.properties"]
    assert (
        "discovery.uri=http://cascade-trino:8080"
        in config["cascade-trino-worker"]["data"]["config.properties"]
    )
    assert (
        "node-scheduler.include-coordinator=false"
        in config["cascade-trino-coordinator"]["data"]["config.properties"]
    )


def test_external_mode_uses_the_given_servers(external: list[dict[str, Any]]) -> None:
    assert by_kind(external, "StatefulSet") == {}
    assert "cascade-trino-worker" not in by_kind(external, "Deployment")
    coordinator_config = by_kind(external, "ConfigMap")["cascade-trino-coordinator"]["data"]
    assert "node-scheduler.include-coordinator=true" in coordinator_config["config.properties"]
    nessie = env_of(by_kind(external, "Deployment")["cascade-nessie"])
    assert nessie["NESSIE_JDBC_URL"]["value"] == "jdbc:postgresql://db.example.internal:5433/nessie"
    assert nessie["S3_ENDPOINT"]["value"] == "https://s3.eu-west-1.amazonaws.com"
    assert nessie["S3_REGION"]["value"] == "eu-west-1"
    assert (
        nessie["NESSIE_CATALOG_WAREHOUSES_WAREHOUSE_LOCATION"]["value"]
        == "s3://cascade-lake/warehouse"
    )
    jobs = by_kind(external, "Job")
    assert set(jobs) == {"cascade-db-setup-1", "cascade-nessie-setup-1"}  # no bucket creation
    db_setup = env_of(jobs["cascade-db-setup-1"])
    assert db_setup["PGHOST"]["value"] == "db.example.internal"
    assert db_setup["PGUSER"]["value"] == "cascade_admin"


def test_existing_secret_is_used_and_none_is_made(external: list[dict[str, Any]]) -> None:
    assert by_kind(external, "Secret") == {}
    refs = [
        e["valueFrom"]["secretKeyRef"]["name"]
        for m in external
        if m["kind"] in WORKLOADS
        for c in containers(m)
        for e in c.get("env", [])
        if "valueFrom" in e
    ]
    assert refs and set(refs) == {"cascade-credentials"}


def test_secrets_only_through_secret_references(bundled: list[dict[str, Any]]) -> None:
    secret = by_kind(bundled, "Secret")["cascade"]
    values = set(secret["stringData"].values())
    assert len(values) == 8
    for manifest in bundled:
        if manifest["kind"] == "Secret":
            continue
        assert not any(v in yaml.safe_dump(manifest) for v in values), manifest["metadata"]["name"]
        if manifest["kind"] in WORKLOADS:
            for container in containers(manifest):
                for env in container.get("env", []):
                    if SECRET_NAME.search(env["name"]):
                        assert "secretKeyRef" in env.get("valueFrom", {}), (
                            manifest["metadata"]["name"],
                            env,
                        )


def test_workloads_have_probes_and_resources(bundled: list[dict[str, Any]]) -> None:
    for manifest in bundled:
        if manifest["kind"] not in WORKLOADS:
            continue
        for container in containers(manifest):
            where = f"{manifest['metadata']['name']}/{container['name']}"
            assert container.get("resources", {}).get("requests"), f"{where}: no resource requests"
            assert ":" in container["image"] and not container["image"].endswith(":latest"), where
            if manifest["kind"] == "Job":
                continue
            assert "readinessProbe" in container, f"{where}: no readiness probe"
            assert "livenessProbe" in container, f"{where}: no liveness probe"


def test_configuration_changes_roll_the_pods(helm: Helm) -> None:
    def annotations(*args: str) -> dict[str, Any]:
        manifests = helm.manifests("-f", BUNDLED, *args)
        deployment = by_kind(manifests, "Deployment")["cascade-trino-worker"]
        result: dict[str, Any] = deployment["spec"]["template"]["metadata"]["annotations"]
        return result

    before = annotations()
    after = annotations("--set", "trino.queryMaxMemoryPerNode=2GB")
    assert before["checksum/config"] != after["checksum/config"]
    assert before["checksum/catalog"] == after["checksum/catalog"]
