"""Console pages. Server-rendered HTML: fast on a store back-office PC or a tablet, no build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from product_db.catalog import ProductNotFoundError, get_product, list_products
from product_db.codes import InvalidCodeError
from product_db.models import Product
from product_db.money import format_price
from store_server.deps import get_engine, get_settings
from store_server.settings import StoreSettings

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["price"] = lambda minor, currency: format_price(minor, currency)

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/catalog", status_code=303)


def _categories(engine: Engine) -> list[str]:
    with Session(engine) as session:
        rows = session.execute(
            select(col(Product.category)).distinct().order_by(col(Product.category))
        )
        return [c for (c,) in rows if c]


@router.get("/catalog", response_class=HTMLResponse)
def catalog_page(
    request: Request,
    engine: Annotated[Engine, Depends(get_engine)],
    settings: Annotated[StoreSettings, Depends(get_settings)],
    q: Annotated[str, Query(max_length=100)] = "",
    category: Annotated[str, Query(max_length=80)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    records = list_products(
        engine,
        search=q or None,
        category=category or None,
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )
    return templates.TemplateResponse(
        request,
        "catalog.html",
        {
            "store_name": settings.store_name,
            "products": records[:PAGE_SIZE],
            "has_next": len(records) > PAGE_SIZE,
            "page": page,
            "q": q,
            "category": category,
            "categories": _categories(engine),
        },
    )


@router.get("/catalog/{code}", response_class=HTMLResponse)
def product_page(
    code: str,
    request: Request,
    engine: Annotated[Engine, Depends(get_engine)],
    settings: Annotated[StoreSettings, Depends(get_settings)],
) -> Response:
    try:
        detail = get_product(engine, code)
    except (InvalidCodeError, ProductNotFoundError) as exc:
        return templates.TemplateResponse(
            request,
            "not_found.html",
            {"store_name": settings.store_name, "message": str(exc)},
            status_code=404,
        )
    return templates.TemplateResponse(
        request, "product.html", {"store_name": settings.store_name, "detail": detail}
    )
