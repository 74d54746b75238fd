"""The wire schema: every message that crosses between a lane and the outside world.

Both checkout_node and store_server import this module (and nothing of each other). Every
message carries ``schema_version`` so a store can run lanes of mixed software versions during a
rollout; a receiver rejects versions it does not know with a clear error.

So far: the lane's inputs from the till (scan and POS events), which the simulator's live feed
also sends. Later issues add transactions, alerts, samples and heartbeats here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1


class ScanMessage(WireModel):
    """A code read by a scanner, typed on the produce keypad, or read by the camera imager.

    ``code`` is exactly what the device produced, valid or not: an invalid code is recorded and
    shown, never dropped. ``t`` is seconds since the lane's stream started (the simulator) or
    the device's own clock; ``at`` is the wall-clock time when known.
    """

    type: Literal["scan"] = "scan"
    event_id: str = Field(min_length=1, max_length=64)
    t: float = Field(ge=0)
    code: str = Field(max_length=64)
    quantity: int = Field(default=1, ge=1, le=999)
    weight_g: int | None = Field(default=None, ge=0, le=100_000)
    source: Literal["scanner", "keypad", "imager", "pos"] = "scanner"


class PosMessage(WireModel):
    """Transaction boundaries and payment from the till."""

    type: Literal["transaction_start", "transaction_end", "payment", "void"]
    event_id: str = Field(min_length=1, max_length=64)
    t: float = Field(ge=0)
    transaction_id: str = Field(min_length=1, max_length=64)
    code: str | None = Field(default=None, max_length=64, description="voided code")


LaneInput = Annotated[ScanMessage | PosMessage, Field(discriminator="type")]
