"""The randomised world: detection images that do not look like our renderer, so a detector
trained on them has to learn what a retail object is rather than what our lane scenes look like.

A real lane (and a real shopping cart, pile or counter) varies in every way our lane scenes do
not: the surface under the items, the light's colour, direction and hardness, the camera's
height, tilt and lens, the sensor, and above all the products, which are any retail object in
any pose, not the 83 sprites of our catalog. Each image here draws all of that afresh:

- surface: plain or mottled counters, belts, wire grids over floor tiles (a cart seen from
  above), wood, fabric, our lane backgrounds, or a strongly blurred real produce photo;
- products: catalog sprites (real produce photos among them) and, mostly, procedural products
  in no catalog: boxes with a side face, bottles (some transparent), cans, crumpled bags, meat
  trays, cups, jars, gable-top cartons and loose round produce, each with random print (stripes,
  blocks, logos, text-like marks, barcodes, a real photo patch as the pack's picture);
  any rotation, a perspective tilt, squashed, lit with a gradient, a specular streak and a cast
  shadow; spread apart, or piled with heavy overlap;
- hands of every skin tone and gloves, phones, wallets, keys, bags and receipts, labelled as
  their own classes so they never count; wires of a cart in front of everything;
- camera: a homography for height and tilt, barrel or pincushion distortion, colour cast,
  vignetting, gamma, defocus or motion blur, sensor noise and JPEG.

Boxes cover each object's visible pixels after the camera warp; objects hidden more than
``MIN_VISIBLE_SHARE`` are not labelled.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random

import cv2
import numpy as np

from simulator.props import NON_MERCHANDISE, hand_sprite, non_merchandise_sprite
from simulator.scenario import LaneLayout
from simulator.scene import Box, lane_background
from simulator.sprites import Sprite, composite, place
from simulator.world import TRAINING_PACKAGING_VERSION, World

PRODUCT, HAND, NON_MERCHANDISE_CLASS = 0, 1, 2
MIN_VISIBLE_SHARE = 0.35  # a product hidden more than this is neither labelled nor counted
FRAME_SIZES = ((640, 480), (640, 480), (480, 640), (640, 360))
SHAPES = ("box", "bottle", "can", "bag", "tray", "cup", "jar", "carton", "round")
SURFACES = ("plain", "belt", "wire", "tiles", "wood", "fabric", "lane", "photo")
SKIN_LIGHT = np.array((190.0, 210.0, 245.0))  # BGR
SKIN_DARK = np.array((45.0, 62.0, 98.0))
GLOVES = ((200, 120, 40), (30, 30, 30), (235, 235, 235), (170, 80, 120), (60, 160, 60))


@dataclass(frozen=True, slots=True)
class PrintSource:
    """Real photos that may be printed on procedural packs as their picture (train split only)."""

    paths: tuple[Path, ...]

    @classmethod
    def from_world(cls, world: World) -> PrintSource:
        if world.photos is None:
            return cls(())
        paths = [p for splits in world.photos.by_plu.values() for p in splits.get("train", [])]
        return cls(tuple(sorted(paths)))

    def patch(self, rng: Random, h: int, w: int) -> np.ndarray | None:
        if not self.paths or h < 4 or w < 4:
            return None
        image = cv2.imread(str(rng.choice(self.paths)), cv2.IMREAD_COLOR)
        if image is None:
            return None
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def _colour(rng: Random, saturation: tuple[int, int] = (40, 255)) -> tuple[int, int, int]:
    hsv = np.array([[[rng.randrange(180), rng.randint(*saturation), rng.randint(40, 255)]]])
    b, g, r = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _print(canvas: np.ndarray, rng: Random, prints: PrintSource) -> None:
    """Random pack print over the whole canvas, in place."""
    h, w = canvas.shape[:2]
    canvas[:] = _colour(rng)
    for _ in range(rng.randint(0, 3)):  # bands
        colour = _colour(rng)
        if rng.random() < 0.5:
            y = rng.randrange(h)
            cv2.rectangle(canvas, (0, y), (w, y + rng.randint(2, max(3, h // 4))), colour, -1)
        else:
            x = rng.randrange(w)
            cv2.rectangle(canvas, (x, 0), (x + rng.randint(2, max(3, w // 4)), h), colour, -1)
    if rng.random() < 0.45:  # the pack's picture
        ph, pw = int(h * rng.uniform(0.25, 0.7)), int(w * rng.uniform(0.4, 0.95))
        patch = prints.patch(rng, ph, pw)
        if patch is not None:
            y0, x0 = rng.randint(0, h - ph), rng.randint(0, w - pw)
            canvas[y0 : y0 + ph, x0 : x0 + pw] = patch
    for _ in range(rng.randint(0, 2)):  # logos
        r = rng.randint(3, max(4, min(h, w) // 4))
        cv2.circle(canvas, (rng.randrange(w), rng.randrange(h)), r, _colour(rng), -1, cv2.LINE_AA)
    ink = (20, 20, 20) if rng.random() < 0.6 else (245, 245, 245)
    for _ in range(rng.randint(0, 6)):  # text-like marks
        y, x = rng.randrange(h), rng.randrange(w)
        size = rng.uniform(0.2, 1.2) * max(h, w) / 120
        word = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(2, 9)))
        cv2.putText(canvas, word, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, ink, 1, cv2.LINE_AA)
    if rng.random() < 0.3:  # a barcode
        bw, bh = max(8, w // 4), max(6, h // 6)
        x0, y0 = rng.randint(0, max(0, w - bw)), rng.randint(0, max(0, h - bh))
        cv2.rectangle(canvas, (x0, y0), (x0 + bw, y0 + bh), (250, 250, 250), -1)
        x = x0 + 2
        while x < x0 + bw - 2:
            step = rng.randint(1, 3)
            if rng.random() < 0.5:
                cv2.line(canvas, (x, y0 + 1), (x, y0 + bh - 2), (10, 10, 10), 1)
            x += step


def _poly(mask: np.ndarray, points: Sequence[tuple[float, float]]) -> None:
    cv2.fillPoly(mask, [np.array(points, np.int32)], 255, cv2.LINE_AA)


def _blob(mask: np.ndarray, rng: Random, roughness: float) -> None:
    h, w = mask.shape
    n = 28
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    wobble = 1 + roughness * np.array([rng.uniform(-1, 1) for _ in range(n)])
    xs = w / 2 + (w / 2 - 2) * wobble.clip(0, 1) * np.cos(angles)
    ys = h / 2 + (h / 2 - 2) * wobble.clip(0, 1) * np.sin(angles)
    _poly(mask, list(zip(xs, ys)))


def _shade(image: np.ndarray, rng: Random, cylinder: bool) -> np.ndarray:
    """Light falling across the object: a gradient, a cylinder's falloff, a specular streak."""
    h, w = image.shape[:2]
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    angle = rng.uniform(0, 2 * math.pi)
    light = 1.0 + rng.uniform(0.05, 0.35) * (math.cos(angle) * xs + math.sin(angle) * ys)
    if cylinder:
        light = light * (0.55 + 0.45 * np.sqrt(np.clip(1 - xs**2, 0, 1)))
    out: np.ndarray = image.astype(np.float32) * light[..., None]
    if rng.random() < 0.6:
        centre, width = rng.uniform(-0.7, 0.7), rng.uniform(0.04, 0.2)
        strength = rng.uniform(40, 150)
        streak = np.exp(-(((xs - centre) / width) ** 2)) * strength
        if not cylinder:
            streak = np.exp(-(((xs + ys * rng.uniform(-1, 1) - centre) / width) ** 2)) * strength
        out += streak[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def procedural_product(rng: Random, prints: PrintSource) -> Sprite:
    """A retail object in no catalog: a shape, random print, shading; some see-through."""
    shape = rng.choice(SHAPES)
    base = rng.randint(90, 170)
    aspect = {
        "box": rng.uniform(0.45, 1.0),
        "bottle": rng.uniform(0.25, 0.45),
        "can": rng.uniform(0.5, 0.75),
        "bag": rng.uniform(0.5, 1.0),
        "tray": rng.uniform(0.55, 0.85),
        "cup": rng.uniform(0.6, 1.0),
        "jar": rng.uniform(0.6, 0.9),
        "carton": rng.uniform(0.35, 0.55),
        "round": rng.uniform(0.75, 1.0),
    }[shape]
    h, w = base, max(12, int(base * aspect))
    image = np.zeros((h, w, 3), np.uint8)
    _print(image, rng, prints)
    mask = np.zeros((h, w), np.uint8)
    alpha_scale = np.full((h, w), 255, np.uint8)
    cylinder = shape in ("bottle", "can", "jar", "cup")
    if shape == "box":
        side = int(w * rng.uniform(0.0, 0.3))
        _poly(mask, [(0, side), (w - side, side), (w - side, h), (0, h)])
        if side:
            _poly(mask, [(0, side), (side, 0), (w, 0), (w - side, side)])
            _poly(mask, [(w - side, side), (w, 0), (w, h - side), (w - side, h)])
            image[:side] = (image[:side] * 0.75).astype(np.uint8)
            image[:, w - side :] = (image[:, w - side :] * 0.6).astype(np.uint8)
    elif shape == "bottle":
        neck = max(3, int(w * rng.uniform(0.25, 0.4)))
        shoulder = int(h * rng.uniform(0.2, 0.35))
        cx = w / 2
        cv2.rectangle(mask, (int(cx - neck / 2), 0), (int(cx + neck / 2), shoulder), 255, -1)
        _poly(
            mask,
            [
                (cx - neck / 2, shoulder * 0.6),
                (cx + neck / 2, shoulder * 0.6),
                (w - 1, shoulder * 1.4),
                (0, shoulder * 1.4),
            ],
        )
        cv2.rectangle(mask, (0, int(shoulder * 1.4)), (w - 1, h - 1), 255, -1)
        image[: max(2, h // 12)] = _colour(rng)  # the cap
        if rng.random() < 0.4:  # clear plastic or glass: the surface shows through
            # Above half, so the clear body still counts as the bottle's (alpha > 127).
            alpha_scale[h // 12 :] = rng.randint(135, 200)
            label = rng.uniform(0.3, 0.6)
            y0 = int(h * label)
            alpha_scale[y0 : y0 + int(h * 0.25)] = 255
    elif shape == "can":
        r = max(2, w // 6)
        cv2.rectangle(mask, (0, r), (w - 1, h - r), 255, -1)
        cv2.ellipse(mask, (w // 2, r), (w // 2, r), 0, 0, 360, 255, -1)
        cv2.ellipse(mask, (w // 2, h - r), (w // 2, r), 0, 0, 360, 255, -1)
        cv2.ellipse(image, (w // 2, r), (w // 2 - 1, r), 0, 0, 360, (190, 190, 195), -1)
    elif shape in ("bag", "round"):
        _blob(mask, rng, 0.25 if shape == "bag" else 0.08)
        if shape == "bag":  # crumples: light and dark creases
            for _ in range(rng.randint(3, 12)):
                p1 = (rng.randrange(w), rng.randrange(h))
                p2 = (p1[0] + rng.randint(-w // 2, w // 2), p1[1] + rng.randint(-h // 3, h // 3))
                tone = (255, 255, 255) if rng.random() < 0.5 else (0, 0, 0)
                overlay = image.copy()
                cv2.line(overlay, p1, p2, tone, rng.randint(1, 4), cv2.LINE_AA)
                cv2.addWeighted(overlay, 0.35, image, 0.65, 0, image)
            if rng.random() < 0.3:
                alpha_scale[:] = rng.randint(150, 220)
        else:  # loose produce: one colour, speckled
            image[:] = _colour(rng, (80, 255))
            noise = np.random.default_rng(rng.randrange(2**31)).normal(1, 0.08, (h, w, 1))
            image[:] = np.clip(image * noise, 0, 255).astype(np.uint8)
    elif shape == "tray":
        cv2.rectangle(mask, (0, 0), (w - 1, h - 1), 255, -1)
        rim = max(3, w // 10)
        image[:] = (235, 235, 235) if rng.random() < 0.6 else (30, 30, 30)
        inner = image[rim:-rim, rim:-rim]
        inner[:] = _colour(rng, (60, 200))
        for _ in range(rng.randint(1, 4)):
            cv2.ellipse(
                inner,
                (rng.randrange(inner.shape[1]), rng.randrange(inner.shape[0])),
                (rng.randint(4, max(5, w // 3)), rng.randint(4, max(5, h // 3))),
                rng.uniform(0, 180),
                0,
                360,
                _colour(rng, (60, 220)),
                -1,
            )
    elif shape == "cup":
        top = max(2, w // 7)
        inset = int(w * rng.uniform(0.05, 0.2))
        _poly(mask, [(0, top), (w - 1, top), (w - 1 - inset, h - 1), (inset, h - 1)])
        cv2.ellipse(mask, (w // 2, top), (w // 2, top), 0, 0, 360, 255, -1)
        cv2.ellipse(image, (w // 2, top), (w // 2 - 2, top - 1), 0, 0, 360, _colour(rng), -1)
    elif shape == "jar":
        lid = max(3, h // 6)
        cv2.rectangle(mask, (w // 8, 0), (w - w // 8, lid), 255, -1)
        cv2.rectangle(mask, (0, lid), (w - 1, h - 1), 255, -1)
        image[:lid] = _colour(rng)
    else:  # carton with a gable top
        gable = int(h * rng.uniform(0.12, 0.22))
        _poly(mask, [(0, gable), (w / 2, 0), (w - 1, gable), (w - 1, h - 1), (0, h - 1)])
    image = _shade(image, rng, cylinder)
    alpha = cv2.min(mask, alpha_scale)
    return Sprite(image, cv2.GaussianBlur(alpha, (3, 3), 0))


def catalog_product(world: World, rng: Random) -> Sprite:
    product = rng.choice(world.known)
    return world.sprite(product, TRAINING_PACKAGING_VERSION, rng)


def tilted(sprite: Sprite, rng: Random, amount: float) -> Sprite:
    """The sprite seen from an angle: its corners moved by up to ``amount`` of its size."""
    h, w = sprite.bgr.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    jitter = np.array(
        [[rng.uniform(-1, 1) * w, rng.uniform(-1, 1) * h] for _ in range(4)], np.float32
    )
    dst = src + jitter * amount
    dst -= dst.min(axis=0)
    size = (max(2, int(dst[:, 0].max())), max(2, int(dst[:, 1].max())))
    matrix = cv2.getPerspectiveTransform(src, dst)
    bgr = cv2.warpPerspective(sprite.bgr, matrix, size, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpPerspective(sprite.alpha, matrix, size, borderValue=0)
    return Sprite(bgr, alpha)


def hand(rng: Random) -> Sprite:
    """A cashier's or customer's hand: any skin tone, or a glove."""
    sprite = hand_sprite(rng.randrange(64))
    image = sprite.bgr.astype(np.float32)
    lightness = image.mean(axis=2, keepdims=True) / max(float(image.mean()), 1.0)
    if rng.random() < 0.2:
        tone: np.ndarray = np.array(rng.choice(GLOVES), np.float32)
    else:
        share = rng.random()
        tone = SKIN_DARK * share + SKIN_LIGHT * (1 - share)
    recoloured = np.clip(lightness * tone[None, None, :], 0, 255).astype(np.uint8)
    return Sprite(recoloured, sprite.alpha)


def _low_frequency(rng: Random, h: int, w: int, cells: int, channels: int = 3) -> np.ndarray:
    grid = np.random.default_rng(rng.randrange(2**31)).random((cells, cells, channels))
    smooth = cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return smooth.reshape(h, w, channels)  # resize drops a single channel's axis


def surface(rng: Random, w: int, h: int, prints: PrintSource) -> np.ndarray:
    """What the items lie on (BGR, h x w)."""
    kind = rng.choice(SURFACES)
    base = np.array(_colour(rng, (0, 120)), np.float32)
    frame: np.ndarray
    if kind == "plain":
        frame = base * (0.8 + 0.4 * _low_frequency(rng, h, w, rng.randint(2, 6), 1))
    elif kind == "belt":
        frame = np.full((h, w, 3), rng.uniform(25, 80), np.float32)
        step = rng.randint(12, 40)
        for x in range(rng.randrange(step), w, step):
            cv2.line(frame, (x, 0), (x, h), (float(frame[0, 0, 0]) + 14,) * 3, rng.randint(1, 3))
    elif kind in ("wire", "tiles"):
        frame = base * (0.8 + 0.3 * _low_frequency(rng, h, w, 4, 1))
        tile = rng.randint(30, 120)
        grout = tuple(float(c) for c in np.clip(base * rng.uniform(0.5, 1.4), 0, 255))
        for x in range(rng.randrange(tile), w, tile):
            cv2.line(frame, (x, 0), (x, h), grout, 2)
        for y in range(rng.randrange(tile), h, tile):
            cv2.line(frame, (0, y), (w, y), grout, 2)
        if kind == "wire":
            _wires(frame, rng, rng.uniform(0.5, 1.0))
    elif kind == "wood":
        ys = np.arange(h, dtype=np.float32)[:, None]
        xs = np.arange(w, dtype=np.float32)[None, :]
        warp = _low_frequency(rng, h, w, 3, 1)[..., 0] * rng.uniform(20, 80)
        grain = 0.85 + 0.15 * np.sin((ys + warp + 0.02 * xs) / rng.uniform(2, 8))
        wood = np.array((rng.uniform(40, 90), rng.uniform(70, 130), rng.uniform(110, 190)))
        frame = wood * grain[..., None]
    elif kind == "fabric":
        frame = 255 * _low_frequency(rng, h, w, rng.randint(3, 8)) * rng.uniform(0.4, 1.0)
        fine = np.random.default_rng(rng.randrange(2**31)).normal(0, 8, (h, w, 1))
        frame = frame + fine
    elif kind == "lane":
        layout = LaneLayout()
        frame = cv2.resize(lane_background(layout, rng.randrange(32)), (w, h)).astype(np.float32)
    else:
        patch = prints.patch(rng, h // 4, w // 4)
        if patch is None:
            frame = base * np.ones((h, w, 1), np.float32)
        else:
            frame = cv2.resize(cv2.GaussianBlur(patch, (0, 0), 6), (w, h)).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _wires(frame: np.ndarray, rng: Random, opacity: float) -> np.ndarray:
    """A cart's wire grid drawn over ``frame``; returns where the wires are."""
    h, w = frame.shape[:2]
    drawn = np.zeros((h, w), np.uint8)
    step = rng.randint(12, 40)
    thick = rng.randint(1, 3)
    angle = rng.uniform(-0.3, 0.3)
    for offset in range(-h, w + h, step):
        x1, x2 = offset, offset + int(h * angle)
        cv2.line(drawn, (x1, 0), (x2, h), 255, thick)
    for y in range(rng.randrange(step), h, step * rng.randint(1, 3)):
        cv2.line(drawn, (0, y), (w, y + int(w * angle * 0.3)), 255, thick)
    metal = np.array([rng.uniform(120, 230)] * 3, np.float32)
    on = drawn > 0
    frame[on] = (frame[on] * (1 - opacity) + metal * opacity).astype(frame.dtype)
    return on


def cast_shadow(
    frame: np.ndarray,
    placement_alpha: np.ndarray,
    x0: int,
    y0: int,
    offset: tuple[int, int],
    strength: float,
) -> None:
    h, w = placement_alpha.shape
    fh, fw = frame.shape[:2]
    sx, sy = x0 + offset[0], y0 + offset[1]
    ax0, ay0 = max(0, -sx), max(0, -sy)
    bx0, by0 = max(0, sx), max(0, sy)
    bx1, by1 = min(fw, sx + w), min(fh, sy + h)
    if bx1 <= bx0 or by1 <= by0:
        return
    cut = placement_alpha[ay0 : ay0 + by1 - by0, ax0 : ax0 + bx1 - bx0].astype(np.float32)
    alpha = cv2.GaussianBlur(cut, (0, 0), 3) / 255.0 * strength
    roi = frame[by0:by1, bx0:bx1]
    roi[:] = (roi * (1 - alpha[..., None])).astype(np.uint8)


@dataclass(frozen=True, slots=True)
class _Thing:
    sprite: Sprite
    cls: int
    centre: tuple[float, float]
    angle: float
    longest: int


def _layout_items(rng: Random, w: int, h: int, n: int, pile: bool) -> list[tuple[float, float]]:
    if not pile:
        return [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(n)]
    centres = [(rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h)]
    if rng.random() < 0.4:
        centres.append((rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h))
    spread = rng.uniform(0.12, 0.3) * min(w, h)
    points = []
    for _ in range(n):
        cx, cy = rng.choice(centres)
        points.append((rng.gauss(cx, spread), rng.gauss(cy, spread)))
    return points


def _camera(
    frame: np.ndarray, bare: np.ndarray, ids: np.ndarray, rng: Random
) -> tuple[np.ndarray, np.ndarray]:
    """Camera height and tilt (a homography) and lens distortion, on the frame and the id map.

    Where the camera sees past the canvas it sees more of the bare surface (``bare``, mirrored
    outwards), never mirrored items: those would be products without labels."""
    h, w = frame.shape[:2]
    tilt = rng.uniform(0.0, 0.18)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    dst = src + np.array(
        [[rng.uniform(-1, 1) * w, rng.uniform(-1, 1) * h] for _ in range(4)], np.float32
    )
    dst = src + (dst - src) * tilt
    homography = cv2.getPerspectiveTransform(dst, src)  # output pixel -> canvas pixel
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    k = rng.uniform(-0.12, 0.12)  # barrel (<0) or pincushion (>0)
    nx, ny = (xs - w / 2) / (w / 2), (ys - h / 2) / (h / 2)
    r2 = nx * nx + ny * ny
    dx = w / 2 + nx * (1 + k * r2) * (w / 2)
    dy = h / 2 + ny * (1 + k * r2) * (h / 2)
    points = np.stack([dx.ravel(), dy.ravel()], axis=1).reshape(-1, 1, 2)
    mapped = cv2.perspectiveTransform(points, homography).reshape(h, w, 2)
    map_x, map_y = mapped[..., 0].astype(np.float32), mapped[..., 1].astype(np.float32)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    out = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    beyond = cv2.remap(bare, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out[~inside] = beyond[~inside]
    out_ids = cv2.remap(ids, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return out, out_ids


def camera_sensor(frame: np.ndarray, rng: Random) -> np.ndarray:
    """Light colour, vignetting, gamma, blur, noise and compression."""
    h, w = frame.shape[:2]
    image: np.ndarray = frame.astype(np.float32)
    cast = np.array([rng.uniform(0.75, 1.25), rng.uniform(0.9, 1.1), rng.uniform(0.75, 1.25)])
    image *= cast * rng.uniform(0.6, 1.3)
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    angle = rng.uniform(0, 2 * math.pi)
    gradient = 1 + rng.uniform(0, 0.4) * (math.cos(angle) * xs + math.sin(angle) * ys)
    vignette = 1 - rng.uniform(0, 0.35) * (xs**2 + ys**2) / 2
    image *= (gradient * vignette)[..., None]
    image = 255 * (np.clip(image, 0, 255) / 255) ** rng.uniform(0.7, 1.4)
    out: np.ndarray = np.clip(image, 0, 255).astype(np.uint8)
    blur = rng.random()
    if blur < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.6, 2.0))
    elif blur < 0.45:
        length = rng.randint(3, 11)
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1 / length
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1)
        out = cv2.filter2D(out, -1, cv2.warpAffine(kernel, rot, (length, length)))
    if rng.random() < 0.3:  # a small sensor, upscaled
        factor = rng.uniform(0.4, 0.8)
        small = cv2.resize(out, (int(w * factor), int(h * factor)), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    noise = np.random.default_rng(rng.randrange(2**31)).normal(0, rng.uniform(0, 8), out.shape)
    out = np.clip(out + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        quality = rng.randint(30, 92)
        _, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
        out = out if decoded is None else decoded
    return out


def randomized_frame(
    world: World, rng: Random, prints: PrintSource | None = None
) -> tuple[np.ndarray, list[Box]]:
    """One randomised image and its boxes (product, hand, non_merchandise)."""
    prints = prints if prints is not None else PrintSource.from_world(world)
    w, h = rng.choice(FRAME_SIZES)
    frame = surface(rng, w, h, prints)
    bare = frame.copy()
    pile = rng.random() < 0.5
    n = rng.randint(6, 28) if pile else rng.randint(1, 10)
    scale = min(w, h) * (rng.uniform(0.08, 0.22) if pile else rng.uniform(0.1, 0.4))
    things: list[_Thing] = []
    for centre in _layout_items(rng, w, h, n, pile):
        sprite = (
            catalog_product(world, rng) if rng.random() < 0.3 else procedural_product(rng, prints)
        )
        sprite = tilted(sprite, rng, rng.uniform(0, 0.2))
        longest = max(8, int(scale * rng.uniform(0.6, 1.5)))
        things.append(_Thing(sprite, PRODUCT, centre, rng.uniform(-180, 180), longest))
    for _ in range(rng.choices((0, 1, 2), weights=(0.6, 0.3, 0.1))[0]):
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        things.append(_Thing(hand(rng), HAND, centre, rng.uniform(-180, 180), int(scale * 1.4)))
    for _ in range(rng.choices((0, 1, 2), weights=(0.55, 0.35, 0.1))[0]):
        sprite = non_merchandise_sprite(rng.choice(NON_MERCHANDISE), rng.randrange(4))
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        longest = int(scale * rng.uniform(0.8, 1.5))
        things.append(
            _Thing(sprite, NON_MERCHANDISE_CLASS, centre, rng.uniform(-180, 180), longest)
        )
    order = list(range(len(things)))
    hands = [i for i in order if things[i].cls == HAND]
    rest = [i for i in order if things[i].cls != HAND]
    rng.shuffle(rest)
    ids = np.zeros((h, w), np.uint16)
    areas: dict[int, int] = {}
    light = rng.uniform(0, 2 * math.pi)
    offset = (int(math.cos(light) * scale * 0.12), int(math.sin(light) * scale * 0.12))
    hard = rng.uniform(0.15, 0.55)
    for index in rest + hands:  # hands come over the items they hold
        thing = things[index]
        sprite = thing.sprite.scaled_to(thing.longest)
        placement = place(sprite, thing.centre, thing.angle, 1.0, (w, h))
        if placement is None:
            continue
        cast_shadow(frame, placement.alpha, placement.x0, placement.y0, offset, hard)
        covered = composite(frame, placement)
        roi = ids[
            placement.y0 : placement.y0 + covered.shape[0],
            placement.x0 : placement.x0 + covered.shape[1],
        ]
        roi[covered] = index + 1
        areas[index + 1] = int(covered.sum())
    # Visible shares are taken before the camera, whose warp changes areas, and before a
    # cart's wires, which hide thin lines of an item a lane would still count.
    visible = np.bincount(ids.ravel(), minlength=len(things) + 1)
    if rng.random() < 0.25:  # a cart's wires in front of everything
        ids[_wires(frame, rng, rng.uniform(0.6, 1.0))] = 0
    frame, ids = _camera(frame, bare, ids, rng)
    frame = camera_sensor(frame, rng)
    shares = {i: visible[i] / area for i, area in areas.items() if area > 0}
    return frame, _boxes(ids, shares, things)


def _boxes(ids: np.ndarray, shares: dict[int, float], things: list[_Thing]) -> list[Box]:
    """Boxes around each labelled object's visible pixels in the final frame."""
    boxes = []
    counts = np.bincount(ids.ravel(), minlength=len(things) + 1)
    for track_id, visible in shares.items():
        if counts[track_id] < 16 or visible < MIN_VISIBLE_SHARE:
            continue
        ys, xs = np.nonzero(ids == track_id)
        x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        if x2 - x1 < 4 or y2 - y1 < 4:
            continue
        thing = things[track_id - 1]
        boxes.append(Box(track_id, thing.cls, x1, y1, x2, y2, float(min(1.0, visible))))
    return boxes
