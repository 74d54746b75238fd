"""Printed barcodes: the product's real GTIN, decodable by pyzbar from a sharp render."""

from __future__ import annotations

import random

import cv2
import pytest
from pyzbar.pyzbar import decode

from product_db import SAMPLE_CATALOG
from product_db.catalog_io import read_catalog_file
from product_db.codes import GTIN, gtin_check_digit
from simulator.barcode import ean8_modules, ean13_modules, render_barcode
from simulator.packaging import SHAPES, render_product, shape_for

CATEGORIES = ("dairy", "bakery", "beverages", "snacks", "pantry", "household", "frozen")
NAMES = (
    "Milk 1 l",
    "Crisps 175 g",
    "Tomatoes 400 g can",
    "Red Wine 750 ml",
    "Eggs 6 pack",
    "Rice 1 kg",
    "Soap 300 ml",
    "Biscuits 200 g",
    "Juice 1 l",
    "Peas 750 g",
)


def _random_gtin(rng: random.Random) -> str:
    length = rng.choice([8, 12, 13, 13, 13])
    body = "".join(rng.choice("0123456789") for _ in range(length - 1))
    return body + str(gtin_check_digit(body))


def _decoded_keys(image) -> set[str]:  # type: ignore[no-untyped-def]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return {GTIN.parse(r.data.decode()).key for r in decode(gray)}


def test_module_patterns_have_standard_lengths() -> None:
    assert ean13_modules("4006381333931").size == 95
    assert ean8_modules("96385074").size == 67


@pytest.mark.parametrize("code", ["4006381333931", "036000291452", "96385074", "10012345678902"])
def test_plain_symbols_decode(code: str) -> None:
    assert _decoded_keys(render_barcode(GTIN.parse(code))) == {GTIN.parse(code).key}


def test_200_product_renders_decode_to_their_gtin() -> None:
    rng = random.Random(2024)
    codes: set[str] = set()
    while len(codes) < 200:
        codes.add(_random_gtin(rng))
    decoded, shapes = 0, set()
    for i, code in enumerate(sorted(codes)):
        name, category = NAMES[i % len(NAMES)], CATEGORIES[i % len(CATEGORIES)]
        version = 1 + i % 2
        sprite = render_product(code, version, name, f"Brand {i}", category)
        shapes.add(shape_for(name, category, code))
        if GTIN.parse(code).key in _decoded_keys(sprite.on_background()):
            decoded += 1
    assert decoded / 200 >= 0.99, f"only {decoded}/200 renders decoded"
    assert shapes == set(SHAPES)


def test_sample_catalog_products_decode_in_both_packaging_versions() -> None:
    records = [r for r in read_catalog_file(SAMPLE_CATALOG).records if r.code_kind == "gtin"]
    for record in records:
        for version in (1, 2):
            sprite = render_product(
                record.display_code, version, record.name, record.brand, record.category
            )
            assert record.code in _decoded_keys(sprite.on_background()), record.name


def test_packaging_versions_look_different_but_are_stable() -> None:
    a1 = render_product("4006381333931", 1, "Pen", "Stabilo", "office")
    render_product.cache_clear()
    a1_again = render_product("4006381333931", 1, "Pen", "Stabilo", "office")
    a2 = render_product("4006381333931", 2, "Pen", "Stabilo", "office")
    assert (a1.bgr == a1_again.bgr).all()
    assert a1.bgr.shape == a2.bgr.shape  # same shape of packaging
    difference = cv2.absdiff(a1.bgr, a2.bgr).mean()
    assert difference > 20  # a redesign, not a tint
