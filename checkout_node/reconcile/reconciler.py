"""Reconciliation of one transaction: counted items against scans, incrementally and finally.

As it goes: when an item reaches the bagging area it takes the best free scan unit from the
window before it (a scan with quantity 3 is three units; later units wait longer, for the items
that follow). No unit: the item is unscanned and the alert fires at once; the cashier's scan of
it afterwards resolves it ("rescanned"). A unit whose code the recogniser confidently
contradicts makes a switch. A scan unit that no item claims within its window is a scan without
an item. It is a quiet entry in the transaction (``Outcome.unseen_scans``: the customer paid for
something the camera did not see, which costs the store nothing and is mostly the detector
missing an item), and a note for the cashier only when the evidence says an item was there and
the lane could not follow it: a product track lost in the scan area, uncounted, during the
scan's window (``add_lost``).

At the end (before payment): one minimum-cost assignment over the whole transaction, which may
undo an early greedy choice. Open alerts the final check does not confirm are withdrawn; what it
finds that was not raised yet is raised then. The transaction is honest when nothing is left:
every item paired with a scan whose identity does not contradict it, and every scan used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from checkout_node.catalog import LaneCatalog
from checkout_node.picklist import pick_list
from checkout_node.reconcile.assignment import FORBIDDEN, match_with_unmatched
from checkout_node.reconcile.model import (
    RESOLUTIONS,
    Agreement,
    Alert,
    AlertChange,
    AlertType,
    Scan,
    SeenItem,
    Severity,
)
from product_db.codes import is_plu
from product_db.errors import LaneGuardError

AGREEMENT_COST = {"agree": 0.0, "unsure": 0.6, "disagree": 2.0}


class ReconcileError(LaneGuardError, ValueError):
    """A call that does not fit the transaction's state (e.g. an item after it ended)."""


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    scan_before_s: float = 8.0  # a scan may come this long before its item reaches bagging
    scan_after_s: float = 1.5  # ... or this long after (a scan at the edge of the scan area)
    # ... but no more than this after, for an item the recogniser cannot confirm it is: a scan
    # a second after an unknown item crossed is the next item's far more often than its own.
    scan_after_unsure_s: float = 0.5
    follower_s: float = 4.0  # each further unit of a quantity scan waits this much longer
    unmatched_cost: float = 1.6  # per item or unit left alone; a pair costs 0..3
    high_value_minor: int = 500  # at or above: high severity
    medium_value_minor: int = 100  # at or above (or unknown price): medium
    # A product lost in the scan area up to this long before a scan is evidence for it (the
    # item was scanned, then the camera lost it); the window's end is the scan's own.
    lost_before_s: float = 3.0
    # A keyed PLU outside the produce pick list contradicts the camera only when the list's
    # first PLU holds at least this share of belief (and is dearer): on real produce photos,
    # 1.7% of honest items against 67% of cheaper-PLU swaps at 0.5 (checkout_node/models/README.md).
    plu_confidence: float = 0.5


@dataclass
class _Unit:
    scan: Scan
    index: int  # 0 for the first unit of a scan, 1.. for quantity followers
    voided: bool = False

    @property
    def key(self) -> str:
        assert self.scan.key is not None
        return self.scan.key


@dataclass
class Outcome:
    """The final word on a transaction."""

    transaction_id: str
    honest: bool
    seen: list[dict[str, Any]]  # per counted item: track, final code, how it was decided
    scans: list[Scan]
    pairs: list[tuple[SeenItem, Scan, Agreement]]
    alerts: list[Alert]
    ended_s: float
    # Scans no item was seen for: quiet entries and notes alike (event ids).
    unseen_scans: list[str] = field(default_factory=list)

    @property
    def seen_codes(self) -> list[str | None]:
        return [entry["code"] for entry in self.seen]


@dataclass
class TransactionReconciler:
    transaction_id: str
    catalog: LaneCatalog
    t1: float
    t2: float
    config: ReconcileConfig = field(default_factory=ReconcileConfig)
    started_s: float = 0.0
    items: list[SeenItem] = field(default_factory=list)
    scans: list[Scan] = field(default_factory=list)
    units: list[_Unit] = field(default_factory=list)
    pairing: dict[int, int] = field(default_factory=dict)  # track id -> unit index
    alerts: list[Alert] = field(default_factory=list)
    outcome: Outcome | None = None
    lost_s: list[float] = field(default_factory=list)  # product tracks lost in the scan area
    # PLUs the lane screen's pick list offered in this transaction: one keyed from it is the
    # cashier's choice among the camera's own proposals, never a contradiction.
    offered_plus: set[str] = field(default_factory=set)
    quiet: set[str] = field(default_factory=set)  # scans without an item, no evidence (yet)

    # -- identity ---------------------------------------------------------------------------
    def agreement(self, item: SeenItem, key: str, weight_g: int | None = None) -> Agreement:
        """Does what the camera saw contradict the scanned product?

        Contradiction needs confidence on both sides: the recogniser names something (trusted
        or "of interest"), and the scanned product is confidently not it: not among its nearest
        candidates, or less similar than T2. A scanned product that is a close second (look-alike
        produce, sister products) is unsure, not a switch; an unknown item is always unsure.

        Produce below a trusted identity is judged by the pick list the cashier would be shown
        (checkout_node.picklist): a keyed PLU is contradicted when it is not on the list while
        the list's first PLU is believed at ``plu_confidence`` or more and costs more than the
        keyed one (a swap to a dearer PLU cheats nobody). The embedder's best produce match
        alone is wrong too often to contradict a keyed PLU.
        """
        if item.code == key:
            return "agree"
        if item.band != "trusted" and is_plu(key) and is_plu(item.code):
            if key in self.offered_plus:
                return "unsure"
            return "disagree" if self._off_the_pick_list(item, key, weight_g) else "unsure"
        similarity = item.similarity(key)
        if similarity is not None and similarity >= (
            self.t1 if item.band == "trusted" else self.t2
        ):
            return "agree"
        if item.band != "unknown" and (similarity is None or similarity < self.t2):
            return "disagree"
        return "unsure"

    def _off_the_pick_list(self, item: SeenItem, key: str, weight_g: int | None) -> bool:
        """The keyed PLU is not among the PLUs the camera proposes, and the camera is confident
        of a dearer one (a price per kg against a price per piece: priced at the scale's
        ``weight_g``, and never dearer when nothing was weighed)."""
        proposals = pick_list((c, s) for c, s in item.candidates if is_plu(c))
        if not proposals or key in {p.code for p in proposals}:
            return False
        first = proposals[0]
        if first.probability < self.config.plu_confidence:
            return False
        proposed, keyed = self.catalog.lookup(first.code), self.catalog.lookup(key)
        if proposed is None or keyed is None:
            return False
        if proposed.sold_by == keyed.sold_by:
            return proposed.price_minor > keyed.price_minor
        seen_value = self.catalog.value_minor(first.code, weight_g)
        keyed_value = self.catalog.value_minor(key, weight_g)
        return seen_value is not None and keyed_value is not None and seen_value > keyed_value

    def _window_ok(self, item: SeenItem, unit: _Unit, late_ok: bool) -> bool:
        """A scan pays for an item crossing up to ``scan_before_s`` after it (longer for the
        later units of a quantity). A scan up to ``scan_after_s`` after the crossing (scanned at
        the edge of the scan area) pays only if it does not contradict the item: a switch is a
        scan made while the item was still being scanned; where the recogniser cannot confirm
        the scanned product, only a scan within ``scan_after_unsure_s`` pays (later, it is the
        next item's). A scan later still pays only for an item already alerted whose identity
        it agrees with: the cashier rescanning that item, not the next item's scan."""
        cfg = self.config
        latest = unit.scan.t + cfg.scan_before_s + unit.index * cfg.follower_s
        if item.crossed_s > latest:
            return False
        if unit.scan.t <= item.crossed_s:
            return True
        agreement = self.agreement(item, unit.key, unit.scan.weight_g)
        late = unit.scan.t - item.crossed_s
        if agreement == "agree":
            return late <= cfg.scan_after_s or late_ok
        return agreement == "unsure" and late <= cfg.scan_after_unsure_s

    def _cost(self, item: SeenItem, unit: _Unit, late_ok: bool = False) -> float:
        if unit.voided or not self._window_ok(item, unit, late_ok):
            return FORBIDDEN
        cfg = self.config
        span = cfg.scan_before_s + unit.index * cfg.follower_s
        timing = min(abs(item.crossed_s - unit.scan.t) / span, 1.0) + 0.01 * unit.index
        return timing + AGREEMENT_COST[self.agreement(item, unit.key, unit.scan.weight_g)]

    # -- events -----------------------------------------------------------------------------
    def add_item(self, item: SeenItem) -> list[AlertChange]:
        """An item reached the bagging area: pair it now, or alert now."""
        self._open()
        self.items.append(item)
        paired = set(self.pairing.values())
        free = [u for u in range(len(self.units)) if u not in paired]
        costs = [self._cost(item, self.units[u]) for u in free]
        if costs and min(costs) < FORBIDDEN:
            unit = free[int(np.argmin(costs))]
            self.pairing[item.track_id] = unit
            if (
                self.agreement(item, self.units[unit].key, self.units[unit].scan.weight_g)
                == "disagree"
            ):
                return self._raise(self._switch_alert(item, self.units[unit], item.crossed_s))
            return []
        return self._raise(self._unscanned_alert(item, item.crossed_s))

    def add_scan(self, scan: Scan) -> list[AlertChange]:
        """A scan arrived: its units pair items counted just before it (a scan at the edge of
        the window) or an item already alerted as unscanned (the cashier rescanned it)."""
        self._open()
        self.scans.append(scan)
        if scan.key is None:
            return []  # shown as invalid on the screen; pays for nothing
        changes: list[AlertChange] = []
        for index in range(scan.quantity):
            self.units.append(_Unit(scan, index))
            changes += self._pair_late(len(self.units) - 1, scan.t)
        return changes

    def void(self, code: str, t: float) -> list[AlertChange]:
        """The cashier voided a scanned code: its latest unit goes, unpaired ones first. An item
        that unit paid for is then unscanned unless another unit can take it."""
        self._open()
        target = Scan.of(code, t).key
        live = [
            u
            for u, unit in enumerate(self.units)
            if not unit.voided and unit.scan.key is not None and unit.key == target
        ]
        if not live:
            raise ReconcileError(f"void of {code!r}: no scanned unit of it in this transaction")
        paired = {u: track for track, u in self.pairing.items()}
        unpaired = [u for u in live if u not in paired]
        chosen = (unpaired or live)[-1]
        self.units[chosen].voided = True
        track = paired.get(chosen)
        if track is None:
            return []
        del self.pairing[track]
        item = next(i for i in self.items if i.track_id == track)
        changes = self._withdraw_item_alerts(track, t)
        replacement = self._best_free_unit(item, late_ok=False)
        if replacement is not None:
            self.pairing[track] = replacement
            return changes
        alert = self._unscanned_alert(item, t)
        alert.subtype = "voided"
        return changes + self._raise(alert)

    def tick(self, now_s: float) -> list[AlertChange]:
        """Time passes: scan units no item claimed within their window are scans without an
        item: a note when an item was lost around them, else a quiet entry."""
        self._open()
        changes: list[AlertChange] = []
        paired = set(self.pairing.values())
        noted = {a.scan_event_id for a in self.alerts if a.type == "scan_without_item"}
        for u, unit in enumerate(self.units):
            event = unit.scan.event_id
            if unit.voided or u in paired or now_s <= self._latest(unit) or event in noted:
                continue
            if self._lost_during(unit):
                self.quiet.discard(event)
                changes += self._raise(self._scan_without_item_alert(unit, now_s))
                noted.add(event)
            else:
                self.quiet.add(event)
        return changes

    def add_lost(self, lost_s: float) -> list[AlertChange]:
        """The camera lost a product in the scan area at ``lost_s`` without counting it: a
        quiet scan without an item around then becomes a note (the item was there)."""
        self._open()
        # Lost before this transaction (and before a first scan's window): an item of the
        # transaction before, reported late.
        if lost_s < self.started_s - self.config.lost_before_s:
            return []
        self.lost_s.append(lost_s)
        paired = set(self.pairing.values())
        changes: list[AlertChange] = []
        for u, unit in enumerate(self.units):
            event = unit.scan.event_id
            if event in self.quiet and u not in paired and self._lost_during(unit):
                self.quiet.discard(event)
                changes += self._raise(self._scan_without_item_alert(unit, lost_s))
        return changes

    def _latest(self, unit: _Unit) -> float:
        cfg = self.config
        return unit.scan.t + cfg.scan_before_s + unit.index * cfg.follower_s

    def _lost_during(self, unit: _Unit) -> bool:
        start = unit.scan.t - self.config.lost_before_s
        return any(start <= t <= self._latest(unit) for t in self.lost_s)

    def resolve(self, alert_id: str, resolution: str, t: float, reason: str | None = None) -> Alert:
        """The cashier or a supervisor closed an alert on the lane screen."""
        if resolution not in RESOLUTIONS:
            raise ReconcileError(
                f"resolution {resolution!r} is not one of {', '.join(RESOLUTIONS)}"
            )
        if resolution == "supervisor_override" and not (reason and reason.strip()):
            raise ReconcileError("a supervisor override needs a reason")
        alert = next((a for a in self.alerts if a.alert_id == alert_id), None)
        if alert is None:
            raise ReconcileError(
                f"alert {alert_id} is not part of transaction {self.transaction_id}"
            )
        if alert.status != "open":
            raise ReconcileError(f"alert {alert_id} is already {alert.status}")
        alert.status, alert.resolution, alert.reason, alert.closed_s = (
            "resolved",
            resolution,
            reason,
            t,
        )
        return alert

    def finish(self, t: float) -> tuple[Outcome, list[AlertChange]]:
        """The final check, at transaction end and before payment."""
        self._open()
        cfg = self.config
        live = [u for u, unit in enumerate(self.units) if not unit.voided]
        cost = np.full((len(self.items), len(live)), FORBIDDEN)
        for i, item in enumerate(self.items):
            for j, u in enumerate(live):
                cost[i, j] = self._cost(item, self.units[u], late_ok=self._was_alerted(item))
        pairs = match_with_unmatched(cost, cfg.unmatched_cost)
        self.pairing = {self.items[i].track_id: live[j] for i, j in pairs}
        problems = self._problems(t)
        changes = self._settle(problems, t)
        outcome = self._outcome(t)
        self.outcome = outcome
        return outcome, changes

    # -- internals --------------------------------------------------------------------------
    def _open(self) -> None:
        if self.outcome is not None:
            raise ReconcileError(f"transaction {self.transaction_id} has ended")

    def _was_alerted(self, item: SeenItem) -> bool:
        return any(a.track_id == item.track_id and a.type != "switch" for a in self.alerts)

    def _best_free_unit(self, item: SeenItem, late_ok: bool) -> int | None:
        paired = set(self.pairing.values())
        best, best_cost = None, FORBIDDEN
        for u, unit in enumerate(self.units):
            if u in paired:
                continue
            cost = self._cost(item, unit, late_ok)
            if cost < best_cost:
                best, best_cost = u, cost
        return best

    def _pair_late(self, unit_index: int, t: float) -> list[AlertChange]:
        """A new unit pays for an unpaired item: one crossing just before the scan, or one
        whose unscanned alert is still open (rescanned after the banner)."""
        unit = self.units[unit_index]
        waiting = [
            item
            for item in self.items
            if item.track_id not in self.pairing
            and self.agreement(item, unit.key, unit.scan.weight_g) != "disagree"
            and self._cost(item, unit, late_ok=self._open_alert(item) is not None) < FORBIDDEN
        ]
        if not waiting:
            return []
        item = min(waiting, key=lambda i: self._cost(i, unit, late_ok=True))
        self.pairing[item.track_id] = unit_index
        alert = self._open_alert(item)
        if alert is None:
            return []
        alert.status, alert.resolution, alert.closed_s = "resolved", "rescanned", t
        return [AlertChange("resolved", alert)]

    def _open_alert(self, item: SeenItem) -> Alert | None:
        return next(
            (a for a in self.alerts if a.track_id == item.track_id and a.status == "open"), None
        )

    def _problems(self, t: float) -> list[Alert]:
        found: list[Alert] = []
        paired_units = set(self.pairing.values())
        for item in self.items:
            unit_index = self.pairing.get(item.track_id)
            if unit_index is None:
                found.append(self._unscanned_alert(item, t))
            elif (
                self.agreement(
                    item, self.units[unit_index].key, self.units[unit_index].scan.weight_g
                )
                == "disagree"
            ):
                found.append(self._switch_alert(item, self.units[unit_index], t))
        self.quiet = set()
        for u, unit in enumerate(self.units):
            if unit.voided or u in paired_units:
                continue
            if self._lost_during(unit):
                found.append(self._scan_without_item_alert(unit, t))
            else:
                self.quiet.add(unit.scan.event_id)
        return found

    def _settle(self, problems: list[Alert], t: float) -> list[AlertChange]:
        """Keep alerts the final check confirms, withdraw open ones it does not, raise new."""
        changes: list[AlertChange] = []
        confirmed = {(p.subject, p.type) for p in problems}
        for alert in self.alerts:
            if alert.status == "open" and (alert.subject, alert.type) not in confirmed:
                alert.status, alert.closed_s = "withdrawn", t
                changes.append(AlertChange("withdrawn", alert))
        known = {(a.subject, a.type) for a in self.alerts if a.status != "withdrawn"}
        for problem in problems:
            if (problem.subject, problem.type) not in known:
                changes += self._raise(problem)
        return changes

    def _withdraw_item_alerts(self, track_id: int, t: float) -> list[AlertChange]:
        changes = []
        for alert in self.alerts:
            if alert.track_id == track_id and alert.status == "open":
                alert.status, alert.closed_s = "withdrawn", t
                changes.append(AlertChange("withdrawn", alert))
        return changes

    def _raise(self, alert: Alert) -> list[AlertChange]:
        self.alerts.append(alert)
        return [AlertChange("raised", alert)]

    def _severity(self, value: int | None) -> Severity:
        cfg = self.config
        if value is None:
            return "medium"
        if value >= cfg.high_value_minor:
            return "high"
        return "medium" if value >= cfg.medium_value_minor else "low"

    def _unscanned_alert(self, item: SeenItem, t: float) -> Alert:
        # No scale weighed an unscanned item: a per-kg product's value is unknown.
        value = self.catalog.value_minor(item.code)
        kind: AlertType = "unscanned_item"
        # The same product was scanned with a quantity, and every unit is taken: a miskeyed
        # quantity rather than an item slipped past.
        if item.code is not None and any(s.key == item.code and s.quantity > 1 for s in self.scans):
            kind = "quantity_mismatch"
        return Alert(
            self.transaction_id,
            kind,
            t,
            self._severity(value),
            value,
            track_id=item.track_id,
            seen_code=item.code,
        )

    def _switch_alert(self, item: SeenItem, unit: _Unit, t: float) -> Alert:
        # The scale's weight prices both sides of a produce swap. A switch to a dearer code
        # costs the store nothing: its value at risk is 0, never negative.
        weight = unit.scan.weight_g
        seen_value = self.catalog.value_minor(item.code, weight)
        scanned_value = self.catalog.value_minor(unit.key, weight)
        value = (
            None
            if seen_value is None or scanned_value is None
            else max(0, seen_value - scanned_value)
        )
        both_produce = is_plu(unit.key) and is_plu(item.code)
        return Alert(
            self.transaction_id,
            "switch",
            t,
            "low" if value == 0 else self._severity(value),
            value,
            track_id=item.track_id,
            seen_code=item.code,
            scanned_code=unit.key,
            scan_event_id=unit.scan.event_id,
            subtype="plu" if both_produce else "ticket",
        )

    def _scan_without_item_alert(self, unit: _Unit, t: float) -> Alert:
        return Alert(
            self.transaction_id,
            "scan_without_item",
            t,
            "note",
            None,
            scanned_code=unit.key,
            scan_event_id=unit.scan.event_id,
        )

    def _outcome(self, t: float) -> Outcome:
        pairs: list[tuple[SeenItem, Scan, Agreement]] = []
        seen: list[dict[str, Any]] = []
        for item in sorted(self.items, key=lambda i: i.crossed_s):
            unit_index = self.pairing.get(item.track_id)
            if unit_index is None:
                seen.append(self._seen_entry(item, item.code, "vision"))
                continue
            unit = self.units[unit_index]
            agreement = self.agreement(item, unit.key, unit.scan.weight_g)
            pairs.append((item, unit.scan, agreement))
            if agreement == "disagree":
                seen.append(self._seen_entry(item, item.code, "vision"))
            else:
                seen.append(self._seen_entry(item, unit.key, f"scan ({agreement})"))
        unresolved = [
            a
            for a in self.alerts
            if a.status != "withdrawn" and a.resolution not in ("not_an_item",)
        ]
        honest = not unresolved and all(s.key is not None for s in self.scans)
        noted = [
            a.scan_event_id
            for a in self.alerts
            if a.type == "scan_without_item" and a.status != "withdrawn" and a.scan_event_id
        ]
        unseen = [s.event_id for s in self.scans if s.event_id in self.quiet or s.event_id in noted]
        return Outcome(
            self.transaction_id, honest, seen, list(self.scans), pairs, self.alerts, t, unseen
        )

    @staticmethod
    def _seen_entry(item: SeenItem, code: str | None, decided_by: str) -> dict[str, Any]:
        return {
            "track_id": item.track_id,
            "code": code,
            "vision_code": item.code,
            "band": item.band,
            "score": round(item.score, 4),
            "crossed_s": round(item.crossed_s, 3),
            "decided_by": decided_by,
        }
