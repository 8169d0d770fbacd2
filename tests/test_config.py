from __future__ import annotations

import re
from pathlib import Path

import pytest

from cascade.config import Settings, load_settings, variable_names
from cascade.exceptions import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]


def test_env_example_documents_every_setting() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert variable_names() <= documented
    assert len(variable_names()) > 60  # every section, the stack's included


def test_every_variable_is_read_by_exactly_one_field() -> None:
    read_by: dict[str, list[str]] = {}
    for section, model in Settings.SECTIONS.items():
        for field_name, info in model.model_fields.items():
            name = str(info.validation_alias.choices[0])  # type: ignore[union-attr]
            read_by.setdefault(name, []).append(f"{section}.{field_name}")
    assert {n: f for n, f in read_by.items() if len(f) > 1} == {}


def test_overrides_use_the_variables_names_and_copies_are_validated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NESSIE_REF", "dev")
    settings = load_settings(CASCADE_HOME=tmp_path / "lake", trino_port=8181)
    assert (settings.nessie.ref, settings.trino.port) == ("dev", 8181)
    assert settings.lake.home == tmp_path / "lake"
    main = settings.with_values(NESSIE_REF="main")
    assert (main.nessie.ref, settings.nessie.ref) == ("main", "dev")
    assert main.trino == settings.trino
    with pytest.raises(ConfigurationError, match="NESSIE_REF"):
        settings.with_values(NESSIE_REF="no..dots")
    with pytest.raises(TypeError, match="NESSIE_BRANCH"):
        load_settings(NESSIE_BRANCH="dev")


@pytest.mark.parametrize("ref", ["dev..x", "1dev", "dev/", "a b", "dev?x=1", "dev\n"])
def test_nessie_ref_is_checked_before_it_goes_into_a_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ref: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NESSIE_REF", ref)
    with pytest.raises(ConfigurationError, match=r"NESSIE_REF: .*not a valid Nessie branch name"):
        load_settings()


def test_the_local_stack_view_points_every_endpoint_at_the_stack(tmp_path: Path) -> None:
    settings = load_settings(
        CASCADE_HOME=tmp_path, STACK_HOST="127.0.0.2", NESSIE_PORT=1, MINIO_PORT=2, TRINO_PORT=3
    )
    lakehouse = settings.on_local_stack("dev")
    assert lakehouse.lake.profile.value == "lakehouse"
    assert lakehouse.nessie.catalog_uri == "http://127.0.0.2:1/iceberg/dev"
    assert lakehouse.s3.endpoint == "http://127.0.0.2:2"
    assert lakehouse.s3.secret_access_key == settings.stack.minio_root_password
    assert (lakehouse.trino.host, lakehouse.trino.port) == ("127.0.0.2", 3)
    assert settings.stack_home == (tmp_path / "stack").resolve()


def test_nothing_below_the_cli_reads_the_environment() -> None:
    """Settings are read once, by an entry point, and passed down."""
    package = ROOT / "src" / "cascade"
    readers = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.rglob("*.py"))
        if path.parent.name != "cli"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"os\.environ|getenv\(", line)
    ]
    assert readers == []


def test_only_entry_points_read_the_settings() -> None:
    """Below the CLI, settings arrive as an argument: no module loads its own."""
    package = ROOT / "src" / "cascade"
    loaders = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.rglob("*.py"))
        if path.parent.name != "cli" and path.name not in {"config.py", "__main__.py"}
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\b(load_settings|get_settings)\(", line)
    ]
    assert loaders == []


def test_many_sites_from_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "NIGHTSCOUT_SITES",
        '[{"id": "alice", "url": "https://a.example/", "token": "tok-123"}, {"id": "bob", "url": "http://b.example"}]',
    )
    settings = load_settings()
    assert [(s.id, s.url) for s in settings.nightscout.sites()] == [
        ("alice", "https://a.example"),
        ("bob", "http://b.example"),
    ]
    assert "tok-123" not in repr(settings.nightscout.sites())


def test_single_site_defaults_and_home_layout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NIGHTSCOUT_SITES", raising=False)
    monkeypatch.setenv("NIGHTSCOUT_URL", "https://me.example")
    monkeypatch.setenv("NIGHTSCOUT_API_SECRET", "super-secret-value")
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "h"))
    settings = load_settings()
    (site,) = settings.nightscout.sites()
    assert (site.id, site.api_secret.get_secret_value()) == ("default", "super-secret-value")  # type: ignore[union-attr]
    assert settings.lake.warehouse_path == (tmp_path / "h" / "warehouse").resolve()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NIGHTSCOUT_SITES", '[{"id": "Bad Id", "url": "http://x"}]', "site id"),
        ("NIGHTSCOUT_SITES", '[{"id": "a", "url": "http://user:pw@x"}]', "credentials"),
        ("CASCADE_PROFILE", "cloud", "CASCADE_PROFILE"),
        ("NIGHTSCOUT_PAGE_SIZE", "5", "NIGHTSCOUT_PAGE_SIZE"),
    ],
)
def test_invalid_settings_give_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message) as excinfo:
        load_settings()
    assert "pw@" not in str(excinfo.value)


def test_the_variables_of_settings_rebuild_the_same_settings(tmp_path: Path) -> None:
    settings = load_settings(CASCADE_HOME=tmp_path, NESSIE_REF="dev", MARTS_SCHEMA="bi")
    variables = settings.variables()
    assert variables["NESSIE_REF"] == "dev" and variables["CASCADE_HOME"] == tmp_path
    assert set(variables) == variable_names()
    assert load_settings(**variables) == settings


def test_a_field_is_never_read_from_its_own_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """HOME, USER, HOST and friends are the shell's, not Cascade's: only the named variables count."""
    monkeypatch.chdir(tmp_path)
    for section, model in Settings.SECTIONS.items():
        for field_name in model.model_fields:
            monkeypatch.delenv(f"{section}_{field_name}".upper(), raising=False)
    defaults = load_settings(CASCADE_HOME=tmp_path)
    for name in ("HOME", "USER", "HOST", "REF", "URI", "PORT", "REGION", "ENDPOINT", "SITE_LIST"):
        monkeypatch.setenv(name, "9" if name == "PORT" else "from-the-shell")
    assert load_settings(CASCADE_HOME=tmp_path) == defaults
    monkeypatch.delenv("CASCADE_HOME", raising=False)
    assert load_settings().lake.home != Path("from-the-shell")
