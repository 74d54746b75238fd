"""Catalog tables.

- ``Product``: one row per code (GTIN-14 or PLU key). Products are deactivated, never deleted,
  because alerts, transactions and training samples keep referring to them.
- ``PackagingVersion``: a product's look changes (a redesign) while its code stays; the
  simulator renders per version and the gallery keeps reference vectors per version.
- ``PriceChange``: every price a product has had, so analytics value an old alert at the price
  of its day.
- ``ClassMapEntry``: the stable integer id a model uses for a product. Ids are handed out once
  and never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL; rows are never deleted),
  so a model trained last month still means the same products today.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware UTC now: every timestamp LaneGuard stores is UTC."""
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """A stored timestamp, timezone-aware: SQLite hands back naive datetimes for what was
    stored as UTC (PostgreSQL keeps the zone)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


class SoldBy(str, Enum):
    unit = "unit"
    weight = "weight"


class Product(SQLModel, table=True):
    __tablename__ = "product"

    code: str = Field(primary_key=True, max_length=14, description="GTIN-14 or PLU key")
    display_code: str = Field(max_length=14, description="the code in the form it came in")
    code_kind: str = Field(max_length=4, description="gtin or plu")
    name: str = Field(max_length=200)
    brand: str = Field(default="", max_length=120)
    price_minor: int = Field(ge=0, description="price in the currency's minor unit")
    currency: str = Field(max_length=3)
    category: str = Field(default="", max_length=80, index=True)
    sold_by: SoldBy = Field(default=SoldBy.unit)
    age_restricted: bool = Field(default=False)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PackagingVersion(SQLModel, table=True):
    __tablename__ = "packaging_version"
    __table_args__ = (UniqueConstraint("product_code", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    product_code: str = Field(foreign_key="product.code", index=True, max_length=14)
    version: int = Field(ge=1)
    first_seen: datetime = Field(default_factory=utcnow)
    note: str = Field(default="", max_length=200)


class PriceChange(SQLModel, table=True):
    __tablename__ = "price_change"

    id: int | None = Field(default=None, primary_key=True)
    product_code: str = Field(foreign_key="product.code", index=True, max_length=14)
    price_minor: int = Field(ge=0)
    currency: str = Field(max_length=3)
    changed_at: datetime = Field(default_factory=utcnow)
    source: str = Field(default="", max_length=200, description="file or user that set it")


class ClassMapEntry(SQLModel, table=True):
    __tablename__ = "class_map"
    __table_args__ = {"sqlite_autoincrement": True}

    class_id: int | None = Field(default=None, primary_key=True)
    product_code: str = Field(foreign_key="product.code", unique=True, max_length=14)
    assigned_at: datetime = Field(default_factory=utcnow)
