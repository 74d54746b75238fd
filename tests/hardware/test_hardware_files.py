"""hardware/: the systemd units start real `laneguard` commands with options that exist, the
shell scripts parse, and the udev rules use only keys udev knows."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess

import pytest
from click.testing import CliRunner

from laneguard.cli import main
from tests.helpers.paths import REPO_ROOT

HARDWARE = REPO_ROOT / "hardware"


@pytest.mark.parametrize(
    "unit", ["systemd/laneguard-node.service", "systemd/laneguard-server.service"]
)
def test_systemd_units_run_commands_that_exist(unit: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(HARDWARE / unit)
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    command = shlex.split(parser["Service"]["ExecStart"])
    assert command[0] == "/opt/laneguard/venv/bin/laneguard"
    group, sub = command[1], command[2]
    help_text = CliRunner().invoke(main, [group, sub, "--help"]).output
    for option in (word for word in command[3:] if word.startswith("--")):
        assert option in help_text, f"{unit}: {group} {sub} has no option {option}"
    assert parser["Service"]["Restart"] == "always"


def test_scripts_parse() -> None:
    for script in [*HARDWARE.glob("scripts/*.sh"), *HARDWARE.glob("kiosk/*.sh")]:
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_udev_rules_use_known_keys() -> None:
    known = {"SUBSYSTEM", "KERNEL", "ATTRS", "GROUP", "MODE", "SYMLINK"}
    rules = [
        line
        for line in (HARDWARE / "udev/99-laneguard-scanners.rules").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(rules) == 2
    for rule in rules:
        keys = {re.match(r"\s*([A-Z]+)", part).group(1) for part in rule.split(",")}  # type: ignore[union-attr]
        assert keys <= known, keys
