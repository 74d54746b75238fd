"""Loading a service's typed settings from a YAML file and LANEGUARD_* environment variables.

Every service (store server, lane node, HQ) has one pydantic-settings class, a
:class:`ServiceSettings`. Values come from, in order of precedence: arguments (command-line
options), environment variables, the YAML file, the defaults in the class; pydantic-settings
merges them (its YAML source). Nested settings merge key by key: a file's
``reconcile: {scan_before_s: 5}`` and ``LANEGUARD_LANE_RECONCILE='{"plu_confidence": 0.7}'``
give both, the environment winning where both set a key.
Every setting has a default so the demo needs no file at all. A bad file fails at start-up with
an error that names the key, not somewhere deep inside the service later.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    YamlConfigSettingsSource,
)

from product_db.errors import LaneGuardError

SettingsT = TypeVar("SettingsT", bound="ServiceSettings")

# The YAML file the settings being built read, if any: a context variable because
# pydantic-settings asks the class, not the call, for its sources.
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("laneguard_config_file", default=None)


class ServiceSettings(BaseSettings):
    """Base of every service's settings: pydantic-settings' own sources in the order above,
    with the YAML file (:func:`load_settings`) below the environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_FILE.get()
        from_file = () if path is None else (YamlConfigSettingsSource(settings_cls, path, "utf-8"),)
        return (init_settings, env_settings, dotenv_settings, *from_file, file_secret_settings)


@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _CONFIG_FILE.set(path)
    try:
        yield
    finally:
        _CONFIG_FILE.reset(token)


class ConfigError(LaneGuardError, ValueError):
    """A configuration file or variable that cannot be used; the message names the key."""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of setting: value at the top level")
    return data


def describe_validation_error(exc: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid configuration"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling)"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def load_settings(
    settings_cls: type[SettingsT], config_file: str | Path | None = None, **overrides: Any
) -> SettingsT:
    """Build ``settings_cls`` from ``config_file`` (optional), the environment and overrides.

    Overrides (e.g. command-line options) win over the environment, which wins over the file.
    """
    path = None if config_file is None else Path(config_file)
    origin = "settings" if path is None else str(path)
    if path is not None:
        # Checked here, not left to the YAML source, which reads a missing file as empty and
        # names neither a bad file nor a misspelt key.
        unknown = sorted(set(_read_yaml(path)) - set(settings_cls.model_fields))
        if unknown:
            raise ConfigError(
                f"{origin}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(settings_cls.model_fields))}"
            )
    try:
        with _reading(path):
            return settings_cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, origin)) from None
