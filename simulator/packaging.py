"""Packaged products drawn from their catalog entry, as the lane camera sees them from above.

The look is a pure function of (code, packaging version): the same product always looks the
same, and a new packaging version is a redesign (colours, pattern, layout and logo change) while
the shape and the printed GTIN stay. The shape follows what the product is (a can, a bottle, a
carton of milk...), read from its name and category.
"""

from __future__ import annotations

import colorsys
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from random import Random

import cv2
import numpy as np

from product_db.codes import GTIN, parse_code
from simulator.barcode import render_barcode
from simulator.sprites import Sprite, seeded_rng

SHAPES = ("box", "carton", "can", "bottle", "bag", "tray")
PATTERNS = ("plain", "stripes", "dots", "waves", "gradient", "checks", "diagonal")
LOGOS = ("circle", "star", "triangle", "diamond", "ring", "leaf")

# (height, width) of the label canvas per shape, in render pixels (about 1.6 px per mm).
_CANVAS = {
    "box": (380, 290),
    "carton": (400, 270),
    "can": (250, 520),
    "bottle": (220, 620),
    "bag": (360, 290),
    "tray": (290, 540),
}

_SHAPE_WORDS = (
    ("can", ("can",)),
    (
        "bottle",
        (
            "bottle",
            "wine",
            "ale",
            "lager",
            "water",
            "oil",
            "ketchup",
            "shampoo",
            "soap",
            "detergent",
            "cola",
        ),
    ),
    ("carton", ("milk", "juice", "cream", "yoghurt")),
    ("bag", ("crisps", "peas", "peanuts", "rice", "oats", "coffee", "bag")),
    ("tray", ("eggs", "buns", "fingers", "tray")),
)


def shape_for(name: str, category: str, code: str) -> str:
    """The packaging shape a product most plausibly has, from its name (else a stable pick)."""
    words = set(re.findall(r"[a-z]+", ascii_text(name).lower()))
    for shape, keys in _SHAPE_WORDS:
        if words & set(keys):
            return shape
    if category in ("household", "personal care"):
        return "bottle" if words & {"ml", "l"} else "box"
    return SHAPES[seeded_rng("shape", code).randrange(len(SHAPES))]


def ascii_text(text: str) -> str:
    """Hershey fonts draw ASCII only: 'Fjällmejeri' becomes 'Fjallmejeri'."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return folded or "?"


@dataclass(frozen=True, slots=True)
class Design:
    """Everything that varies between packaging versions of one product."""

    background: tuple[int, int, int]
    accent: tuple[int, int, int]
    ink: tuple[int, int, int]
    pattern: str
    logo: str
    barcode_corner: int  # 0..3
    band_top: bool
    text_scale: float


def _bgr_from_hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(b * 255), int(g * 255), int(r * 255)


def design_for(code: str, version: int) -> Design:
    rng = seeded_rng("design", code, version)
    hue = rng.random()
    background = _bgr_from_hsv(hue, rng.uniform(0.35, 0.95), rng.uniform(0.45, 0.95))
    accent = _bgr_from_hsv(
        hue + rng.uniform(0.25, 0.75), rng.uniform(0.5, 1.0), rng.uniform(0.3, 1.0)
    )
    luminance = 0.114 * background[0] + 0.587 * background[1] + 0.299 * background[2]
    ink = (20, 20, 20) if luminance > 140 else (245, 245, 245)
    return Design(
        background=background,
        accent=accent,
        ink=ink,
        pattern=rng.choice(PATTERNS),
        logo=rng.choice(LOGOS),
        barcode_corner=rng.randrange(4),
        band_top=rng.random() < 0.5,
        text_scale=rng.uniform(0.85, 1.15),
    )


def _pattern(canvas: np.ndarray, design: Design, rng: Random) -> None:
    h, w = canvas.shape[:2]
    colour = design.accent
    if design.pattern == "stripes":
        step = rng.randint(18, 40)
        for x in range(0, w, step):
            cv2.rectangle(canvas, (x, 0), (x + step // 3, h), colour, -1)
    elif design.pattern == "dots":
        step = rng.randint(22, 40)
        for y in range(step // 2, h, step):
            for x in range(step // 2 + (y // step % 2) * step // 2, w, step):
                cv2.circle(canvas, (x, y), step // 5, colour, -1, cv2.LINE_AA)
    elif design.pattern == "waves":
        xs = np.arange(w)
        for y0 in range(0, h, rng.randint(30, 50)):
            ys = (y0 + 8 * np.sin(xs / rng.uniform(12, 25))).astype(np.int32)
            pts = np.stack([xs, ys], axis=1).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], False, colour, 4, cv2.LINE_AA)
    elif design.pattern == "gradient":
        ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        blend = canvas * (1 - 0.7 * ramp) + np.array(colour, np.float32) * 0.7 * ramp
        canvas[:] = blend.astype(np.uint8)
    elif design.pattern == "checks":
        step = rng.randint(24, 44)
        for y in range(0, h, step):
            for x in range((y // step % 2) * step, w, 2 * step):
                cv2.rectangle(canvas, (x, y), (x + step, y + step), colour, -1)
    elif design.pattern == "diagonal":
        step = rng.randint(20, 36)
        for d in range(-h, w, step):
            cv2.line(canvas, (d, 0), (d + h, h), colour, 5, cv2.LINE_AA)


def _logo(canvas: np.ndarray, kind: str, centre: tuple[int, int], r: int, colour: tuple) -> None:
    cx, cy = centre
    if kind == "circle":
        cv2.circle(canvas, centre, r, colour, -1, cv2.LINE_AA)
    elif kind == "ring":
        cv2.circle(canvas, centre, r, colour, max(3, r // 4), cv2.LINE_AA)
    elif kind == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA)
    elif kind == "diamond":
        pts = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]], np.int32)
        cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA)
    elif kind == "star":
        angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [pts.astype(np.int32)], colour, cv2.LINE_AA)
    else:  # leaf
        cv2.ellipse(canvas, centre, (r, r // 2), -30, 0, 360, colour, -1, cv2.LINE_AA)
        cv2.line(canvas, (cx - r, cy + r // 2), (cx + r // 2, cy - r // 3), (255, 255, 255), 2)


def _put_text_fit(
    canvas: np.ndarray,
    text: str,
    org_y: int,
    max_w: int,
    x: int,
    scale: float,
    colour: tuple,
    thickness: int,
) -> int:
    text = ascii_text(text)
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    if tw > max_w:
        scale *= max_w / tw
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    cv2.putText(canvas, text, (x, org_y + th), font, scale, colour, thickness, cv2.LINE_AA)
    return th


def _shape_mask(shape: str, h: int, w: int, rng: Random) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    if shape in ("box", "tray"):
        r = 10 if shape == "box" else 26
        cv2.rectangle(mask, (r, 0), (w - r, h), 255, -1)
        cv2.rectangle(mask, (0, r), (w, h - r), 255, -1)
        for cx, cy in ((r, r), (w - r, r), (r, h - r), (w - r, h - r)):
            cv2.circle(mask, (cx, cy), r, 255, -1, cv2.LINE_AA)
    elif shape == "carton":
        gable = h // 7
        pts = np.array([[0, gable], [w // 2, 0], [w, gable], [w, h], [0, h]], np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA)
    elif shape == "can":
        cv2.rectangle(mask, (12, 0), (w - 12, h), 255, -1)
        cv2.ellipse(mask, (12, h // 2), (12, h // 2), 0, 0, 360, 255, -1, cv2.LINE_AA)
        cv2.ellipse(mask, (w - 12, h // 2), (12, h // 2), 0, 0, 360, 255, -1, cv2.LINE_AA)
    elif shape == "bottle":
        neck_w = int(w * 0.22)
        body = np.array(
            [
                [0, 10],
                [w - neck_w - 40, 10],
                [w - neck_w, h // 2 - h // 6],
                [w, h // 2 - h // 9],
                [w, h // 2 + h // 9],
                [w - neck_w, h // 2 + h // 6],
                [w - neck_w - 40, h - 10],
                [0, h - 10],
            ],
            np.int32,
        )
        cv2.fillPoly(mask, [body], 255, cv2.LINE_AA)
    else:  # bag: pillow with crimped ends
        inset = 18
        cv2.rectangle(mask, (6, inset), (w - 6, h - inset), 255, -1)
        teeth = np.arange(6, w - 6, 12)
        for y_edge, sign in ((inset, -1), (h - inset, 1)):
            crimp = [[6, y_edge]]
            for i, x in enumerate(teeth):
                crimp.append([int(x), y_edge + sign * (inset - 2 if i % 2 else 4)])
            crimp.append([w - 6, y_edge])
            cv2.fillPoly(mask, [np.array(crimp, np.int32)], 255, cv2.LINE_AA)
    return mask


def _shading(shape: str, h: int, w: int) -> np.ndarray:
    """Multiplicative light falloff that makes round packaging look round."""
    if shape in ("can", "bottle"):
        ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        shade = (
            0.62 + 0.45 * np.sqrt(np.clip(1 - ys**2, 0, 1)) + 0.12 * np.exp(-((ys + 0.4) ** 2) * 30)
        )
        return np.repeat(shade, w, axis=1)
    if shape == "bag":
        ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        return 0.8 + 0.25 * (1 - 0.6 * xs**2) * (1 - 0.5 * ys**2)
    return np.ones((h, w), np.float32)


@lru_cache(maxsize=512)
def render_product(code: str, version: int, name: str, brand: str, category: str) -> Sprite:
    """The product's top face (label side up) at full render resolution, with its barcode."""
    parsed = parse_code(code)
    shape = shape_for(name, category, parsed.key)
    design = design_for(parsed.key, version)
    rng = seeded_rng("layout", parsed.key, version)
    h, w = _CANVAS[shape]
    canvas = np.empty((h, w, 3), np.uint8)
    canvas[:] = design.background
    _pattern(canvas, design, rng)

    label = render_barcode(parsed, module_px=2, bar_height=56) if isinstance(parsed, GTIN) else None
    text_x0, text_x1, text_y0, text_y1 = 0, w, 0, h
    if shape == "carton":
        text_y0 = h // 7 + 4
    if label is not None:
        lh, lw = label.shape[:2]
        if w > h:  # lying cans, bottles, trays: the symbol takes a column at one end
            x = 34 if shape in ("can", "bottle") or design.barcode_corner % 2 == 0 else w - lw - 34
            if shape == "tray":
                x = 20 if design.barcode_corner % 2 == 0 else w - lw - 20
            y = (h - lh) // 2
            canvas[y : y + lh, x : x + lw] = label
            text_x0, text_x1 = (x + lw + 6, w) if x < w // 2 else (0, x - 6)
            if shape == "bottle":
                text_x1 = min(text_x1, int(w * 0.7))
        else:  # upright packaging: the symbol sits at the top or bottom edge
            x = 12 if design.barcode_corner % 2 == 0 else w - lw - 12
            x = max(0, min(x, w - lw))
            inset = 22 if shape in ("bag", "carton") else 12
            if design.band_top:
                y = h - lh - inset
                text_y1 = y - 4
            else:
                y = text_y0 + inset
                text_y0 = y + lh + 4
            canvas[y : y + lh, x : x + lw] = label
    _draw_texts(canvas, design, rng, name, brand, (text_x0, text_y0, text_x1, text_y1), shape)

    mask = _shape_mask(shape, h, w, rng)
    shaded = (canvas.astype(np.float32) * _shading(shape, h, w)[..., None]).clip(0, 255)
    return Sprite(shaded.astype(np.uint8), mask)


def _draw_texts(
    canvas: np.ndarray,
    design: Design,
    rng: Random,
    name: str,
    brand: str,
    area: tuple[int, int, int, int],
    shape: str,
) -> None:
    """Brand band, name panel and logo, stacked inside ``area`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = area
    margin = 14 if shape not in ("can", "bottle", "bag") else 24
    inner_x0, inner_x1 = x0 + margin, x1 - margin
    if inner_x1 - inner_x0 < 40:
        return
    height = y1 - y0
    band_h = max(24, int(height * 0.26))
    panel_h = max(22, int(height * 0.22))
    band_y = y0 + 6 if design.band_top else y1 - band_h - 6
    cv2.rectangle(canvas, (x0, band_y), (x1, band_y + band_h), design.accent, -1)
    luminance = 0.114 * design.accent[0] + 0.587 * design.accent[1] + 0.299 * design.accent[2]
    band_ink = (15, 15, 15) if luminance > 140 else (250, 250, 250)
    _put_text_fit(
        canvas,
        brand or "Fresh",
        band_y + band_h // 5,
        inner_x1 - inner_x0,
        inner_x0,
        1.3 * design.text_scale,
        band_ink,
        2,
    )
    panel_y = band_y + band_h + 8 if design.band_top else y0 + 6
    cv2.rectangle(
        canvas, (inner_x0 - 6, panel_y), (inner_x1 + 6, panel_y + panel_h), (245, 245, 245), -1
    )
    _put_text_fit(
        canvas,
        name,
        panel_y + panel_h // 5,
        inner_x1 - inner_x0,
        inner_x0,
        0.9 * design.text_scale,
        (25, 25, 25),
        2,
    )
    free_y0 = panel_y + panel_h + 6
    free_y1 = y1 - 4 if design.band_top else band_y - 6
    logo_r = int(min(free_y1 - free_y0, inner_x1 - inner_x0) * 0.4)
    if logo_r >= 8:
        logo_x = inner_x1 - logo_r if rng.random() < 0.5 else inner_x0 + logo_r
        _logo(canvas, design.logo, (logo_x, (free_y0 + free_y1) // 2), logo_r, design.accent)
