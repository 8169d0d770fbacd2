"""The lakehouse profile's dbt target: chosen by NESSIE_REF, refused clearly when it cannot work."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cascade.config import load_settings
from cascade.exceptions import TransformError
from cascade.transform import transform
from cascade.transform.trino import trino_target


def test_the_branch_picks_the_target_and_trino_comes_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        cascade_profile="lakehouse",
        cascade_home=tmp_path,
        trino_host="trino.internal",
        trino_port=8443,
        trino_user="dbt",
        nessie_ref="main",
    )
    prod = trino_target(settings, threads=3)
    assert prod.name == "prod"
    assert prod.environment == {
        "TRINO_HOST": "trino.internal",
        "TRINO_PORT": "8443",
        "TRINO_USER": "dbt",
        "TRINO_CATALOG": "iceberg",  # main's catalog in the branch model
        "CASCADE_DBT_THREADS": "3",
    }
    assert prod.target_dir == tmp_path.resolve() / "dbt" / "prod" / "target"
    dev = trino_target(settings.with_values(**{"nessie_ref": "dev"}))
    assert dev.environment["TRINO_CATALOG"] == "iceberg_dev"
    assert dev.name == "dev" and dev.log_dir == tmp_path.resolve() / "dbt" / "dev" / "logs"


def test_a_branch_without_a_trino_catalog_is_refused(tmp_path: Path) -> None:
    settings = load_settings(
        cascade_profile="lakehouse", cascade_home=tmp_path, nessie_ref="feature-x"
    )
    with pytest.raises(
        TransformError, match=r"NESSIE_REF='feature-x' has no Trino catalog.*main.*dev"
    ):
        transform(settings)


def test_an_unreachable_trino_says_what_to_start(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    settings = load_settings(cascade_profile="lakehouse", cascade_home=tmp_path, trino_port=port)
    with pytest.raises(
        TransformError,
        match=rf"Trino at http://127.0.0.1:{port} is not reachable.*cascade stack up",
    ):
        transform(settings)
    assert not (tmp_path / "dbt").exists()  # dbt never started
