"""The simulated store's assortment: catalog products, how each looks, and which are "new".

"New" products (the holdout) are kept out of all training data by default, so the bootstrap
models have never seen them: scenarios of kind ``new_product`` use them to measure how the lane
handles a product it does not know. Packaging version 2 of every product is likewise kept out
(the ``packaging_change`` case).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from random import Random

from product_db import SAMPLE_CATALOG
from product_db.catalog_io import read_catalog_file
from product_db.errors import LaneGuardError
from product_db.records import ProductRecord
from simulator.packaging import render_product
from simulator.produce import ProducePhotos, produce_sprite
from simulator.sprites import Sprite, seeded_rng

HOLDOUT_PACKAGED = 4
HOLDOUT_PRODUCE = 3
TRAINING_PACKAGING_VERSION = 1
REDESIGN_VERSION = 2


class WorldError(LaneGuardError, ValueError):
    """A catalog the simulator cannot build its world from: bad rows, or no active product."""


@dataclass(frozen=True, slots=True)
class SimProduct:
    """What the simulator needs of a catalog product."""

    code: str  # catalog key (GTIN-14 or PLU)
    display_code: str  # what the scanner sends
    name: str
    brand: str
    category: str
    price_minor: int
    is_produce: bool

    @classmethod
    def from_record(cls, record: ProductRecord) -> SimProduct:
        return cls(
            code=record.code,
            display_code=record.display_code,
            name=record.name,
            brand=record.brand,
            category=record.category,
            price_minor=record.price_minor,
            is_produce=record.code_kind == "plu",
        )


class World:
    """Products, their looks, and the holdout of products no model is trained on."""

    def __init__(
        self,
        products: list[SimProduct],
        photos: ProducePhotos | None = None,
        holdout: frozenset[str] | None = None,
    ) -> None:
        if not products:
            raise WorldError("the simulator needs at least one product")
        self.products = sorted(products, key=lambda p: p.code)
        self.by_code = {p.code: p for p in self.products}
        self.photos = photos
        self.holdout = holdout if holdout is not None else self._default_holdout()

    @classmethod
    def from_catalog(
        cls,
        catalog: str | Path = SAMPLE_CATALOG,
        produce_photos: str | Path | None = None,
        holdout: frozenset[str] | None = None,
    ) -> World:
        parsed = read_catalog_file(catalog)
        if parsed.rejected:
            raise WorldError(
                f"{catalog}: {len(parsed.rejected)} bad rows\n" + parsed.describe_rejections()
            )
        products = [SimProduct.from_record(r) for r in parsed.records if r.active]
        photos = ProducePhotos.open(produce_photos) if produce_photos else None
        return cls(products, photos, holdout)

    def _default_holdout(self) -> frozenset[str]:
        """A stable pick of a few packaged and produce items, by hash of their code."""

        def order(p: SimProduct) -> bytes:
            return seeded_rng("holdout", p.code).randbytes(8)

        packaged = sorted((p for p in self.products if not p.is_produce), key=order)
        produce = sorted((p for p in self.products if p.is_produce), key=order)
        return frozenset(p.code for p in packaged[:HOLDOUT_PACKAGED] + produce[:HOLDOUT_PRODUCE])

    def without_photos(self) -> World:
        """The same assortment with the drawn produce look instead of the real photos."""
        return World(self.products, None, self.holdout)

    @cached_property
    def known(self) -> list[SimProduct]:
        """Products the bootstrap models are trained on."""
        return [p for p in self.products if p.code not in self.holdout]

    @cached_property
    def new_products(self) -> list[SimProduct]:
        return [p for p in self.products if p.code in self.holdout]

    def sprite(
        self, product: SimProduct, version: int, rng: Random, splits: tuple[str, ...] = ("train",)
    ) -> Sprite:
        """How one physical item of ``product`` looks (produce items vary; packaging does not)."""
        if product.is_produce:
            return produce_sprite(product.code, rng, self.photos, splits)
        return render_product(
            product.display_code, version, product.name, product.brand, product.category
        )
