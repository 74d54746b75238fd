"""LaneGuard's shared pieces: the `laneguard` command and the lane <-> server wire schema."""

from product_db.errors import LaneGuardError

__all__ = ["LaneGuardError"]
