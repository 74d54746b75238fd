"""The `laneguard` command as a store's IT person uses it: real processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from product_db import SAMPLE_CATALOG

LANEGUARD = [sys.executable, "-m", "laneguard.cli"]


def run(*args: str, db: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env_db = f"sqlite:///{db}"
    result = subprocess.run(
        [*LANEGUARD, *args],
        capture_output=True,
        text=True,
        env={"LANEGUARD_DATABASE_URL": env_db, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"laneguard {' '.join(args)} failed:\n{result.stderr}")
    return result


def test_help_lists_every_group_without_importing_them() -> None:
    code = (
        "import sys; from laneguard.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('sqlmodel', 'sqlalchemy', 'fastapi', 'cv2', 'torch', "
        "'ultralytics', 'onnxruntime') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    for group in ("catalog", "server", "bench", "demo"):
        assert f"  {group} " in out
    assert "HEAVY []" in out


def test_catalog_import_list_show_export(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite3"
    first = run("catalog", "import", str(SAMPLE_CATALOG), db=db)
    assert "90 new" in first.stdout
    again = run("catalog", "import", str(SAMPLE_CATALOG), db=db)
    assert "90 unchanged" in again.stdout
    listed = run("catalog", "list", "--search", "banana", "--json", db=db)
    (banana,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert banana["code"] == "4011" and banana["sold_by"] == "weight"
    shown = json.loads(run("catalog", "show", "4011", "--json", db=db).stdout)
    assert shown["class_id"] >= 1 and shown["price_history"][0]["price_minor"] == 179
    human = run("catalog", "show", "4011", db=db).stdout
    assert "Banana" in human and "1.79 EUR per kg" in human
    out = tmp_path / "export.json"
    run("catalog", "export", "--format", "json", "--out", str(out), db=db)
    assert len(json.loads(out.read_text("utf-8"))["products"]) == 90


def test_bad_file_imports_nothing_unless_skip_invalid(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite3"
    catalog = tmp_path / "prices.csv"
    catalog.write_text(
        "code,name,price\n4006381333931,Pen,1.50\n4006381333932,Typo,2.00\n4011,Banana,1.79\n"
    )
    refused = run("catalog", "import", str(catalog), db=db, check=False)
    assert refused.returncode == 1
    assert "line 3: code: check digit is 2 but should be 1" in refused.stderr
    assert "nothing was imported" in refused.stderr
    assert run("catalog", "list", db=db).stdout == ""

    accepted = run("catalog", "import", str(catalog), "--skip-invalid", db=db)
    assert "2 new" in accepted.stdout and "1 rejected" in accepted.stdout
    rejects = tmp_path / "prices.csv.rejects.csv"
    assert rejects.exists()
    assert "4006381333932" in rejects.read_text() and "check digit" in rejects.read_text()
    assert len(run("catalog", "list", db=db).stdout.splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("catalog", "show", "123"), "neither a PLU"),
        (("catalog", "show", "4011"), "no product with code 4011"),
        (("catalog", "import", "/nonexistent/file.csv"), "file not found"),
        (("catalog", "import", "prices.xlsx"), "unknown format 'xlsx'"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run(*args, db=tmp_path / "db.sqlite3", check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
