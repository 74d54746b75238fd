"""Reading and writing catalog files (CSV and JSON).

Reading never touches the database: it returns the valid records and every bad row with its
line number (CSV) or item number (JSON) and reason, so the caller can refuse the whole file or
import the good rows and write the bad ones to a reject file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from product_db.errors import LaneGuardError
from product_db.records import (
    ALL_COLUMNS,
    EXPORT_COLUMNS,
    InvalidRowError,
    ProductRecord,
    check_columns,
    parse_row,
)


class CatalogFileError(LaneGuardError, ValueError):
    """The file as a whole cannot be read (empty, not UTF-8, bad JSON, wrong columns)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that failed validation: where it was, why, and its raw content."""

    line: int
    reason: str
    raw: Mapping[str, Any]


@dataclass(slots=True)
class ParsedCatalog:
    records: list[ProductRecord] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    location_word: str = "line"  # "line" for CSV, "item" for JSON

    def describe_rejections(self, limit: int = 20) -> str:
        lines = [f"  {self.location_word} {r.line}: {r.reason}" for r in self.rejected[:limit]]
        if len(self.rejected) > limit:
            lines.append(f"  ... and {len(self.rejected) - limit} more")
        return "\n".join(lines)


def detect_format(path: Path, explicit: str | None = None) -> str:
    fmt = explicit.lower() if explicit else path.suffix.lower().lstrip(".")
    if fmt not in ("csv", "json"):
        raise CatalogFileError(path, f"unknown format {fmt!r}: use a .csv or .json file")
    return fmt


def _validate_rows(
    numbered_rows: Iterable[tuple[int, Mapping[str, Any]]],
    default_currency: str,
    location_word: str,
) -> ParsedCatalog:
    parsed = ParsedCatalog(location_word=location_word)
    first_line_for_code: dict[str, int] = {}
    for line, row in numbered_rows:
        try:
            record = parse_row(row, default_currency)
        except InvalidRowError as exc:
            parsed.rejected.append(RejectedRow(line, str(exc), row))
            continue
        earlier = first_line_for_code.get(record.code)
        if earlier is not None:
            parsed.rejected.append(
                RejectedRow(
                    line,
                    f"code {record.display_code} is the same product as {location_word} {earlier}",
                    row,
                )
            )
            continue
        first_line_for_code[record.code] = line
        parsed.records.append(record)
    return parsed


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CatalogFileError(path, "file not found") from None
    except IsADirectoryError:
        raise CatalogFileError(path, "is a folder, not a file") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogFileError(
            path, f"not UTF-8 text (byte {exc.start}): save the file as UTF-8"
        ) from None


def parse_csv_text(text: str, path: str | Path, default_currency: str = "EUR") -> ParsedCatalog:
    if not text.strip():
        raise CatalogFileError(
            path, "file is empty: expected a header row such as " + ",".join(EXPORT_COLUMNS)
        )
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="__extra__")
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise CatalogFileError(path, "duplicate column(s): " + ", ".join(dupes))
    try:
        check_columns(columns)
    except InvalidRowError as exc:
        raise CatalogFileError(path, str(exc)) from None
    reader.fieldnames = columns

    def numbered() -> Iterable[tuple[int, Mapping[str, Any]]]:
        for row in reader:
            line = reader.line_num
            if "__extra__" in row:
                extra = row.pop("__extra__")
                yield line, {**row, "__error__": f"{len(extra)} more value(s) than columns"}
                continue
            if None in row.values():
                yield line, {**row, "__error__": "fewer values than columns"}
                continue
            if not any((v or "").strip() for v in row.values()):
                continue  # blank line
            yield line, row

    structural = []
    good_rows = []
    for line, row in numbered():
        if "__error__" in row:
            clean = {k: v for k, v in row.items() if k != "__error__"}
            structural.append(RejectedRow(line, str(row["__error__"]), clean))
        else:
            good_rows.append((line, row))
    parsed = _validate_rows(good_rows, default_currency, "line")
    parsed.rejected = sorted(structural + parsed.rejected, key=lambda r: r.line)
    return parsed


def parse_json_text(text: str, path: str | Path, default_currency: str = "EUR") -> ParsedCatalog:
    if not text.strip():
        raise CatalogFileError(path, "file is empty: expected a JSON list of products")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogFileError(path, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if isinstance(data, dict) and isinstance(data.get("products"), list):
        data = data["products"]
    if not isinstance(data, list):
        raise CatalogFileError(path, 'expected a JSON list of products or {"products": [...]}')
    items: list[tuple[int, Mapping[str, Any]]] = []
    structural: list[RejectedRow] = []
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            structural.append(RejectedRow(number, "not a JSON object", {"value": item}))
            continue
        unknown = sorted(set(item) - set(ALL_COLUMNS))
        if unknown:
            structural.append(RejectedRow(number, "unknown field(s): " + ", ".join(unknown), item))
            continue
        items.append((number, item))
    parsed = _validate_rows(items, default_currency, "item")
    parsed.rejected = sorted(structural + parsed.rejected, key=lambda r: r.line)
    return parsed


def read_catalog_file(
    path: str | Path, fmt: str | None = None, default_currency: str = "EUR"
) -> ParsedCatalog:
    """Read and validate a catalog file; raises CatalogFileError for file-level problems."""
    file_path = Path(path)
    kind = detect_format(file_path, fmt)
    text = _read_text(file_path)
    if kind == "csv":
        return parse_csv_text(text, file_path, default_currency)
    return parse_json_text(text, file_path, default_currency)


def write_rejects(path: str | Path, parsed: ParsedCatalog) -> Path:
    """Write the rejected rows with their location and reason, in the input's own format."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        payload = [
            {parsed.location_word: r.line, "error": r.reason, "data": dict(r.raw)}
            for r in parsed.rejected
        ]
        out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return out
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=[parsed.location_word, "error", *ALL_COLUMNS], extrasaction="ignore"
        )
        writer.writeheader()
        for r in parsed.rejected:
            writer.writerow({parsed.location_word: r.line, "error": r.reason, **dict(r.raw)})
    return out


def write_catalog_csv(records: Iterable[ProductRecord], handle: io.TextIOBase | Any) -> int:
    writer = csv.DictWriter(handle, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    count = 0
    for record in records:
        writer.writerow(record.as_export_row())
        count += 1
    return count


def write_catalog_json(records: Iterable[ProductRecord], handle: io.TextIOBase | Any) -> int:
    rows = []
    for record in records:
        row: dict[str, Any] = dict(record.as_export_row())
        row["age_restricted"] = record.age_restricted
        row["active"] = record.active
        row["packaging_version"] = record.packaging_version
        rows.append(row)
    json.dump({"products": rows}, handle, indent=2, ensure_ascii=False)
    handle.write("\n")
    return len(rows)
