"""What the console shows for a product code: its catalog name and price and, where the store
has one, a reference picture (the newest crop of it from an honest transaction), so that a
manager reads "Bananas, 1.99 / scanned Carrots, 0.89" instead of two GTIN-14 codes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from product_db.codes import normalise_code
from product_db.models import Product, SoldBy, utcnow
from store_server.media import MediaStore, check_jpeg, media_in_use
from store_server.models import ProductPicture, SampleRecord


@dataclass(frozen=True, slots=True)
class ProductView:
    code: str
    name: str | None  # None: not in the catalog
    price_minor: int | None
    reference_image: str | None  # media name of a crop the store saw of it
    # How people write the code (the catalog's form: EAN-13 rather than a lane's GTIN-14).
    display_code: str = ""
    per_kg: bool = False  # the price is per kilogram


def describe(
    session: Session, codes: Iterable[str | None], pictures: bool = True
) -> dict[str, ProductView]:
    """One query for the names and prices, one for the reference crops (``pictures``), of
    every code given (codes that are not valid product codes are shown as they are)."""
    keys: dict[str, str] = {}
    for code in codes:
        if code:
            try:
                keys[code] = normalise_code(code)
            except ValueError:
                keys[code] = code
    if not keys:
        return {}
    wanted = sorted(set(keys.values()))
    products = {
        p.code: p for p in session.exec(select(Product).where(col(Product.code).in_(wanted)))
    }
    images = _reference_images(session, keys) if pictures else {}
    fallback = _product_pictures(session, wanted) if pictures else {}
    views = {}
    for code, key in keys.items():
        product = products.get(key)
        views[code] = ProductView(
            code=code,
            name=product.name if product else None,
            price_minor=product.price_minor if product else None,
            reference_image=images.get(code) or images.get(key) or fallback.get(key),
            display_code=product.display_code if product else code,
            per_kg=product is not None and product.sold_by == SoldBy.weight,
        )
    return views


def _product_pictures(session: Session, keys: list[str]) -> dict[str, str]:
    rows = session.exec(select(ProductPicture).where(col(ProductPicture.code).in_(keys)))
    return {row.code: row.image for row in rows}


def set_product_picture(
    session: Session, media: MediaStore, code: str, jpeg: bytes, source: str
) -> str:
    """Keep ``jpeg`` (checked to be a JPEG of sane size) as ``code``'s reference picture,
    replacing an earlier one; returns its media name."""
    check_jpeg(jpeg)
    key = normalise_code(code)
    name = media.save(jpeg)
    picture = session.get(ProductPicture, key)
    if picture is None:
        session.add(ProductPicture(code=key, image=name, source=source))
        return name
    old = picture.image
    picture.image, picture.source, picture.added_at = name, source, utcnow()
    session.add(picture)
    session.flush()
    if old != name and not media_in_use(session, [old]):  # media is named by content
        media.delete(old)
    return name


def _reference_images(session: Session, keys: dict[str, str]) -> dict[str, str]:
    """The newest honest crop per code; samples keep the code as the lane sent it, so both
    forms are looked up."""
    forms = sorted(set(keys.values()) | set(keys))
    newest = (
        select(SampleRecord.code, func.max(SampleRecord.id))
        .where(col(SampleRecord.code).in_(forms), SampleRecord.reason == "honest")
        .group_by(col(SampleRecord.code))
    )
    newest_ids = [sample_id for _, sample_id in session.exec(newest)]
    images: dict[str, str] = {}
    for s in session.exec(select(SampleRecord).where(col(SampleRecord.id).in_(newest_ids))):
        if s.code is not None:
            images[s.code] = s.image
            images.setdefault(keys.get(s.code, s.code), s.image)
    return images
