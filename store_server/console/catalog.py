"""Console pages. Server-rendered HTML: fast on a store back-office PC or a tablet, no build."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from starlette.datastructures import UploadFile as StarletteUploadFile

from product_db.catalog import (
    ProductNotFoundError,
    get_product,
    import_records,
    list_products,
)
from product_db.catalog_io import CatalogFileError, parse_csv_text
from product_db.codes import InvalidCodeError
from product_db.models import Product
from product_db.money import parse_price_minor
from store_server.auth import SignedIn, audit
from store_server.console.templating import error_page, render
from store_server.deps import CurrentUser, EngineDep, FormUser, SettingsDep, UploadForm

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/alerts", status_code=303)


def _categories(engine: Engine) -> list[str]:
    with Session(engine) as session:
        rows = session.execute(
            select(col(Product.category)).distinct().order_by(col(Product.category))
        )
        return [c for (c,) in rows if c]


@router.get("/catalog", response_class=HTMLResponse)
def catalog_page(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    q: Annotated[str, Query(max_length=100)] = "",
    category: Annotated[str, Query(max_length=80)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    return _catalog(request, user, engine, q, category, page)


def _catalog(
    request: Request,
    user: SignedIn,
    engine: Engine,
    q: str = "",
    category: str = "",
    page: int = 1,
    **extra: Any,
) -> Response:
    records = list_products(
        engine,
        search=q or None,
        category=category or None,
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )
    return render(
        request,
        "catalog.html",
        user,
        products=records[:PAGE_SIZE],
        has_next=len(records) > PAGE_SIZE,
        page=page,
        q=q,
        category=category,
        categories=_categories(engine),
        **extra,
    )


@router.post(
    "/catalog/import",
    response_class=HTMLResponse,
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {}}}},
)
async def import_catalog(
    request: Request,
    user: CurrentUser,
    form: UploadForm,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    """A CSV in the export format: new products added, changed prices recorded; rows with
    problems are listed by line and the rest imported. The upload is read only once the
    session and its CSRF token are checked (``UploadForm``)."""
    file = form.get("file")
    if not isinstance(file, StarletteUploadFile):
        return _catalog(request, user, engine, import_error="choose a CSV file to import")
    cap = settings.max_upload_mb << 20
    data = await file.read(cap + 1)
    name = file.filename or "upload.csv"
    try:
        if len(data) > cap:
            raise CatalogFileError(name, f"file is over {settings.max_upload_mb} MB")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CatalogFileError(name, "file is not UTF-8 text (save it as CSV UTF-8)") from None
        parsed = parse_csv_text(text, name, settings.currency)
    except CatalogFileError as error:
        return _catalog(request, user, engine, import_error=str(error))
    report = import_records(
        engine, parsed.records, f"console:{user.username}", rejected=len(parsed.rejected)
    )
    with Session(engine) as session:
        audit(session, user.username, "catalog.import", name, summary=report.summary())
        session.commit()
    return _catalog(
        request,
        user,
        engine,
        import_report=report.summary(),
        import_rejections=parsed.describe_rejections(),
    )


@router.get("/catalog/{code}", response_class=HTMLResponse)
def product_page(
    code: str,
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
) -> Response:
    try:
        detail = get_product(engine, code)
    except (InvalidCodeError, ProductNotFoundError) as exc:
        return error_page(request, user, 404, str(exc))
    return render(request, "product.html", user, detail=detail)


@router.post("/catalog/{code}", response_class=HTMLResponse)
def edit_product(
    code: str,
    request: Request,
    user: FormUser,
    engine: EngineDep,
    price: Annotated[str, Form(max_length=20)],
    active: Annotated[bool, Form()] = False,
) -> Response:
    """Change a product's price or take it off sale; the price history keeps the old one."""
    try:
        detail = get_product(engine, code)
    except (InvalidCodeError, ProductNotFoundError) as exc:
        return error_page(request, user, 404, str(exc))
    record = detail.record
    try:
        price_minor = parse_price_minor(price.strip(), record.currency)
    except ValueError as error:
        return render(request, "product.html", user, 422, detail=detail, error=f"price: {error}")
    changed = replace(record, price_minor=price_minor, active=active, packaging_version=None)
    import_records(engine, [changed], f"console:{user.username}")
    with Session(engine) as session:
        audit(
            session,
            user.username,
            "catalog.edit",
            record.code,
            price_minor=[record.price_minor, price_minor],
            active=[record.active, active],
        )
        session.commit()
    return RedirectResponse(f"/catalog/{record.code}", status_code=303)
