"""Loading a service's typed settings from a YAML file and LANEGUARD_* environment variables.

Every service (store server, lane node, trainer) has one pydantic-settings class. Values come
from, in order of precedence: environment variables, the YAML file, the defaults in the class.
Every setting has a default so the demo needs no file at all. A bad file fails at start-up with
an error that names the key, not somewhere deep inside the service later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from product_db.errors import LaneGuardError

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


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
    file_values: dict[str, Any] = {}
    origin = "settings"
    if config_file is not None:
        path = Path(config_file)
        file_values = _read_yaml(path)
        origin = str(path)
    known = set(settings_cls.model_fields)
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    clean_overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        # Init arguments outrank the environment in pydantic-settings, so only the file values
        # that the environment does not set are passed as init arguments.
        from_env = settings_cls()
        env_set = from_env.model_fields_set
        merged = {k: v for k, v in file_values.items() if k not in env_set}
        merged.update(clean_overrides)
        return settings_cls(**merged)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, origin)) from None
