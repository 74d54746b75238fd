"""Catalog operations on the database: import (upsert), export, list and show.

Import is one database transaction: either every accepted row lands or none does. It is an
upsert by code, so importing the same file twice changes nothing, and every price change is
recorded in the price history. Work is done in bulk statements (one SELECT of what exists, then
executemany INSERT/UPDATE) because a store catalog has 100,000+ rows and the import must take
seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from product_db.codes import normalise_code
from product_db.errors import LaneGuardError
from product_db.models import (
    ClassMapEntry,
    PackagingVersion,
    PriceChange,
    Product,
    SoldBy,
    utcnow,
)
from product_db.records import ProductRecord

_PRODUCT = Product.__table__  # type: ignore[attr-defined]
_PRICE = PriceChange.__table__  # type: ignore[attr-defined]
_CLASS = ClassMapEntry.__table__  # type: ignore[attr-defined]
_PACK = PackagingVersion.__table__  # type: ignore[attr-defined]

# Fields compared to decide whether an existing product changed.
_COMPARED = (
    "display_code",
    "name",
    "brand",
    "price_minor",
    "currency",
    "category",
    "sold_by",
    "age_restricted",
    "active",
)


class ProductNotFoundError(LaneGuardError, LookupError):
    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"no product with code {code} in the catalog")


@dataclass(slots=True)
class ImportReport:
    """What an import did. ``price_changes`` counts changes to existing products only."""

    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    price_changes: int = 0
    new_packaging_versions: int = 0
    rejected: int = 0
    changed_codes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.created + self.updated + self.unchanged

    def summary(self) -> str:
        return (
            f"{self.accepted} rows accepted from {self.source}: {self.created} new, "
            f"{self.updated} updated ({self.price_changes} price changes), "
            f"{self.unchanged} unchanged; {self.new_packaging_versions} new packaging versions; "
            f"{self.rejected} rejected"
        )


def _row_values(record: ProductRecord) -> dict[str, Any]:
    return {
        "display_code": record.display_code,
        "name": record.name,
        "brand": record.brand,
        "price_minor": record.price_minor,
        "currency": record.currency,
        "category": record.category,
        "sold_by": record.sold_by.name,
        "age_restricted": record.age_restricted,
        "active": record.active,
    }


def _chunks(rows: Sequence[dict[str, Any]], size: int = 5000) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def import_records(
    engine: Engine,
    records: Sequence[ProductRecord],
    source: str,
    *,
    rejected: int = 0,
    now: datetime | None = None,
) -> ImportReport:
    """Upsert ``records`` by code in one transaction and return what changed.

    New products get class ids (in file order), packaging version 1 (or the version given) and
    a first price-history entry; existing products whose price or currency changed get a
    price-history entry; a packaging_version above the product's latest adds a new version.
    """
    stamp = now or utcnow()
    report = ImportReport(source=source, rejected=rejected)
    with Session(engine) as session, session.begin():
        conn = session.connection()
        existing: dict[str, tuple[Any, ...]] = {
            row[0]: tuple(row[1:])
            for row in conn.execute(
                select(_PRODUCT.c.code, *(_PRODUCT.c[name] for name in _COMPARED))
            )
        }
        latest_version: dict[str, int] = dict(
            conn.execute(
                select(_PACK.c.product_code, func.max(_PACK.c.version)).group_by(
                    _PACK.c.product_code
                )
            ).all()
        )
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        prices: list[dict[str, Any]] = []
        versions: list[dict[str, Any]] = []
        for record in records:
            values = _row_values(record)
            before = existing.get(record.code)
            if before is None:
                inserts.append(
                    {
                        "code": record.code,
                        "code_kind": record.code_kind,
                        "created_at": stamp,
                        "updated_at": stamp,
                        **values,
                    }
                )
                prices.append(_price_row(record, stamp, source))
                versions.append(_version_row(record, record.packaging_version or 1, stamp))
                report.created += 1
                report.changed_codes.append(record.code)
                continue
            after = tuple(values[name] for name in _COMPARED)
            if _normalised(before) != after:
                updates.append({"b_code": record.code, "updated_at": stamp, **values})
                report.updated += 1
                report.changed_codes.append(record.code)
                if (before[3], before[4]) != (record.price_minor, record.currency):
                    prices.append(_price_row(record, stamp, source))
                    report.price_changes += 1
            else:
                report.unchanged += 1
            wanted = record.packaging_version
            if wanted is not None and wanted > latest_version.get(record.code, 0):
                versions.append(_version_row(record, wanted, stamp))
        for chunk in _chunks(inserts):
            conn.execute(insert(_PRODUCT), chunk)
        if inserts:
            class_rows = [{"product_code": r["code"], "assigned_at": stamp} for r in inserts]
            for chunk in _chunks(class_rows):
                conn.execute(insert(_CLASS), chunk)
        if updates:
            statement = (
                update(_PRODUCT)
                .where(_PRODUCT.c.code == bindparam("b_code"))
                .values({name: bindparam(name) for name in (*_COMPARED, "updated_at")})
            )
            for chunk in _chunks(updates):
                conn.execute(statement, chunk)
        for chunk in _chunks(prices):
            conn.execute(insert(_PRICE), chunk)
        for chunk in _chunks(versions):
            conn.execute(insert(_PACK), chunk)
        report.new_packaging_versions = len(versions) - report.created
    return report


def _normalised(before: tuple[Any, ...]) -> tuple[Any, ...]:
    """Existing column values in the form _row_values produces (enum name, plain bools)."""
    values = list(before)
    sold_by = values[6]
    values[6] = sold_by.name if isinstance(sold_by, SoldBy) else str(sold_by)
    values[7] = bool(values[7])
    values[8] = bool(values[8])
    return tuple(values)


def _price_row(record: ProductRecord, stamp: datetime, source: str) -> dict[str, Any]:
    return {
        "product_code": record.code,
        "price_minor": record.price_minor,
        "currency": record.currency,
        "changed_at": stamp,
        "source": source[:200],
    }


def _version_row(record: ProductRecord, version: int, stamp: datetime) -> dict[str, Any]:
    return {
        "product_code": record.code,
        "version": version,
        "first_seen": stamp,
        "note": record.packaging_note,
    }


def _record_from_product(product: Product, version: int | None) -> ProductRecord:
    return ProductRecord(
        code=product.code,
        display_code=product.display_code,
        code_kind=product.code_kind,
        name=product.name,
        brand=product.brand,
        price_minor=product.price_minor,
        currency=product.currency,
        category=product.category,
        sold_by=SoldBy(product.sold_by),
        age_restricted=product.age_restricted,
        active=product.active,
        packaging_version=version,
    )


def list_products(
    engine: Engine,
    *,
    search: str | None = None,
    category: str | None = None,
    include_inactive: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[ProductRecord]:
    """Products ordered by name; ``search`` matches name, brand or code (case-insensitive)."""
    versions = (
        select(_PACK.c.product_code, func.max(_PACK.c.version).label("version"))
        .group_by(_PACK.c.product_code)
        .subquery()
    )
    query = (
        select(Product, versions.c.version)
        .outerjoin(versions, versions.c.product_code == col(Product.code))
        .order_by(col(Product.name), col(Product.code))
    )
    if not include_inactive:
        query = query.where(col(Product.active).is_(True))
    if category:
        query = query.where(col(Product.category) == category)
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(
            or_(
                func.lower(Product.name).like(pattern),
                func.lower(Product.brand).like(pattern),
                col(Product.code).like(f"%{search}%"),
            )
        )
    if limit is not None:
        query = query.limit(limit).offset(offset)
    with Session(engine) as session:
        return [_record_from_product(p, v) for p, v in session.execute(query).all()]


def export_records(engine: Engine) -> list[ProductRecord]:
    """Every product, inactive ones included, ordered by code: a file import can round-trip."""
    records = list_products(engine, include_inactive=True)
    return sorted(records, key=lambda r: r.code)


@dataclass(frozen=True, slots=True)
class ProductDetail:
    record: ProductRecord
    class_id: int | None
    packaging_versions: list[PackagingVersion]
    price_history: list[PriceChange]
    created_at: datetime
    updated_at: datetime


def get_product(engine: Engine, code: str) -> ProductDetail:
    """Everything known about one product; ``code`` may be in any valid form."""
    key = normalise_code(code)
    with Session(engine) as session:
        product = session.get(Product, key)
        if product is None:
            raise ProductNotFoundError(code)
        versions = list(
            session.execute(
                select(PackagingVersion)
                .where(col(PackagingVersion.product_code) == key)
                .order_by(col(PackagingVersion.version))
            ).scalars()
        )
        prices = list(
            session.execute(
                select(PriceChange)
                .where(col(PriceChange.product_code) == key)
                .order_by(col(PriceChange.changed_at), col(PriceChange.id))
            ).scalars()
        )
        class_id = session.execute(
            select(col(ClassMapEntry.class_id)).where(col(ClassMapEntry.product_code) == key)
        ).scalar_one_or_none()
        latest = versions[-1].version if versions else None
        return ProductDetail(
            record=_record_from_product(product, latest),
            class_id=class_id,
            packaging_versions=versions,
            price_history=prices,
            created_at=product.created_at,
            updated_at=product.updated_at,
        )


def class_map(engine: Engine) -> dict[int, str]:
    """Every class id ever assigned, with its product code (inactive products included)."""
    with Session(engine) as session:
        rows = session.execute(select(col(ClassMapEntry.class_id), col(ClassMapEntry.product_code)))
        return {int(class_id): code for class_id, code in rows}
