"""Checkout scenarios with complete ground truth, reproducible from (kind, seed).

A scenario is one transaction at one lane: items arrive on the belt, the cashier's hand moves
each over the scanner and on to the bagging area, and the scanner (or the produce keypad) emits
scan events. Each kind stages one kind of honest behaviour or loss:

    honest              every item scanned once
    skip_scan           an item passes the scanner without a scan
    ticket_switch       the barcode of a cheaper product A is scanned while product B passes
    scan_without_item   a code is scanned but no item passes
    quantity_key        N identical items, scanned once with quantity N (honest)
    plu_swap            produce keyed in under a cheaper PLU
    stacked_item        a small item rides hidden under a larger one and is not scanned
    new_product         a product no model was trained on, scanned honestly
    packaging_change    a product in its redesigned packaging, scanned honestly
    distractors         phone, wallet, keys, bag or receipt cross the lane (never items)
    mixed               5-40 items mixing all of the above

The ground truth is built by construction, as the scenario stages it: the true item list (what
crossed into the bagging area), the scan and POS events, and the alerts a perfect lane raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from random import Random
from typing import Any, Literal

from product_db.errors import LaneGuardError
from simulator.world import REDESIGN_VERSION, TRAINING_PACKAGING_VERSION, SimProduct, World

KINDS = (
    "honest",
    "skip_scan",
    "ticket_switch",
    "scan_without_item",
    "quantity_key",
    "plu_swap",
    "stacked_item",
    "new_product",
    "packaging_change",
    "distractors",
    "mixed",
)
Role = Literal["product", "hand", "non_merchandise"]
Behaviour = Literal[
    "honest", "skip_scan", "ticket_switch", "plu_swap", "stacked", "quantity_follower"
]
CLASS_IDS: dict[str, int] = {"product": 0, "hand": 1, "non_merchandise": 2}


class ScenarioError(LaneGuardError, ValueError):
    """An unknown scenario kind or an impossible request (e.g. no produce in the catalog)."""


@dataclass(frozen=True, slots=True)
class LaneLayout:
    """The top-down view: belt on the right, scan area in the middle, bagging on the left.

    Items move right to left. An item counts when it passes from the scan area into the
    bagging area (the lane's counting rule); zones are polygons in pixel coordinates.
    """

    width: int = 640
    height: int = 480

    @property
    def lane_top(self) -> int:
        return int(self.height * 0.12)

    @property
    def lane_bottom(self) -> int:
        return int(self.height * 0.88)

    @property
    def scan_x(self) -> tuple[int, int]:
        return int(self.width * 0.34), int(self.width * 0.66)

    @property
    def scanner_centre(self) -> tuple[float, float]:
        return self.width * 0.5, self.height * 0.5

    def zones(self) -> dict[str, list[list[int]]]:
        left, right = self.scan_x
        top, bottom = self.lane_top, self.lane_bottom
        return {
            "belt": [[right, top], [self.width, top], [self.width, bottom], [right, bottom]],
            "scan_area": [[left, top], [right, top], [right, bottom], [left, bottom]],
            "bagging_area": [[0, top], [left, top], [left, bottom], [0, bottom]],
        }


@dataclass(frozen=True, slots=True)
class Keyframe:
    t: float
    x: float
    y: float
    angle: float
    scale: float = 1.0


@dataclass
class Actor:
    """Something that moves through the view: an item, a hand or non-merchandise."""

    actor_id: int
    role: Role
    keyframes: list[Keyframe]
    z: int = 0
    code: str | None = None  # catalog key of a product
    display_code: str | None = None
    packaging_version: int = TRAINING_PACKAGING_VERSION
    kind: str | None = None  # non-merchandise kind ("phone", ...)
    variant: int = 0  # which look (produce photo, hand, prop)
    size: int = 120  # longest side in pixels at scale 1
    behaviour: Behaviour = "honest"
    crossed_at: float | None = None  # when it passes from scan area into bagging (items)

    @property
    def t_start(self) -> float:
        return self.keyframes[0].t

    @property
    def t_end(self) -> float:
        return self.keyframes[-1].t

    def pose(self, t: float) -> Keyframe | None:
        """Linear interpolation between keyframes; None outside the actor's lifetime."""
        frames = self.keyframes
        if t < frames[0].t or t > frames[-1].t:
            return None
        for a, b in zip(frames, frames[1:]):
            if a.t <= t <= b.t:
                u = 0.0 if b.t == a.t else (t - a.t) / (b.t - a.t)
                u = u * u * (3 - 2 * u)  # ease in and out: hands accelerate and stop
                return Keyframe(
                    t,
                    a.x + (b.x - a.x) * u,
                    a.y + (b.y - a.y) * u,
                    a.angle + (b.angle - a.angle) * u,
                    a.scale + (b.scale - a.scale) * u,
                )
        return frames[-1]


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """What a scanner or the produce keypad reports. ``code`` is as the device sends it."""

    t: float
    code: str
    quantity: int = 1
    source: Literal["scanner", "keypad"] = "scanner"
    weight_g: int | None = None
    type: str = "scan"


@dataclass(frozen=True, slots=True)
class PosEvent:
    t: float
    type: Literal["transaction_start", "transaction_end", "payment"]


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    """An alert a perfect lane raises. ``t`` is when it becomes certain."""

    type: Literal["unscanned_item", "switch", "scan_without_item"]
    t: float
    track_id: int | None = None
    code: str | None = None  # true product (catalog key)
    scanned_code: str | None = None  # catalog key of what was scanned
    subtype: str | None = None  # "ticket" or "plu" for switches


@dataclass
class Scenario:
    kind: str
    seed: int
    fps: float
    layout: LaneLayout
    actors: list[Actor]
    scans: list[ScanEvent]
    pos_events: list[PosEvent]
    expected_alerts: list[ExpectedAlert]
    duration: float
    new_products: list[str] = field(default_factory=list)
    packaging_changes: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return int(self.duration * self.fps)

    @property
    def items(self) -> list[Actor]:
        return [a for a in self.actors if a.role == "product"]

    @property
    def true_items(self) -> list[str]:
        """Catalog keys of every item that crossed into bagging, in crossing order."""
        crossed = sorted(
            (a for a in self.items if a.crossed_at is not None), key=lambda a: a.crossed_at or 0.0
        )
        return [a.code for a in crossed if a.code]

    @property
    def honest(self) -> bool:
        return not self.expected_alerts

    def frame_times(self) -> Iterator[float]:
        for i in range(self.n_frames):
            yield i / self.fps

    def summary(self) -> dict[str, Any]:
        """Everything but the per-frame boxes: the transaction's truth."""
        return {
            "kind": self.kind,
            "seed": self.seed,
            "fps": self.fps,
            "width": self.layout.width,
            "height": self.layout.height,
            "duration_s": round(self.duration, 3),
            "n_frames": self.n_frames,
            "zones": self.layout.zones(),
            "classes": CLASS_IDS,
            "true_items": self.true_items,
            "items": [
                {
                    "track_id": a.actor_id,
                    "code": a.code,
                    "display_code": a.display_code,
                    "packaging_version": a.packaging_version,
                    "behaviour": a.behaviour,
                    "entered_s": round(a.t_start, 3),
                    "crossed_s": None if a.crossed_at is None else round(a.crossed_at, 3),
                }
                for a in self.items
            ],
            "non_merchandise": [
                {"track_id": a.actor_id, "kind": a.kind}
                for a in self.actors
                if a.role == "non_merchandise"
            ],
            "scans": [asdict(s) for s in self.scans],
            "pos_events": [asdict(p) for p in self.pos_events],
            "expected_alerts": [asdict(a) for a in self.expected_alerts],
            "honest": self.honest,
            "new_products": self.new_products,
            "packaging_changes": self.packaging_changes,
        }


class _Builder:
    """Lays items out in time one after another and records what the scenario stages."""

    def __init__(self, kind: str, seed: int, world: World, layout: LaneLayout, fps: float):
        self.kind, self.seed, self.world, self.layout, self.fps = kind, seed, world, layout, fps
        self.rng = Random(f"{kind}:{seed}")
        self.actors: list[Actor] = []
        self.scans: list[ScanEvent] = []
        self.alerts: list[ExpectedAlert] = []
        self.clock = 0.6  # first item enters after the transaction starts
        self.new_products: list[str] = []
        self.packaging_changes: list[str] = []

    # -- actors ---------------------------------------------------------------------------
    def _next_id(self) -> int:
        return len(self.actors) + 1

    def _size_for(self, product: SimProduct) -> int:
        return self.rng.randint(80, 120) if product.is_produce else self.rng.randint(95, 150)

    def add_item(
        self,
        product: SimProduct,
        behaviour: Behaviour = "honest",
        version: int = TRAINING_PACKAGING_VERSION,
        scanned_as: SimProduct | None = None,
        quantity: int = 1,
        hover: bool | None = None,
        reenter: bool | None = None,
    ) -> Actor:
        """One item's pass: belt, hand to the scanner, (hover), into bagging, out of view."""
        lay, rng = self.layout, self.rng
        t0 = self.clock
        y = rng.uniform(lay.lane_top + 70, lay.lane_bottom - 70)
        angle = rng.uniform(-40, 40)
        sx, sy = lay.scanner_centre
        left, right = lay.scan_x
        pickup_x = right + rng.uniform(20, 60)
        frames = [
            Keyframe(t0, lay.width + 90, y, angle),
            Keyframe(t0 + rng.uniform(0.7, 1.0), pickup_x, y, angle),
        ]
        t = frames[-1].t + rng.uniform(0.3, 0.45)
        scan_y = sy + rng.uniform(-40, 40)
        frames.append(Keyframe(t, sx + rng.uniform(-15, 15), scan_y, angle + rng.uniform(-30, 30)))
        dwell = rng.uniform(0.35, 0.7)
        t_scan = t + dwell * rng.uniform(0.3, 0.7)
        wiggle = rng.uniform(-25, 25)
        t += dwell
        frames.append(
            Keyframe(t, sx + rng.uniform(-20, 20), scan_y + rng.uniform(-15, 15), angle + wiggle)
        )
        hover = rng.random() < 0.15 if hover is None else hover
        if hover:  # towards bagging and back without crossing: must not count
            t += rng.uniform(0.25, 0.4)
            frames.append(Keyframe(t, left + rng.uniform(15, 35), scan_y, angle + wiggle))
            t += rng.uniform(0.25, 0.4)
            frames.append(Keyframe(t, sx - 10, scan_y + rng.uniform(-20, 20), angle))
        t += rng.uniform(0.3, 0.45)
        bag_x, bag_y = (
            left * rng.uniform(0.35, 0.6),
            rng.uniform(lay.lane_top + 60, lay.lane_bottom - 60),
        )
        frames.append(Keyframe(t, bag_x, bag_y, angle + wiggle * 2))
        crossed = self._crossing_time(frames, left)
        reenter = rng.random() < 0.05 if reenter is None else reenter
        if reenter:  # taken back out of the bag over the scanner, then bagged again
            t += rng.uniform(0.3, 0.5)
            frames.append(Keyframe(t, sx - 20, scan_y, angle))
            t += rng.uniform(0.3, 0.5)
            frames.append(Keyframe(t, bag_x, bag_y, angle + wiggle))
        t += rng.uniform(0.3, 0.5)
        frames.append(Keyframe(t, -110, bag_y + rng.uniform(-20, 20), angle + wiggle * 2))
        actor = Actor(
            actor_id=self._next_id(),
            role="product",
            keyframes=frames,
            z=10,
            code=product.code,
            display_code=product.display_code,
            packaging_version=version,
            variant=rng.randrange(1000),
            size=self._size_for(product),
            behaviour=behaviour,
            crossed_at=crossed,
        )
        self.actors.append(actor)
        self._add_hand(frames[1].t, frames[-2].t, actor)
        self._stage_scan(actor, product, behaviour, scanned_as, quantity, t_scan)
        self.clock = frames[1].t + rng.uniform(0.9, 1.5)  # next item enters while this scans
        self.clock = max(self.clock, frames[2].t + 0.2)
        return actor

    @staticmethod
    def _crossing_time(frames: list[Keyframe], boundary: float) -> float:
        """First time the item's centre moves from x >= boundary to x < boundary."""
        for a, b in zip(frames, frames[1:]):
            if a.x >= boundary > b.x:
                # The eased motion crosses near the linear estimate; refine numerically.
                actor = Actor(0, "product", [a, b])
                lo, hi = a.t, b.t
                for _ in range(30):
                    mid = (lo + hi) / 2
                    pose = actor.pose(mid)
                    if pose is not None and pose.x >= boundary:
                        lo = mid
                    else:
                        hi = mid
                return hi
        raise ScenarioError("item path never crosses into the bagging area")

    def _add_hand(self, t_pick: float, t_release: float, item: Actor) -> None:
        """The cashier's hand holds the item from pickup to release, below/left of it."""
        rng = self.rng
        offset_x, offset_y = rng.uniform(-item.size * 0.45, -item.size * 0.2), rng.uniform(25, 55)
        holding = [k for k in item.keyframes if t_pick <= k.t <= t_release]
        frames = [Keyframe(t_pick - 0.35, holding[0].x + 40, self.layout.height + 80, -70)]
        frames += [Keyframe(k.t, k.x + offset_x, k.y + offset_y, -15) for k in holding]
        last = holding[-1]
        frames.append(Keyframe(last.t + 0.4, last.x + 60, self.layout.height + 90, -60))
        self.actors.append(
            Actor(
                self._next_id(),
                "hand",
                frames,
                z=20,
                variant=item.variant % 7,
                size=rng.randint(120, 150),
            )
        )

    def _stage_scan(
        self,
        actor: Actor,
        product: SimProduct,
        behaviour: Behaviour,
        scanned_as: SimProduct | None,
        quantity: int,
        t_scan: float,
    ) -> None:
        source: Literal["scanner", "keypad"] = "keypad" if product.is_produce else "scanner"
        weight = self.rng.randint(150, 1500) if product.is_produce else None
        crossed = actor.crossed_at if actor.crossed_at is not None else t_scan
        if behaviour in ("honest",):
            self.scans.append(
                ScanEvent(round(t_scan, 3), product.display_code, quantity, source, weight)
            )
        elif behaviour in ("ticket_switch", "plu_swap"):
            assert scanned_as is not None
            self.scans.append(
                ScanEvent(round(t_scan, 3), scanned_as.display_code, 1, source, weight)
            )
            self.alerts.append(
                ExpectedAlert(
                    "switch",
                    round(crossed, 3),
                    actor.actor_id,
                    product.code,
                    scanned_as.code,
                    "plu" if behaviour == "plu_swap" else "ticket",
                )
            )
        elif behaviour in ("skip_scan", "stacked"):
            self.alerts.append(
                ExpectedAlert("unscanned_item", round(crossed, 3), actor.actor_id, product.code)
            )
        # quantity_follower: covered by the first item's scan with quantity N

    def add_stacked_pair(self, carrier: SimProduct, hidden: SimProduct) -> None:
        """``hidden`` rides under ``carrier``; only the carrier is scanned.

        The hidden item sticks out past the carrier's edge (roughly a third to a half of it
        shows), as items slid under a bigger one do from an overhead view. One covered
        completely is invisible to any camera above the lane; it is not staged.
        """
        top = self.add_item(carrier, hover=False, reenter=False)
        rng = self.rng
        reach = top.size * rng.uniform(0.42, 0.55)
        direction = rng.uniform(-0.9 * math.pi, 0.1 * math.pi)  # away from the hand (below)
        dx, dy = reach * math.cos(direction), reach * math.sin(direction)
        frames = [Keyframe(k.t, k.x + dx, k.y + dy, k.angle + 20) for k in top.keyframes]
        hidden_actor = Actor(
            actor_id=self._next_id(),
            role="product",
            keyframes=frames,
            z=5,
            code=hidden.code,
            display_code=hidden.display_code,
            variant=rng.randrange(1000),
            size=int(top.size * rng.uniform(0.6, 0.75)),
            behaviour="stacked",
            crossed_at=self._crossing_time(frames, self.layout.scan_x[0]),
        )
        self.actors.append(hidden_actor)
        self.alerts.append(
            ExpectedAlert(
                "unscanned_item",
                round(hidden_actor.crossed_at or 0.0, 3),
                hidden_actor.actor_id,
                hidden.code,
            )
        )

    def add_scan_without_item(self, product: SimProduct) -> None:
        t = self.clock + 0.5
        self.scans.append(ScanEvent(round(t, 3), product.display_code))
        self.alerts.append(
            ExpectedAlert("scan_without_item", round(t, 3), scanned_code=product.code)
        )
        self.clock = t + 0.8

    def add_distractor(self, kind: str) -> None:
        """Non-merchandise put down in the scan area and taken back, or left on the belt."""
        lay, rng = self.layout, self.rng
        t0 = self.clock
        y = rng.uniform(lay.lane_top + 60, lay.lane_bottom - 60)
        sx, _ = lay.scanner_centre
        angle = rng.uniform(-60, 60)
        if rng.random() < 0.5:  # placed on the scanner by the customer, then taken back
            frames = [
                Keyframe(t0, lay.width + 100, y, angle),
                Keyframe(t0 + 0.7, sx + rng.uniform(-30, 60), y, angle),
                Keyframe(t0 + 1.6, sx + rng.uniform(-30, 60), y, angle + 10),
                Keyframe(t0 + 2.3, lay.width + 100, y, angle),
            ]
        else:  # slides along the lane edge into the bagging area (a bag, a receipt)
            edge = lay.lane_top + 30 if rng.random() < 0.5 else lay.lane_bottom - 30
            frames = [
                Keyframe(t0, lay.width + 100, edge, angle),
                Keyframe(t0 + 1.8, lay.scan_x[0] * 0.4, edge, angle + 20),
                Keyframe(t0 + 2.6, -120, edge, angle + 30),
            ]
        self.actors.append(
            Actor(
                self._next_id(),
                "non_merchandise",
                frames,
                z=8,
                kind=kind,
                variant=rng.randrange(4),
                size=rng.randint(90, 150),
            )
        )
        self.clock = t0 + rng.uniform(0.6, 1.2)

    # -- assembly ---------------------------------------------------------------------------
    def finish(self) -> Scenario:
        end_items = max((a.t_end for a in self.actors), default=self.clock)
        scans_end = max((s.t for s in self.scans), default=0.0)
        t_end = max(end_items, scans_end) + 0.4
        pos = [
            PosEvent(0.2, "transaction_start"),
            PosEvent(round(t_end, 3), "transaction_end"),
            PosEvent(round(t_end + 0.8, 3), "payment"),
        ]
        self.scans.sort(key=lambda s: s.t)
        self.alerts.sort(key=lambda a: a.t)
        return Scenario(
            kind=self.kind,
            seed=self.seed,
            fps=self.fps,
            layout=self.layout,
            actors=self.actors,
            scans=self.scans,
            pos_events=pos,
            expected_alerts=self.alerts,
            duration=t_end + 1.2,
            new_products=sorted(set(self.new_products)),
            packaging_changes=sorted(set(self.packaging_changes)),
        )


def _switch_pair(pool: list[SimProduct], rng: Random) -> tuple[SimProduct, SimProduct]:
    """A product that passes and a cheaper one whose code is scanned instead (the fraud)."""
    cheapest = min(p.price_minor for p in pool)
    passing = rng.choice([p for p in pool if p.price_minor > cheapest] or pool)
    cheaper = [p for p in pool if p.price_minor < passing.price_minor]
    return passing, rng.choice(cheaper or [p for p in pool if p.code != passing.code])


def build_scenario(
    kind: str,
    seed: int,
    world: World,
    fps: float = 30.0,
    layout: LaneLayout | None = None,
    n_items: int | None = None,
) -> Scenario:
    """The scenario of ``kind`` for ``seed``: same arguments, same scenario, always."""
    if kind not in KINDS:
        raise ScenarioError(f"unknown scenario kind {kind!r}; choose from {', '.join(KINDS)}")
    if fps <= 0:
        raise ScenarioError(f"fps must be positive, got {fps}")
    b = _Builder(kind, seed, world, layout or LaneLayout(), fps)
    rng = b.rng
    known = world.known
    packaged = [p for p in known if not p.is_produce]
    produce = [p for p in known if p.is_produce]
    if kind == "plu_swap" and len(produce) < 2:
        raise ScenarioError("plu_swap needs at least two produce items in the catalog")
    if kind == "mixed":
        count = n_items if n_items is not None else rng.randint(5, 40)
    else:
        count = n_items if n_items is not None else rng.randint(4, 9)
    special_at = rng.randrange(max(1, count))

    for i in range(count):
        if kind == "mixed":
            _mixed_step(b, rng, known, packaged, produce, world)
            continue
        product = rng.choice(known)
        if i != special_at or kind in ("honest",):
            b.add_item(product)
            continue
        _special(b, kind, rng, known, packaged, produce, world)
    if kind == "distractors":
        for _ in range(rng.randint(1, 2)):
            b.add_distractor(rng.choice(("phone", "wallet", "keys", "bag", "receipt")))
    return b.finish()


def _special(
    b: _Builder,
    kind: str,
    rng: Random,
    known: list[SimProduct],
    packaged: list[SimProduct],
    produce: list[SimProduct],
    world: World,
) -> None:
    if kind == "skip_scan":
        b.add_item(rng.choice(known), "skip_scan")
    elif kind == "ticket_switch":
        passing, scanned = _switch_pair(packaged, rng)
        b.add_item(passing, "ticket_switch", scanned_as=scanned)
    elif kind == "scan_without_item":
        b.add_scan_without_item(rng.choice(packaged))
    elif kind == "quantity_key":
        product, n = rng.choice(packaged), rng.randint(2, 4)
        b.add_item(product, quantity=n)
        for _ in range(n - 1):
            b.add_item(product, "quantity_follower")
    elif kind == "plu_swap":
        passing, scanned = _switch_pair(produce, rng)
        b.add_item(passing, "plu_swap", scanned_as=scanned)
    elif kind == "stacked_item":
        big = max(rng.sample(packaged, min(3, len(packaged))), key=lambda p: p.price_minor)
        b.add_stacked_pair(big, rng.choice([p for p in packaged if p.code != big.code]))
    elif kind == "new_product":
        if not world.new_products:
            raise ScenarioError("new_product needs a holdout product in the world")
        product = rng.choice(world.new_products)
        b.new_products.append(product.code)
        b.add_item(product)
    elif kind == "packaging_change":
        product = rng.choice(packaged)
        b.packaging_changes.append(product.code)
        b.add_item(product, version=REDESIGN_VERSION)
    elif kind == "distractors":
        b.add_distractor(rng.choice(("phone", "wallet", "keys", "bag", "receipt")))
        b.add_item(rng.choice(known))


_MIX = (
    ("honest", 0.70),
    ("skip_scan", 0.05),
    ("ticket_switch", 0.04),
    ("scan_without_item", 0.03),
    ("quantity_key", 0.04),
    ("plu_swap", 0.03),
    ("stacked_item", 0.02),
    ("new_product", 0.03),
    ("packaging_change", 0.03),
    ("distractors", 0.03),
)


def _mixed_step(
    b: _Builder,
    rng: Random,
    known: list[SimProduct],
    packaged: list[SimProduct],
    produce: list[SimProduct],
    world: World,
) -> None:
    kind = rng.choices([k for k, _ in _MIX], weights=[w for _, w in _MIX])[0]
    if kind == "honest" or (kind == "plu_swap" and len(produce) < 2):
        b.add_item(rng.choice(known))
    else:
        _special(b, kind, rng, known, packaged, produce, world)
