"""Catalog import benchmark: a synthetic store catalog of N rows, imported into a fresh database.

Target: 100,000 rows in under 10 s on the 2-core build machine, SQLite.
"""

from __future__ import annotations

import csv
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.codes import gtin_check_digit
from product_db.db import create_tables, make_engine

CATEGORIES = ("dairy", "bakery", "beverages", "snacks", "pantry", "frozen", "household")


def write_synthetic_catalog(path: Path, rows: int, seed: int = 0, price_bump: int = 0) -> None:
    """A CSV of ``rows`` distinct valid EAN-13 products (restricted-circulation prefix 20)."""
    rnd = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["code", "name", "brand", "price", "currency", "category"])
        for i in range(rows):
            body = f"20{i:010d}"
            code = body + str(gtin_check_digit(body))
            cents = rnd.randint(19, 4999) + price_bump * (i % 10 == 0)
            writer.writerow(
                [
                    code,
                    f"Product {i} {rnd.choice(['500 g', '1 l', '6 pack', '250 ml'])}",
                    f"Brand {i % 997}",
                    f"{cents // 100}.{cents % 100:02d}",
                    "EUR",
                    CATEGORIES[i % len(CATEGORIES)],
                ]
            )


def run(rows: int = 100_000, database_url: str | None = None) -> dict[str, Any]:
    """Time a first import, an idempotent re-import and an import with 10% price changes."""
    with tempfile.TemporaryDirectory(prefix="laneguard-bench-") as tmp:
        folder = Path(tmp)
        first_file, changed_file = folder / "catalog.csv", folder / "catalog-changed.csv"
        write_synthetic_catalog(first_file, rows)
        write_synthetic_catalog(changed_file, rows, price_bump=7)
        engine = make_engine(database_url or f"sqlite:///{folder / 'bench.sqlite3'}")
        create_tables(engine)
        results: dict[str, Any] = {"rows": rows, "database": engine.dialect.name}
        for label, path in (
            ("first", first_file),
            ("reimport", first_file),
            ("price_changes", changed_file),
        ):
            start = time.perf_counter()
            parsed = read_catalog_file(path)
            parsed_at = time.perf_counter()
            report = import_records(engine, parsed.records, source=path.name)
            done = time.perf_counter()
            results[label] = {
                "seconds": round(done - start, 3),
                "parse_seconds": round(parsed_at - start, 3),
                "db_seconds": round(done - parsed_at, 3),
                "rows_per_second": round(rows / (done - start)),
                "created": report.created,
                "updated": report.updated,
                "price_changes": report.price_changes,
            }
        engine.dispose()
    results["target_seconds"] = 10.0
    results["meets_target"] = results["first"]["seconds"] < 10.0
    return results
