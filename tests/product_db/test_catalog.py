"""Catalog import, export and lookup against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from product_db import SAMPLE_CATALOG
from product_db.catalog import (
    ProductNotFoundError,
    class_map,
    export_records,
    get_product,
    import_records,
    list_products,
)
from product_db.catalog_io import (
    CatalogFileError,
    parse_csv_text,
    read_catalog_file,
    write_catalog_csv,
    write_catalog_json,
    write_rejects,
)
from product_db.models import PriceChange, Product

HEADER = "code,name,brand,price,currency,category\n"


def _import_text(engine: Engine, text: str, name: str = "cat.csv"):  # type: ignore[no-untyped-def]
    parsed = parse_csv_text(text, name)
    assert not parsed.rejected, parsed.describe_rejections()
    return import_records(engine, parsed.records, source=name)


def _count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_sample_catalog_imports_and_reimport_is_idempotent(engine: Engine) -> None:
    parsed = read_catalog_file(SAMPLE_CATALOG)
    assert not parsed.rejected
    assert len(parsed.records) == 90
    first = import_records(engine, parsed.records, source="sample")
    assert (first.created, first.updated, first.unchanged) == (90, 0, 0)
    second = import_records(engine, parsed.records, source="sample")
    assert (second.created, second.updated, second.unchanged, second.price_changes) == (
        0,
        0,
        90,
        0,
    )
    assert _count(engine, Product) == 90
    assert _count(engine, PriceChange) == 90  # one initial price each, no duplicates
    produce = [r for r in list_products(engine) if r.code_kind == "plu"]
    assert len(produce) == 50


def test_price_change_is_recorded_and_updates_product(engine: Engine) -> None:
    _import_text(engine, HEADER + "4006381333931,Pen,Stabilo,1.50,EUR,office\n")
    report = _import_text(engine, HEADER + "4006381333931,Pen,Stabilo,1.75,EUR,office\n")
    assert (report.updated, report.price_changes) == (1, 1)
    detail = get_product(engine, "4006381333931")
    assert detail.record.price_minor == 175
    assert [p.price_minor for p in detail.price_history] == [150, 175]
    # A name change alone is an update but not a price change.
    report = _import_text(engine, HEADER + "4006381333931,Pen fine,Stabilo,1.75,EUR,office\n")
    assert (report.updated, report.price_changes) == (1, 0)
    assert len(get_product(engine, "4006381333931").price_history) == 2


def test_same_product_in_another_form_updates_not_duplicates(engine: Engine) -> None:
    _import_text(engine, HEADER + "036000291452,Tissues,Kleenex,2.00,USD,household\n")
    report = _import_text(engine, HEADER + "0036000291452,Tissues,Kleenex,2.00,USD,household\n")
    assert report.created == 0 and report.updated == 1  # display form changed only
    assert _count(engine, Product) == 1
    assert get_product(engine, "00036000291452").record.display_code == "0036000291452"


def test_class_ids_are_stable_and_never_reused(engine: Engine) -> None:
    _import_text(engine, HEADER + "96385074,A,,1,EUR,\n4006381333931,B,,1,EUR,\n")
    ids = class_map(engine)
    assert sorted(ids.values()) == ["00000096385074", "04006381333931"]
    # Deactivate one, add another: the old ids stay, the new id is new.
    text = "code,name,price,active\n96385074,A,1,false\n4011,Banana,1.79,true\n"
    _import_text(engine, text)
    after = class_map(engine)
    assert {k: v for k, v in after.items() if k in ids} == ids
    (new_id,) = set(after) - set(ids)
    assert new_id > max(ids)
    assert after[new_id] == "4011"
    assert not get_product(engine, "96385074").record.active
    assert "A" not in {r.name for r in list_products(engine)}
    assert "A" in {r.name for r in list_products(engine, include_inactive=True)}


def test_packaging_versions_are_added_not_replaced(engine: Engine) -> None:
    base = "code,name,price,packaging_version,packaging_note\n"
    _import_text(engine, base + "4006381333931,Pen,1.5,1,\n")
    _import_text(engine, base + "4006381333931,Pen,1.5,2,summer redesign\n")
    _import_text(engine, base + "4006381333931,Pen,1.5,2,summer redesign\n")
    _import_text(engine, base + "4006381333931,Pen,1.5,1,\n")  # an old file does not go back
    versions = get_product(engine, "4006381333931").packaging_versions
    assert [(v.version, v.note) for v in versions] == [(1, ""), (2, "summer redesign")]


def test_bad_rows_are_reported_with_line_numbers_and_reason(tmp_path: Path) -> None:
    text = (
        HEADER
        + "4006381333931,Good,,1.00,EUR,\n"
        + "4006381333932,Bad check digit,,1.00,EUR,\n"
        + "96385074,Negative,,-1,EUR,\n"
        + "4011,Too precise,,1.005,EUR,\n"
        + "4012,Not a number,,abc,EUR,\n"
        + "4013,,,1.00,EUR,\n"
        + "4014,Bad currency,,1.00,EURO,\n"
        + "4006381333931,Duplicate,,1.00,EUR,\n"
        + "04006381333931,Duplicate in GTIN-14 form,,1.00,EUR,\n"
        + "4015,Too many,,1.00,EUR,x,y\n"
        + "4016,Yen,,120,JPY,\n"
        + "4017,Yen with decimals,,120.5,JPY,\n"
    )
    parsed = parse_csv_text(text, "cat.csv")
    reasons = {r.line: r.reason for r in parsed.rejected}
    assert [r.code for r in parsed.records] == ["04006381333931", "4016"]
    assert "check digit" in reasons[3]
    assert "negative" in reasons[4]
    assert "more than 2 decimals" in reasons[5]
    assert "not a number" in reasons[6]
    assert "name is empty" in reasons[7]
    assert "unknown currency 'EURO'" in reasons[8]
    assert "same product as line 2" in reasons[9]
    assert "same product as line 2" in reasons[10]
    assert "more value(s) than columns" in reasons[11]
    assert "more than 0 decimals" in reasons[13]
    rejects = write_rejects(tmp_path / "rejects.csv", parsed)
    content = rejects.read_text("utf-8")
    assert content.startswith("line,error,code,")
    assert "4006381333932" in content and "check digit" in content


def test_quoted_multiline_fields_keep_real_line_numbers() -> None:
    text = HEADER + '4006381333931,"Pen,\nblue",,1,EUR,\n96385075,Bad,,1,EUR,\n'
    parsed = parse_csv_text(text, "cat.csv")
    assert "control characters" in parsed.rejected[0].reason  # the newline inside the name
    assert parsed.rejected[0].line == 3
    assert parsed.rejected[1].line == 4 and "check digit" in parsed.rejected[1].reason


def test_unicode_names_and_bom_survive_round_trip(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "unicode.csv"
    text = HEADER + "4006381333931,Smörgåstårta 🎂 ½ kg,Café Ñandú,12.90,SEK,bakery\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    parsed = read_catalog_file(path)
    import_records(engine, parsed.records, source=path.name)
    record = get_product(engine, "4006381333931").record
    assert record.name == "Smörgåstårta 🎂 ½ kg" and record.brand == "Café Ñandú"
    out = io.StringIO()
    write_catalog_csv(export_records(engine), out)
    assert "Smörgåstårta 🎂 ½ kg" in out.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"   \n\n", "file is empty"),
        (b"code,name\n4011,Banana\n", "missing column(s): price (or price_minor)"),
        (b"name,price\nBanana,1\n", "missing column(s): code"),
        (b"code,name,price,prce\n4011,Banana,1,1\n", "unknown column(s): 'prce'"),
        (b"code,name,price,name\n4011,Banana,1,x\n", "duplicate column(s): name"),
        (b"code,name,price\n4011,Bj\xf6rn,1\n", "not UTF-8"),
    ],
)
def test_file_level_problems_are_clear(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "catalog.csv"
    path.write_bytes(content)
    with pytest.raises(CatalogFileError) as info:
        read_catalog_file(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_header_only_file_imports_nothing(engine: Engine) -> None:
    parsed = parse_csv_text(HEADER, "empty.csv")
    assert parsed.records == [] and parsed.rejected == []
    assert import_records(engine, parsed.records, source="empty.csv").accepted == 0


def test_json_import_and_export_round_trip(engine: Engine, tmp_path: Path) -> None:
    parsed = read_catalog_file(SAMPLE_CATALOG)
    import_records(engine, parsed.records, source="sample")
    path = tmp_path / "catalog.json"
    with path.open("w", encoding="utf-8") as handle:
        write_catalog_json(export_records(engine), handle)
    data = json.loads(path.read_text("utf-8"))
    assert len(data["products"]) == 90
    again = read_catalog_file(path)
    assert not again.rejected
    report = import_records(engine, again.records, source=path.name)
    assert report.unchanged == 90 and report.updated == 0


def test_csv_export_round_trips(engine: Engine, tmp_path: Path) -> None:
    import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        write_catalog_csv(export_records(engine), handle)
    report = import_records(engine, read_catalog_file(path).records, source=path.name)
    assert (report.unchanged, report.updated, report.created) == (90, 0, 0)


def test_json_bad_items_are_reported_by_item_number(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            [
                {"code": "4011", "name": "Banana", "price": "1.79"},
                "not an object",
                {"code": "4012", "name": "Orange", "price": "1.99", "colour": "orange"},
                {"code": 36000291452, "name": "Number code loses its zero", "price": 1},
            ]
        )
    )
    parsed = read_catalog_file(path)
    assert [r.code for r in parsed.records] == ["4011"]
    reasons = {r.line: r.reason for r in parsed.rejected}
    assert reasons[2] == "not a JSON object"
    assert "unknown field(s): colour" in reasons[3]
    assert "11 digits" in reasons[4]
    assert parsed.location_word == "item"


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('[\n{"code": "4011",\n]')
    with pytest.raises(CatalogFileError, match="invalid JSON at line"):
        read_catalog_file(path)


def test_failed_import_leaves_database_untouched(engine: Engine) -> None:
    _import_text(engine, HEADER + "4006381333931,Pen,,1.50,EUR,\n")
    good = parse_csv_text(HEADER + "96385074,New,,1.00,EUR,\n", "x.csv").records
    # The same record twice violates the primary key inside the database: the whole import
    # must roll back, so the good row does not land and the earlier product is untouched.
    with pytest.raises(IntegrityError):
        import_records(engine, [good[0], good[0]], source="x.csv")
    assert {r.code for r in list_products(engine)} == {"04006381333931"}
    assert _count(engine, PriceChange) == 1


def test_show_unknown_product(engine: Engine) -> None:
    with pytest.raises(ProductNotFoundError, match="no product with code 4011"):
        get_product(engine, "4011")


def test_list_search_and_category(engine: Engine) -> None:
    import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
    apples = list_products(engine, search="apple")
    assert {r.name for r in apples} >= {"Granny Smith apple", "Pink Lady apple"}
    dairy = list_products(engine, category="dairy")
    assert dairy and all(r.category == "dairy" for r in dairy)
    assert [r.name for r in list_products(engine, search="4011")] == ["Banana"]
    assert len(list_products(engine, limit=10, offset=85)) == 5
