"""The layer contracts of `make lint` (import-linter, in pyproject.toml) hold for the code as it
is, and break when an import runs back up a layer or between the lane and the store server.

Each check runs `lint-imports` on a copy of the packages, so an import can be added to the copy
without touching the work tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT

PACKAGES = (
    "product_db",
    "laneguard",
    "checkout_node",
    "store_server",
    "simulator",
    "trainer",
    "harness",
)
LAYERS = "Layers import downwards only (lane and store server apart)"
NO_TORCH = "No torch or ultralytics on the lane or store server"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    """The Python sources of every package and the pyproject holding the contracts."""
    for package in PACKAGES:
        shutil.copytree(
            REPO_ROOT / package,
            tmp_path / package,
            ignore=lambda folder, names: [
                n for n in names if not n.endswith(".py") and not (Path(folder) / n).is_dir()
            ],
        )
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def add_import(root: Path, module: str, statement: str) -> None:
    path = root / module
    path.write_text(path.read_text("utf-8") + f"\n{statement}\n", "utf-8")


def test_the_contracts_hold_for_the_code_as_it_is(source_copy: Path) -> None:
    done = lint_imports(source_copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{LAYERS} KEPT" in done.stdout and f"{NO_TORCH} KEPT" in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("module", "statement", "broken"),
    [
        # the shared ground reaching up into the store server
        ("laneguard/files.py", "import store_server.app", LAYERS),
        # the lane importing its sibling, the store server
        ("checkout_node/lane.py", "from store_server import lanes", LAYERS),
        # the lane reaching up for the simulator again
        ("checkout_node/smoke_test.py", "import simulator.scene", LAYERS),
        # the product importing the harness
        ("store_server/app.py", "import harness.cli", LAYERS),
        # torch on the lane
        ("checkout_node/vision/detector.py", "import torch", NO_TORCH),
    ],
)
def test_an_import_against_the_layers_fails_lint(
    source_copy: Path, module: str, statement: str, broken: str
) -> None:
    add_import(source_copy, module, statement)
    done = lint_imports(source_copy)
    assert done.returncode != 0, f"{module}: '{statement}' passed the contracts"
    assert f"{broken} BROKEN" in done.stdout, done.stdout
