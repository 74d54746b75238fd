"""What the lane sends the store, encoded into its outbox: transactions with their samples,
alerts with their evidence, clips.

Kept apart from the lane's coordination so the wire format (checkout_node.messages) and the
outbox's kinds are in one place: a record enters the outbox whole or not at all, and a
transaction and its samples in one write, so a power cut never leaves a transaction without
the samples the store learns from.
"""

from __future__ import annotations

from typing import Protocol

from checkout_node.clips import Clip
from checkout_node.messages import (
    StreamClock,
    alert_message,
    clip_message,
    sample_messages,
    transaction_message,
)
from checkout_node.outbox import Outbox
from checkout_node.reconcile.model import Alert, SeenItem
from checkout_node.reconcile.reconciler import Outcome


class LaneRecords:
    """One lane's records into its outbox, stamped on its stream clock."""

    def __init__(self, lane_id: str, outbox: Outbox, clock: StreamClock) -> None:
        self.lane_id, self.outbox, self.clock = lane_id, outbox, clock

    def transaction(self, outcome: Outcome, started_s: float) -> None:
        """A finished transaction and the training samples its honest items give."""
        record = transaction_message(self.lane_id, outcome, started_s, self.clock)
        samples = sample_messages(self.lane_id, outcome, self.clock)
        queued = [("transaction", *_encoded(record))]
        queued += [("sample", *_encoded(sample)) for sample in samples]
        self.outbox.put_many(queued)

    def alert(self, alert: Alert, evidence: bytes | None, item: SeenItem | None) -> None:
        """An alert as it is now (raised, resolved, withdrawn); evidence when it is raised."""
        message = alert_message(self.lane_id, alert, self.clock, evidence, item)
        self.outbox.put("alert", *_encoded(message))

    def clip(self, clip: Clip) -> None:
        self.outbox.put("clip", *_encoded(clip_message(self.lane_id, clip, self.clock)))


class _Record(Protocol):
    @property
    def message_id(self) -> str: ...

    def model_dump_json(self) -> str: ...


def _encoded(message: _Record) -> tuple[str, bytes]:
    return message.message_id, message.model_dump_json().encode()
