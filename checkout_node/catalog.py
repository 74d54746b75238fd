"""The lane's copy of the store catalog: names and prices for the cashier's screen and for
weighting alerts by what an unscanned or switched item costs the store.

Read from a catalog file in the format `laneguard catalog export` writes (CSV or JSON); the
lane has no database of its own. Codes are looked up in any form a scanner sends (EAN-13,
UPC-A, GTIN-14, PLU) through their catalog key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from product_db import SAMPLE_CATALOG
from product_db.catalog_io import read_catalog_file
from product_db.codes import InvalidCodeError, normalise_code
from product_db.errors import LaneGuardError
from product_db.models import SoldBy
from product_db.records import ProductRecord


class CatalogLoadError(LaneGuardError, ValueError):
    """The lane's catalog file is missing or has rows it cannot use."""


@dataclass(frozen=True)
class LaneCatalog:
    products: dict[str, ProductRecord]  # by catalog key

    @classmethod
    def from_file(cls, path: str | Path = SAMPLE_CATALOG) -> LaneCatalog:
        try:
            parsed = read_catalog_file(path)
        except (OSError, ValueError) as error:
            raise CatalogLoadError(f"catalog {path}: {error}") from error
        if parsed.rejected:
            raise CatalogLoadError(
                f"catalog {path}: {len(parsed.rejected)} bad rows\n" + parsed.describe_rejections()
            )
        return cls({r.code: r for r in parsed.records})

    def lookup(self, code: str | None) -> ProductRecord | None:
        """The product for a code in any accepted form; None when unknown or not a code."""
        if not code:
            return None
        try:
            return self.products.get(normalise_code(code))
        except InvalidCodeError:
            return None

    def price_minor(self, code: str | None) -> int | None:
        product = self.lookup(code)
        return product.price_minor if product else None

    def value_minor(self, code: str | None, weight_g: int | None = None) -> int | None:
        """What one item of ``code`` is worth: its price, or for a product sold by weight its
        price per kg times ``weight_g``. None when unknown, including a per-kg product whose
        weight nobody measured: a price per kg is not what an item costs."""
        product = self.lookup(code)
        if product is None:
            return None
        if product.sold_by == SoldBy.weight:
            return None if weight_g is None else round(product.price_minor * weight_g / 1000)
        return product.price_minor

    def name(self, code: str | None) -> str | None:
        product = self.lookup(code)
        return product.name if product else None
