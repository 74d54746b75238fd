"""Catalog API: the products and prices lanes and the console look up."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from product_db.catalog import ProductNotFoundError, get_product, list_products
from product_db.codes import InvalidCodeError
from product_db.records import ProductRecord
from store_server.deps import EngineDep

router = APIRouter(prefix="/api/catalog", tags=["catalog"])


class ProductOut(BaseModel):
    code: str
    display_code: str
    code_kind: str
    name: str
    brand: str
    price_minor: int
    currency: str
    category: str
    sold_by: str
    age_restricted: bool
    active: bool
    packaging_version: int | None

    @classmethod
    def from_record(cls, record: ProductRecord) -> ProductOut:
        data = record.as_dict()
        data.pop("packaging_note", None)
        return cls.model_validate(data)


class PriceOut(BaseModel):
    price_minor: int
    currency: str
    changed_at: str
    source: str


class ProductDetailOut(ProductOut):
    class_id: int | None
    packaging_versions: list[int]
    price_history: list[PriceOut]


@router.get("/products", response_model=list[ProductOut])
def products(
    engine: EngineDep,
    search: Annotated[str | None, Query(max_length=100)] = None,
    category: Annotated[str | None, Query(max_length=80)] = None,
    include_inactive: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[ProductOut]:
    records = list_products(
        engine,
        search=search,
        category=category,
        include_inactive=include_inactive,
        limit=limit,
        offset=offset,
    )
    return [ProductOut.from_record(r) for r in records]


@router.get("/products/{code}", response_model=ProductDetailOut)
def product(code: str, engine: EngineDep) -> ProductDetailOut:
    try:
        detail = get_product(engine, code)
    except InvalidCodeError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    except ProductNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    base = ProductOut.from_record(detail.record).model_dump()
    return ProductDetailOut(
        **base,
        class_id=detail.class_id,
        packaging_versions=[v.version for v in detail.packaging_versions],
        price_history=[
            PriceOut(
                price_minor=p.price_minor,
                currency=p.currency,
                changed_at=p.changed_at.isoformat(),
                source=p.source,
            )
            for p in detail.price_history
        ],
    )
