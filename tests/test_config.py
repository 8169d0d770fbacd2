from __future__ import annotations

import re
from pathlib import Path

import pytest

from cascade.config import Settings, load_settings
from cascade.exceptions import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]


def test_env_example_documents_every_setting() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert {name.upper() for name in Settings.model_fields} <= documented


def test_many_sites_from_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "NIGHTSCOUT_SITES",
        '[{"id": "alice", "url": "https://a.example/", "token": "tok-123"}, {"id": "bob", "url": "http://b.example"}]',
    )
    settings = load_settings()
    assert [(s.id, s.url) for s in settings.sites()] == [
        ("alice", "https://a.example"),
        ("bob", "http://b.example"),
    ]
    assert "tok-123" not in repr(settings.sites())


def test_single_site_defaults_and_home_layout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NIGHTSCOUT_SITES", raising=False)
    monkeypatch.setenv("NIGHTSCOUT_URL", "https://me.example")
    monkeypatch.setenv("NIGHTSCOUT_API_SECRET", "super-secret-value")
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "h"))
    settings = load_settings()
    (site,) = settings.sites()
    assert (site.id, site.api_secret.get_secret_value()) == ("default", "super-secret-value")  # type: ignore[union-attr]
    assert settings.warehouse_path == (tmp_path / "h" / "warehouse").resolve()


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


def test_env_example_documents_every_stack_setting() -> None:
    from cascade_dev.stack import StackSettings

    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert {name.upper() for name in StackSettings.model_fields} <= documented
