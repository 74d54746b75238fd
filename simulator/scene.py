"""Rendering a scenario into camera frames, with per-frame ground-truth boxes.

The lane background (belt, scanner glass, bagging plate) and the scenario's lighting and noise
are prepared once; each frame then only warps and blends the few sprites in view, so a frame
costs a few milliseconds on one core.

With a ``StoreLook`` (simulator.store_look) the frames are one store's camera instead: its own
lane surfaces and light (lighting sprites where they lie), and the composed top-down frame
warped into its camera, boxes with it; without one, frames are the bootstrap's lane scenes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from random import Random

import cv2
import numpy as np

from simulator.props import hand_sprite, non_merchandise_sprite
from simulator.scenario import CLASS_IDS, Actor, LaneLayout, Scenario
from simulator.sprites import Placement, Sprite, composite, place
from simulator.store_look import StoreLook, warped_extent
from simulator.world import World


@dataclass(frozen=True, slots=True)
class Look:
    """Per-scenario camera conditions."""

    gain: float  # overall brightness
    white_balance: tuple[float, float, float]  # B, G, R multipliers
    noise_sigma: float
    jpeg_quality: int | None  # None: no extra compression artefacts
    blur: bool

    @classmethod
    def random(cls, rng: Random, jpeg: bool = False) -> Look:
        warm = rng.uniform(-0.12, 0.12)
        return cls(
            gain=rng.uniform(0.75, 1.2),
            white_balance=(1 - warm, 1.0, 1 + warm),
            noise_sigma=rng.uniform(2.0, 7.0),
            jpeg_quality=rng.randint(35, 90) if jpeg else None,
            blur=True,
        )

    @classmethod
    def for_store(cls, store: StoreLook, rng: Random) -> Look:
        """The store's own light and sensor, its gain varying by a few percent per scenario."""
        return cls(
            gain=store.gain * rng.uniform(0.95, 1.05),
            white_balance=store.white_balance,
            noise_sigma=store.noise_sigma,
            jpeg_quality=store.jpeg_quality,
            blur=True,
        )


@dataclass(frozen=True, slots=True)
class Box:
    """One object in one frame: class, box (x1, y1, x2, y2), track id, product code."""

    track_id: int
    cls: int
    x1: int
    y1: int
    x2: int
    y2: int
    visible: float  # share of the object's pixels not covered by others
    code: str | None = None

    def as_list(self) -> list[object]:
        return [
            self.track_id,
            self.cls,
            self.x1,
            self.y1,
            self.x2,
            self.y2,
            round(self.visible, 3),
            self.code,
        ]


BACKGROUND_VARIANTS = 32


@lru_cache(maxsize=BACKGROUND_VARIANTS)
def lane_background(layout: LaneLayout, variant: int) -> np.ndarray:
    """Counter, belt, scanner glass and bagging plate, seen from above (one of 32 lanes)."""
    rng = Random(f"lane:{variant}")
    w, h = layout.width, layout.height
    frame = np.empty((h, w, 3), np.uint8)
    counter = np.array([rng.randint(150, 200), rng.randint(150, 200), rng.randint(140, 190)])
    frame[:] = counter
    top, bottom = layout.lane_top, layout.lane_bottom
    left, right = layout.scan_x
    belt = rng.randint(35, 60)
    frame[top:bottom, right:] = (belt, belt, belt + 4)
    texture = np.random.default_rng(rng.randrange(2**31)).integers(-6, 7, (bottom - top, w - right))
    frame[top:bottom, right:] = np.clip(frame[top:bottom, right:] + texture[..., None], 0, 255)
    for x in range(right + 10, w, 26):
        cv2.line(frame, (x, top), (x, bottom), (belt + 12,) * 3, 1)
    frame[top:bottom, left:right] = (120, 124, 128)  # steel around the scanner
    sx, sy = layout.scanner_centre
    gw, gh = int((right - left) * 0.55), int((bottom - top) * 0.4)
    cv2.rectangle(
        frame,
        (int(sx - gw / 2), int(sy - gh / 2)),
        (int(sx + gw / 2), int(sy + gh / 2)),
        (40, 38, 30),
        -1,
    )
    cv2.line(
        frame, (int(sx - gw / 2) + 6, int(sy)), (int(sx + gw / 2) - 6, int(sy)), (40, 40, 200), 1
    )
    plate = rng.randint(170, 215)
    frame[top:bottom, :left] = (plate, plate, plate - 5)
    cv2.line(frame, (left, top), (left, bottom), (90, 90, 90), 2)
    cv2.line(frame, (0, top), (w, top), (70, 70, 70), 2)
    cv2.line(frame, (0, bottom), (w, bottom), (70, 70, 70), 2)
    return frame


@lru_cache(maxsize=16)
def _noise_tiles(height: int, width: int, sigma: int) -> tuple[np.ndarray, np.ndarray]:
    """Sensor noise, split into positive and negative parts for saturating add/subtract."""
    tile = np.random.default_rng(sigma).normal(0, sigma, (height, width, 3))
    return np.clip(tile, 0, 255).astype(np.uint8), np.clip(-tile, 0, 255).astype(np.uint8)


class SceneRenderer:
    """Renders frames of one scenario: ``render(i)`` returns (frame, boxes).

    ``store``: render the scenario in that store (its lane, light and camera); a ``look`` given
    as well overrides the store's light and sensor, not its lane or camera.
    """

    def __init__(
        self,
        scenario: Scenario,
        world: World,
        look: Look | None = None,
        photo_splits: tuple[str, ...] = ("train",),
        store: StoreLook | None = None,
    ) -> None:
        self.scenario = scenario
        self.world = world
        self.photo_splits = photo_splits
        self.store = store
        rng = Random(f"look:{scenario.kind}:{scenario.seed}")
        layout = scenario.layout
        # A store's camera may see past the layout's frame: the lane is composed on a canvas
        # ``margin`` pixels larger on every side, and ``_warp`` takes the canvas to the camera.
        self._margin = 0
        self._light: np.ndarray | None = None
        self._warp: np.ndarray | None = None
        if store is None:
            self.look = look or Look.random(rng)
            background = lane_background(layout, rng.randrange(BACKGROUND_VARIANTS))
        else:
            self.look = look or Look.for_store(store, rng)
            self._margin = store.margin(layout)
            background = store.background(layout, self._margin)
            self._light = store.light(layout.width, layout.height, self._margin)[..., None]
            from_canvas = np.array(
                [[1, 0, -self._margin], [0, 1, -self._margin], [0, 0, 1]], np.float64
            )
            self._warp = store.camera_warp(layout.width, layout.height) @ from_canvas
        background = background.astype(np.float32)
        background *= np.array(self.look.white_balance, np.float32) * self.look.gain
        if self._light is not None:
            background *= self._light
        self.background = np.clip(background, 0, 255).astype(np.uint8)
        self._noise_pos, self._noise_neg = _noise_tiles(
            layout.height + 64, layout.width + 64, round(self.look.noise_sigma)
        )
        # The store's veiling glare, a flat layer of its light blended over every frame.
        self._veil: np.ndarray | None = None
        if store is not None and store.haze > 0:
            veil = np.array(self.look.white_balance, np.float64) * self.look.gain * 230
            self._veil = np.full((layout.height, layout.width, 3), veil.clip(0, 255), np.uint8)
        self._sprites: dict[int, Sprite] = {}
        self._colour = np.array(self.look.white_balance, np.float32) * self.look.gain
        self._actors = sorted(scenario.actors, key=lambda a: a.z)

    def sprite_for(self, actor: Actor) -> Sprite:
        """The actor's look, scaled to its size in the frame and lit like the scene (cached)."""
        cached = self._sprites.get(actor.actor_id)
        if cached is not None:
            return cached
        if actor.role == "product":
            assert actor.code is not None
            product = self.world.by_code[actor.code]
            version = actor.packaging_version
            if self.store is not None and self.store.packaging_version is not None:
                version = self.store.packaging_version
            base = self.world.sprite(product, version, Random(actor.variant), self.photo_splits)
        elif actor.role == "hand":
            base = hand_sprite(actor.variant)
        else:
            base = non_merchandise_sprite(actor.kind or "phone", actor.variant)
        scaled = base.scaled_to(actor.size)
        lit = np.clip(scaled.bgr.astype(np.float32) * self._colour, 0, 255).astype(np.uint8)
        sprite = Sprite(lit, scaled.alpha)
        self._sprites[actor.actor_id] = sprite
        return sprite

    def render(self, index: int) -> tuple[np.ndarray, list[Box]]:
        scenario, layout = self.scenario, self.scenario.layout
        t = index / scenario.fps
        dt = 1.0 / scenario.fps
        frame = self.background.copy()
        labels = np.zeros(frame.shape[:2], np.uint8)
        margin = self._margin
        drawn: list[tuple[Actor, int, Placement, int]] = []
        for actor in self._actors:
            pose = actor.pose(t)
            if pose is None:
                continue
            motion = (0.0, 0.0)
            if self.look.blur:
                before = actor.pose(max(actor.t_start, t - dt))
                if before is not None:
                    motion = (pose.x - before.x, pose.y - before.y)
            placed = place(
                self.sprite_for(actor),
                (pose.x + margin, pose.y + margin),
                pose.angle,
                pose.scale,
                (frame.shape[1], frame.shape[0]),
                motion,
            )
            if placed is None:
                continue
            if self._light is not None:
                placed = self._lit(placed)
            covered = composite(frame, placed)
            total = int(covered.sum())
            if total == 0:
                continue
            h, w = covered.shape
            label_roi = labels[placed.y0 : placed.y0 + h, placed.x0 : placed.x0 + w]
            label_roi[covered] = len(drawn) + 1
            drawn.append((actor, total, placed, len(drawn) + 1))
        if self._warp is not None:  # the store's camera sees the composed lane
            size = (layout.width, layout.height)
            frame = cv2.warpPerspective(
                frame, self._warp, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            labels = cv2.warpPerspective(labels, self._warp, size, flags=cv2.INTER_NEAREST)
        if self._veil is not None and self.store is not None:
            frame = cv2.addWeighted(frame, 1 - self.store.haze, self._veil, self.store.haze, 0)
        return self._sensor(frame, index), self._boxes(drawn, labels)

    def _sensor(self, frame: np.ndarray, index: int) -> np.ndarray:
        """Sensor noise and the camera's compression."""
        height, width = frame.shape[:2]
        frame = cv2.add(
            frame,
            self._noise_pos[(index * 7) % 64 :][:height, (index * 13) % 64 :][:, :width],
        )
        frame = cv2.subtract(
            frame,
            self._noise_neg[(index * 11) % 64 :][:height, (index * 5) % 64 :][:, :width],
        )
        if self.look.jpeg_quality is not None:
            ok, data = cv2.imencode(
                ".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.look.jpeg_quality]
            )
            decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
            if decoded is not None:
                frame = decoded
        return frame

    def _boxes(
        self, drawn: list[tuple[Actor, int, Placement, int]], labels: np.ndarray
    ) -> list[Box]:
        """A box for each drawn object (``labels``: which one each frame pixel shows)."""
        counts = np.bincount(labels.ravel(), minlength=len(drawn) + 1)
        size = (labels.shape[1], labels.shape[0])
        boxes = []
        for actor, total, placed, label in drawn:
            if self._warp is None:
                x1, y1, x2, y2 = placed.box
            else:
                (x1, y1, x2, y2), total = warped_extent(
                    self._warp, placed.alpha, placed.x0, placed.y0, size
                )
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            boxes.append(
                Box(
                    actor.actor_id,
                    CLASS_IDS[actor.role],
                    x1,
                    y1,
                    x2,
                    y2,
                    min(1.0, counts[label] / max(total, 1)),
                    actor.code,
                )
            )
        return boxes

    def _lit(self, placed: Placement) -> Placement:
        """A placed sprite lit by the store's light where it lies."""
        assert self._light is not None
        h, w = placed.alpha.shape
        light = self._light[placed.y0 : placed.y0 + h, placed.x0 : placed.x0 + w]
        bgr = np.clip(placed.bgr * light, 0, 255).astype(np.uint8)
        return Placement(bgr, placed.alpha, placed.x0, placed.y0)

    def frames(self) -> Iterator[tuple[int, np.ndarray, list[Box]]]:
        """Every frame of the scenario in order: (index, frame, boxes)."""
        for index in range(self.scenario.n_frames):
            frame, boxes = self.render(index)
            yield index, frame, boxes
