"""The branch model is one table, and everything that names a branch's catalog agrees with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cascade.branching import BRANCHES, MAIN, branch_for, check_ref_name
from cascade.exceptions import ConfigurationError

REPOSITORY = Path(__file__).resolve().parents[1]
CATALOGS = REPOSITORY / "deploy" / "config" / "trino" / "catalog"


@pytest.mark.parametrize("name", ["main", "dev", "run-2026-11-28", "feature/x.y_z", "a", "-"])
def test_names_nessie_accepts_pass(name: str) -> None:
    assert check_ref_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "1dev", "dev..x", "dev/", "dev.", "de v", "dev?x=1", "dev@abc", "../main", "dev\n"]
)
def test_names_nessie_refuses_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(
        ConfigurationError, match=r"NESSIE_REF=.* is not a valid Nessie branch name"
    ):
        check_ref_name(name)


@pytest.mark.parametrize("name", ["HEAD", "head", "Detached", "deadbeef", "CAFEBABE12345678"])
def test_names_nessie_reserves_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match=r"Nessie reserves HEAD, DETACHED"):
        check_ref_name(name)


def test_a_reserved_nessie_ref_is_a_configuration_error_naming_the_variable() -> None:
    from cascade.config import load_settings

    with pytest.raises(ConfigurationError, match=r"NESSIE_REF: .*Nessie reserves") as caught:
        load_settings(NESSIE_REF="deadbeef")
    assert "deadbeef" not in str(caught.value)


def test_every_branch_has_its_own_target_and_catalog() -> None:
    assert MAIN in BRANCHES
    assert len({b.ref for b in BRANCHES}) == len(BRANCHES)
    assert len({b.dbt_target for b in BRANCHES}) == len(BRANCHES)
    assert len({b.trino_catalog for b in BRANCHES}) == len(BRANCHES)
    assert branch_for("dev").trino_catalog == "iceberg_dev"
    with pytest.raises(ConfigurationError, match=r"NESSIE_REF='qa' has no Trino catalog.*`main`"):
        branch_for("qa")


@pytest.mark.parametrize("branch", BRANCHES, ids=lambda b: b.ref)
def test_the_shipped_trino_catalog_of_each_branch_reads_that_branch(branch: object) -> None:
    from cascade.branching import Branch

    assert isinstance(branch, Branch)
    properties = (CATALOGS / f"{branch.trino_catalog}.properties").read_text()
    uri = re.search(r"^iceberg\.rest-catalog\.uri=(.*)$", properties, re.MULTILINE)
    assert uri is not None
    assert uri.group(1).strip() == "${ENV:NESSIE_URI}/iceberg/" + branch.ref


def test_no_shipped_iceberg_catalog_is_outside_the_model() -> None:
    shipped = {
        path.stem
        for path in CATALOGS.glob("*.properties")
        if "connector.name=iceberg" in path.read_text()
    }
    assert shipped == {b.trino_catalog for b in BRANCHES}


def test_dbt_profiles_take_the_catalog_from_the_model() -> None:
    profiles = yaml.safe_load((REPOSITORY / "transforms" / "dbt" / "profiles.yml").read_text())
    outputs = profiles["cascade"]["outputs"]
    for branch in BRANCHES:
        assert outputs[branch.dbt_target]["type"] == "trino"
        assert outputs[branch.dbt_target]["database"] == "{{ env_var('TRINO_CATALOG') }}"
