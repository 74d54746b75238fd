"""The chain's catalog: HQ imports price files into its own product table and sends what
changed to every store (a store keeps its own price where it set an override)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hq_server.models import Broadcast
from hq_server.outbox import HqOutbox
from laneguard.chain import CatalogDown, ProductDown
from product_db.models import Product, SoldBy

CHUNK = 500


def push_catalog_changes(engine: Engine, outbox: HqOutbox, since: datetime | None = None) -> int:
    """Queue every product changed since the last catalog message (or ``since``); returns how
    many products go out."""
    with Session(engine) as session:
        if since is None:
            last = session.exec(
                select(Broadcast)
                .where(Broadcast.kind == "catalog")
                .order_by(col(Broadcast.id).desc())
            ).first()
            since = last.created_at if last else None
        query = select(Product).order_by(col(Product.code))
        if since is not None:
            query = query.where(col(Product.updated_at) >= since)
        products = list(session.exec(query))
        base = int(session.exec(select(func.count()).where(col(Broadcast.kind) == "catalog")).one())
        for n, start in enumerate(range(0, len(products), CHUNK), start=1):
            body = CatalogDown(
                change_id=base + n,
                products=[
                    ProductDown(
                        code=p.code,
                        display_code=p.display_code,
                        code_kind=p.code_kind,
                        name=p.name,
                        brand=p.brand,
                        price_minor=p.price_minor,
                        currency=p.currency,
                        category=p.category,
                        sold_by=SoldBy(p.sold_by).value,
                        age_restricted=p.age_restricted,
                        active=p.active,
                    )
                    for p in products[start : start + CHUNK]
                ],
            )
            outbox.queue(session, f"catalog:{body.change_id}", body)
        session.commit()
    return len(products)
