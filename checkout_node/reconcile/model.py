"""What reconciliation works on: items the camera counted, scans the till reported, alerts.

Times are seconds on the lane's stream clock (the camera's frame times); scans are placed on the
same clock when they arrive.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from checkout_node.vision.pipeline import CountedItem
from checkout_node.vision.recogniser import Band
from laneguard.wire import ScanMessage
from product_db.codes import InvalidCodeError, normalise_code

AlertType = Literal["unscanned_item", "switch", "scan_without_item", "quantity_mismatch"]
AlertStatus = Literal["open", "resolved", "withdrawn"]
Severity = Literal["high", "medium", "low", "note"]
Agreement = Literal["agree", "unsure", "disagree"]
RESOLUTIONS = (
    "rescanned",  # the cashier scanned the item (or the customer did, after the prompt)
    "not_an_item",  # the camera counted something that is not merchandise
    "customer_declined",  # the customer does not take the item
    "supervisor_override",  # a supervisor accepts the transaction as it is (reason required)
)


@dataclass(frozen=True)
class SeenItem:
    """A counted item: where and when it crossed, and what the recogniser thinks it is."""

    track_id: int
    crossed_s: float
    entered_s: float
    code: str | None  # catalog key; None: unknown product
    band: Band
    score: float
    candidates: tuple[tuple[str, float], ...] = ()
    crop_jpeg: bytes = b""
    box: tuple[int, int, int, int] = (0, 0, 0, 0)

    @classmethod
    def from_counted(cls, item: CountedItem) -> SeenItem:
        return cls(
            item.track_id,
            item.crossed_s,
            item.entered_s,
            item.code,
            item.band,
            item.score,
            item.candidates,
            item.crop_jpeg,
            item.box,
        )

    def similarity(self, key: str) -> float | None:
        """The item's similarity to a product, when that product is among its candidates."""
        return next((score for code, score in self.candidates if code == key), None)


@dataclass(frozen=True)
class Scan:
    """One scan event, normalised. An unreadable or invalid code keeps ``raw_code`` and says
    why in ``error``; it is shown to the cashier and stored, but matches no item."""

    event_id: str
    t: float
    raw_code: str
    key: str | None
    error: str | None = None
    quantity: int = 1
    weight_g: int | None = None
    source: str = "scanner"

    @classmethod
    def of(
        cls,
        raw_code: str,
        t: float,
        quantity: int = 1,
        weight_g: int | None = None,
        source: str = "scanner",
        event_id: str | None = None,
    ) -> Scan:
        try:
            key: str | None = normalise_code(raw_code)
            error = None
        except InvalidCodeError as problem:
            key, error = None, str(problem)
        return cls(
            event_id or uuid.uuid4().hex, t, raw_code, key, error, quantity, weight_g, source
        )

    @classmethod
    def from_message(cls, message: ScanMessage, t: float | None = None) -> Scan:
        return cls.of(
            message.code,
            message.t if t is None else t,
            message.quantity,
            message.weight_g,
            message.source,
            message.event_id,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "t": round(self.t, 3),
            "code": self.raw_code,
            "key": self.key,
            "error": self.error,
            "quantity": self.quantity,
            "weight_g": self.weight_g,
            "source": self.source,
        }


@dataclass
class Alert:
    """A difference between what was seen and what was scanned, and what became of it."""

    transaction_id: str
    type: AlertType
    raised_s: float
    severity: Severity
    value_minor: int | None  # what the difference costs the store, when known
    track_id: int | None = None
    seen_code: str | None = None
    scanned_code: str | None = None
    scan_event_id: str | None = None
    subtype: str | None = None  # "ticket" or "plu" for switches, "voided" for a voided scan
    alert_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: AlertStatus = "open"
    resolution: str | None = None
    reason: str | None = None
    closed_s: float | None = None

    @property
    def subject(self) -> tuple[str, int | None, str | None]:
        """What the alert is about: one alert per subject and transaction."""
        if self.type == "scan_without_item":
            return (self.type, None, self.scan_event_id)
        return ("item", self.track_id, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "transaction_id": self.transaction_id,
            "type": self.type,
            "subtype": self.subtype,
            "raised_s": round(self.raised_s, 3),
            "severity": self.severity,
            "value_minor": self.value_minor,
            "track_id": self.track_id,
            "seen_code": self.seen_code,
            "scanned_code": self.scanned_code,
            "scan_event_id": self.scan_event_id,
            "status": self.status,
            "resolution": self.resolution,
            "reason": self.reason,
            "closed_s": None if self.closed_s is None else round(self.closed_s, 3),
        }


@dataclass(frozen=True)
class AlertChange:
    """What the lane screen and the outbox hear about: an alert raised, resolved or withdrawn
    (a later scan or the final check showed it was not a loss)."""

    change: Literal["raised", "resolved", "withdrawn"]
    alert: Alert
