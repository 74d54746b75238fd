"""The pictures the lane screen shows for its recent alerts: the item's crop and the clip.

They live in the lane's memory only as long as the screen may ask for them (the store keeps its
own copies, sent through the outbox): the newest ``MAX_CROPS`` crops and ``MAX_CLIPS`` clips, so
a lane that runs for months holds a bounded amount. Callers hold the lane's lock.
"""

from __future__ import annotations

MAX_CROPS = 200  # crops kept for the screen's recent alerts
MAX_CLIPS = 20  # clips kept for the screen's replay (a few hundred KB each)


class EvidenceCache:
    """Alert id -> crop JPEG and alert id -> WebM clip, newest kept."""

    def __init__(self, max_crops: int = MAX_CROPS, max_clips: int = MAX_CLIPS) -> None:
        self._crops: dict[str, bytes] = {}
        self._clips: dict[str, bytes] = {}
        self.max_crops, self.max_clips = max_crops, max_clips

    def keep_crop(self, alert_id: str, jpeg: bytes) -> None:
        """The crop of the item an alert is about. Trimmed when a transaction starts
        (:meth:`trim_crops`), so an open transaction's crops are never dropped under it."""
        self._crops[alert_id] = jpeg

    def trim_crops(self) -> None:
        for stale in list(self._crops)[: -self.max_crops]:
            del self._crops[stale]

    def keep_clip(self, alert_id: str, webm: bytes) -> None:
        self._clips[alert_id] = webm
        for stale in list(self._clips)[: -self.max_clips]:
            del self._clips[stale]

    def drop_crop(self, key: str) -> None:
        self._crops.pop(key, None)

    def crop(self, alert_id: str) -> bytes | None:
        return self._crops.get(alert_id)

    def clip(self, alert_id: str) -> bytes | None:
        return self._clips.get(alert_id)
