"""Settings: YAML file, LANEGUARD_* variables, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from laneguard.settings import ConfigError, load_settings
from store_server.settings import StoreSettings


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANEGUARD_PORT", raising=False)
    settings = load_settings(StoreSettings)
    assert settings.port == 8000 and settings.database_url.startswith("sqlite:///")


def test_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "store.yaml"
    config.write_text("port: 9000\nstore_name: Corner Shop\nhost: 0.0.0.0\n")
    monkeypatch.setenv("LANEGUARD_PORT", "9100")
    settings = load_settings(StoreSettings, config, host="127.0.0.2")
    assert settings.store_name == "Corner Shop"  # from the file
    assert settings.port == 9100  # the environment wins over the file
    assert settings.host == "127.0.0.2"  # a command-line option wins over both


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prot: 9000\n", "unknown setting(s) prot"),
        ("port: 70000\n", "port: Input should be less than or equal to 65535"),
        ("port: [1, 2]\n", "port:"),
        ("- a\n- b\n", "expected a mapping"),
        ("port: : :\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "store.yaml"
    config.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings(StoreSettings, config)
    assert message in str(info.value)
    assert str(config) in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(StoreSettings, tmp_path / "nope.yaml")
