"""LaneGuard's shared pieces: the `laneguard` command and the lane <-> server wire schema."""
