"""One store's camera, as the simulator draws it: a store the bootstrap detector has never seen.

The bootstrap's lane scenes share one look: a grey belt, a light counter, a camera straight
above the scanner. A real store differs in all of it, and stays the same in all of it from one
checkout to the next: its own belt and counter, its own light (colour, a brightness gradient
across the lane, maybe a hard shadow band), its own sensor (noise, compression, the veiling glare
of a scuffed dome), and its own camera, mounted lower or higher and looking at the lane at an
angle. A ``StoreLook`` is that store; rendering a scenario
with one (``SceneRenderer(..., store=look)``) gives frames of that store's lane, whose boxes and
zones are in that camera's pixels, so a benchmark can run honest checkouts there, let the slow
path tune the detector on the store's frames and measure what it gained.

Geometry: the simulator composes every frame top-down (``LaneLayout``); ``camera_warp`` is the
homography from that frame to this camera's (same size): a tilt (the camera rotated about an
axis in the image plane, re-centred on the scanner), then a zoom (``height``: above 1, a lower
camera, items larger) and a small roll, both about the frame centre. Where the camera sees past
the layout's frame, the renderer composes the lane on a canvas ``margin`` pixels larger, so items
come into view whole, never cut at the frame's old edge. Looks are kept moderate: the scan area
stays wholly in view, as an installer would aim the camera.

The shipped detector on honest checkouts (own-box recall at score 0.5, every 10th frame of 20
checkouts): about 0.97 in the plain simulator, about 0.8 in ``corner_market`` (the default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

from product_db.errors import LaneGuardError
from simulator.scenario import LaneLayout
from simulator.sprites import seeded_rng

CounterKind = Literal["plain", "stone", "wood"]
BeltKind = Literal["ribbed", "chevron", "checker"]
BGR = tuple[int, int, int]

FOCAL_SHARE = 1.0  # the virtual camera's focal length, in frame widths (about 53 degrees)


class StoreLookError(LaneGuardError, ValueError):
    """A store look nobody defined; the message names the known ones."""


@dataclass(frozen=True, slots=True)
class StoreLook:
    """One store's lane camera: surfaces, light, sensor and mounting (all fixed per store)."""

    name: str
    # Surfaces (BGR), top-down.
    counter: BGR
    counter_kind: CounterKind
    belt: BGR
    belt_pattern: BGR  # the second colour of the belt's pattern
    belt_kind: BeltKind
    scanner: BGR  # the surround of the scanner glass
    plate: BGR  # the bagging plate
    # Light: the store's own (a scenario varies the gain by a few percent only).
    gain: float
    white_balance: tuple[float, float, float]  # B, G, R multipliers
    light_gradient: float  # brightness 1 -/+ this from the dim side of the frame to the bright
    light_direction_deg: float  # where the light comes from, in the frame (0 right, 90 down)
    shadow: float = 0.0  # darkening of a hard shadow band (0: none)
    shadow_band: tuple[float, float] = (0.0, 0.0)  # band along the light direction (0-1)
    # Sensor.
    haze: float = 0.0  # veiling glare (a dusty dome, a window): this share of flat light mixed in
    noise_sigma: float = 4.0
    jpeg_quality: int | None = None
    # Camera.
    height: float = 1.0  # zoom about the frame centre: above 1 a lower camera, items larger
    tilt_deg: float = 0.0  # perspective tilt: the side toward tilt_direction_deg comes nearer
    tilt_direction_deg: float = 90.0  # 0: the right side larger, 90: the bottom side larger
    rotation_deg: float = 0.0  # the camera's roll
    # Products: None stocks what the scenario says; a number, that packaging version of all.
    packaging_version: int | None = None

    def camera_warp(self, width: int, height: int) -> np.ndarray:
        """3x3 homography from the simulator's top-down frame to this camera's (same size)."""
        cx, cy = width / 2, height / 2
        focal = FOCAL_SHARE * width
        k = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]], np.float64)
        # A camera rotated about an in-plane axis perpendicular to the tilt direction, so the
        # side toward that direction comes nearer (larger); then re-centred on the centre.
        direction = math.radians(self.tilt_direction_deg)
        axis = np.array([-math.sin(direction), math.cos(direction), 0.0])
        rotation, _ = cv2.Rodrigues(axis * math.radians(self.tilt_deg))
        tilt = k @ rotation @ np.linalg.inv(k)
        centre = tilt @ np.array([cx, cy, 1.0])
        shift = np.array([[1, 0, cx - centre[0] / centre[2]], [0, 1, cy - centre[1] / centre[2]]])
        tilt = np.vstack([shift, [0, 0, 1]]) @ tilt
        zoom_roll = np.vstack(
            [cv2.getRotationMatrix2D((cx, cy), self.rotation_deg, self.height), [0, 0, 1]]
        )
        homography = zoom_roll @ tilt
        return np.asarray(homography / homography[2, 2], np.float64)

    def margin(self, layout: LaneLayout) -> int:
        """How far past the top-down frame this camera sees (pixels, the largest on any side,
        at most the frame's larger side): the renderer composes that much more lane."""
        w, h = layout.width, layout.height
        seen = warp_points(np.linalg.inv(self.camera_warp(w, h)), [[0, 0], [w, 0], [w, h], [0, h]])
        beyond = max(
            -seen[:, 0].min(), -seen[:, 1].min(), seen[:, 0].max() - w, seen[:, 1].max() - h
        )
        return min(max(w, h), max(0, math.ceil(beyond) + 2))

    def background(self, layout: LaneLayout, margin: int = 0) -> np.ndarray:
        """The store's lane, top-down (BGR uint8, read-only): bagging plate, scanner surround
        and belt between ``lane_top`` and ``lane_bottom``, the counter around them; with a
        ``margin``, that many more pixels of it on every side (the frame's (0, 0) at
        (margin, margin))."""
        return _background(self, layout, margin)

    def light(self, width: int, height: int, margin: int = 0) -> np.ndarray:
        """(height, width) float32 brightness of the store's light over the top-down frame (and
        ``margin`` pixels around it): the gradient toward the light, times the shadow band."""
        return _light(self, width, height, margin)

    def zones(self, layout: LaneLayout) -> dict[str, list[list[float]]]:
        """``layout.zones()`` where this camera sees them: each polygon warped and clipped to
        the frame."""
        warp = self.camera_warp(layout.width, layout.height)
        return {
            name: clip_polygon(warp_points(warp, polygon), layout.width, layout.height)
            for name, polygon in layout.zones().items()
        }


def warp_points(
    homography: np.ndarray, points: Sequence[Sequence[float]] | np.ndarray
) -> np.ndarray:
    """(N, 2) points through a homography."""
    array = np.asarray(points, np.float64).reshape(-1, 1, 2)
    return np.asarray(cv2.perspectiveTransform(array, homography).reshape(-1, 2))


def clip_polygon(points: np.ndarray, width: int, height: int) -> list[list[float]]:
    """A polygon clipped to the frame [0, width] x [0, height] (Sutherland-Hodgman; a polygon
    wholly inside comes back as it was, vertex for vertex)."""
    polygon = [(float(x), float(y)) for x, y in points]
    edges = ((0, 0.0, 1), (0, float(width), -1), (1, 0.0, 1), (1, float(height), -1))
    for axis, limit, sign in edges:
        if not polygon:
            break
        kept: list[tuple[float, float]] = []
        for index, current in enumerate(polygon):
            previous = polygon[index - 1]
            current_in = sign * (current[axis] - limit) >= 0
            previous_in = sign * (previous[axis] - limit) >= 0
            if current_in != previous_in:
                share = (limit - previous[axis]) / (current[axis] - previous[axis])
                kept.append(
                    (
                        previous[0] + share * (current[0] - previous[0]),
                        previous[1] + share * (current[1] - previous[1]),
                    )
                )
            if current_in:
                kept.append(current)
        polygon = kept
    return [[round(x, 2), round(y, 2)] for x, y in polygon]


def warped_extent(
    homography: np.ndarray, alpha: np.ndarray, x0: int, y0: int, size: tuple[int, int]
) -> tuple[tuple[int, int, int, int], int]:
    """A placed sprite (its alpha at x0, y0 in the top-down frame) as the camera sees it: its
    tight box (x1, y1, x2, y2) in the camera's frame of ``size`` (width, height), clipped to it,
    over alpha > 64 as ``Placement.box``, and its area in pixels over alpha > 127 (what
    ``composite`` counts as covered). Out of view: an empty box (x2 <= x1) and area 0."""
    h, w = alpha.shape
    corners = warp_points(homography, [[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]])
    fw, fh = size
    bx0 = max(0, math.floor(corners[:, 0].min()) - 1)
    by0 = max(0, math.floor(corners[:, 1].min()) - 1)
    bx1 = min(fw, math.ceil(corners[:, 0].max()) + 1)
    by1 = min(fh, math.ceil(corners[:, 1].max()) + 1)
    if bx1 <= bx0 or by1 <= by0:
        return (0, 0, 0, 0), 0
    to_roi = np.array([[1, 0, -bx0], [0, 1, -by0], [0, 0, 1]], np.float64)
    from_roi = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    seen = cv2.warpPerspective(
        alpha,
        to_roi @ homography @ from_roi,
        (bx1 - bx0, by1 - by0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    ys, xs = np.nonzero(seen > 64)
    if xs.size == 0:
        return (0, 0, 0, 0), 0
    box = (
        bx0 + int(xs.min()),
        by0 + int(ys.min()),
        bx0 + int(xs.max()) + 1,
        by0 + int(ys.max()) + 1,
    )
    return box, int(np.count_nonzero(seen > 127))


# --- surfaces and light ---------------------------------------------------------------------


def _smooth_noise(seed: int, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w) float32 in 0-1, varying over about ``cells`` cells across."""
    grid = np.random.default_rng(seed).random((cells, cells)).astype(np.float32)
    return np.asarray(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC))


def _counter(look: StoreLook, h: int, w: int, seed: int) -> np.ndarray:
    base = np.array(look.counter, np.float32)
    fine = np.random.default_rng(seed + 1).normal(0, 1, (h, w)).astype(np.float32)
    if look.counter_kind == "stone":  # mottled, with light and dark grains
        shade = 0.85 + 0.3 * _smooth_noise(seed, h, w, 9) + 0.06 * fine
        grains = np.random.default_rng(seed + 2).random((h, w)) < 0.01
        shade[grains] = 1.6
    elif look.counter_kind == "wood":  # grain running along the lane
        ys = np.arange(h, dtype=np.float32)[:, None]
        xs = np.arange(w, dtype=np.float32)[None, :]
        waver = _smooth_noise(seed, h, w, 3) * 40
        shade = 0.85 + 0.15 * np.sin((ys + waver + 0.01 * xs) / 3.5) + 0.03 * fine
    else:
        shade = 1.0 + 0.03 * fine
    return base * shade[..., None]


def _belt(look: StoreLook, h: int, w: int) -> np.ndarray:
    """The belt's pattern (BGR float32), origin at the belt's top-left corner."""
    belt = np.empty((h, w, 3), np.float32)
    belt[:] = look.belt
    pattern = np.array(look.belt_pattern, np.float32)
    ys, xs = np.mgrid[0:h, 0:w]
    if look.belt_kind == "chevron":  # V-shaped cleats pointing along the lane
        on = ((xs + np.abs(ys - h / 2) * 0.8) % 34) < 6
    elif look.belt_kind == "checker":
        on = ((xs // 18) + (ys // 18)) % 2 == 0
    else:  # ribs across the belt
        on = (xs % 14) < 3
    belt[on] = pattern
    return belt


@lru_cache(maxsize=16)
def _background(look: StoreLook, layout: LaneLayout, margin: int) -> np.ndarray:
    seed = seeded_rng("store", look.name).randrange(2**31)
    m = margin
    w, h = layout.width + 2 * m, layout.height + 2 * m
    top, bottom = layout.lane_top + m, layout.lane_bottom + m
    left, right = layout.scan_x[0] + m, layout.scan_x[1] + m
    frame = _counter(look, h, w, seed)
    frame[top:bottom, right:] = _belt(look, bottom - top, w - right)
    frame[top:bottom, left:right] = look.scanner
    frame[top:bottom, :left] = look.plate
    texture = np.random.default_rng(seed + 3).normal(0, 2.5, (bottom - top, w, 1))
    frame[top:bottom] += texture.astype(np.float32)
    out = np.clip(frame, 0, 255).astype(np.uint8)
    sx, sy = layout.scanner_centre[0] + m, layout.scanner_centre[1] + m
    gw, gh = int((right - left) * 0.5), int((bottom - top) * 0.36)
    glass = (int(sx - gw / 2), int(sy - gh / 2)), (int(sx + gw / 2), int(sy + gh / 2))
    cv2.rectangle(out, *glass, (52, 44, 36), -1)
    cv2.rectangle(out, *glass, (20, 20, 20), 2)
    cv2.line(out, (glass[0][0] + 6, int(sy)), (glass[1][0] - 6, int(sy)), (40, 40, 220), 1)
    cv2.line(out, (left, top), (left, bottom), (30, 30, 30), 3)
    cv2.line(out, (right, top), (right, bottom), (30, 30, 30), 2)
    cv2.line(out, (0, top), (w, top), (25, 25, 25), 3)
    cv2.line(out, (0, bottom), (w, bottom), (25, 25, 25), 3)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=16)
def _light(look: StoreLook, width: int, height: int, margin: int) -> np.ndarray:
    angle = math.radians(look.light_direction_deg)
    # -1 to 1 across the frame (as np.linspace), going on linearly into the margin
    xs = ((np.arange(-margin, width + margin) - (width - 1) / 2) / ((width - 1) / 2))[None, :]
    ys = ((np.arange(-margin, height + margin) - (height - 1) / 2) / ((height - 1) / 2))[:, None]
    along = (math.cos(angle) * xs + math.sin(angle) * ys) / (
        abs(math.cos(angle)) + abs(math.sin(angle))
    )  # -1 at the far corner from the light, +1 at the nearest
    light = 1 + look.light_gradient * along
    if look.shadow > 0:
        start, end = look.shadow_band
        position = (along + 1) / 2
        inside = ((position >= start) & (position <= end)).astype(np.float32)
        band = cv2.GaussianBlur(inside, (0, 0), 2.0)  # a hard shadow: edges a few pixels wide
        light = light * (1 - look.shadow * band)
    out = np.ascontiguousarray(light, np.float32)
    out.setflags(write=False)
    return out


# --- the stores -----------------------------------------------------------------------------

STORE_LOOKS: dict[str, StoreLook] = {
    look.name: look
    for look in (
        StoreLook(
            # A corner shop: dark stone counter, a red chevron belt, green scanner surround,
            # warm light from the right with a shelf's shadow across the lane; the camera high
            # on the cashier's side, looking across the lane at an angle through a scuffed
            # dome (veiling glare).
            name="corner_market",
            counter=(58, 60, 66),
            counter_kind="stone",
            belt=(40, 40, 120),
            belt_pattern=(70, 80, 165),
            belt_kind="chevron",
            scanner=(70, 110, 60),
            plate=(95, 135, 165),
            gain=0.85,
            white_balance=(0.7, 0.95, 1.3),
            light_gradient=0.4,
            light_direction_deg=10.0,
            shadow=0.5,
            shadow_band=(0.3, 0.42),
            haze=0.25,
            noise_sigma=7.0,
            jpeg_quality=40,
            height=0.8,
            tilt_deg=26.0,
            tilt_direction_deg=90.0,
            rotation_deg=4.0,
        ),
        StoreLook(
            # A harbour-side grocer: light oak counter, a blue and white checker belt, a
            # black scanner surround, cold daylight from the top with some window glare; the
            # camera above the belt end, looking back along the lane.
            name="harbour_grocer",
            counter=(120, 165, 205),
            counter_kind="wood",
            belt=(120, 70, 30),
            belt_pattern=(190, 160, 140),
            belt_kind="checker",
            scanner=(35, 35, 35),
            plate=(190, 195, 200),
            gain=1.05,
            white_balance=(1.15, 1.0, 0.88),
            light_gradient=0.22,
            light_direction_deg=-90.0,
            haze=0.15,
            noise_sigma=6.0,
            jpeg_quality=45,
            height=0.9,
            tilt_deg=18.0,
            tilt_direction_deg=0.0,
            rotation_deg=-3.0,
        ),
    )
}
DEFAULT_STORE_LOOK = "corner_market"


def store_look(name: str) -> StoreLook:
    """The store look called ``name``."""
    look = STORE_LOOKS.get(name)
    if look is None:
        raise StoreLookError(
            f"unknown store look {name!r}; known looks: {', '.join(sorted(STORE_LOOKS))}"
        )
    return look
