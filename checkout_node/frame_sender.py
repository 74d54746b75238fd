"""Kept detection frames on their way out: privacy filter, JPEG, outbox.

The filter (masks, then faces) runs on each frame alone before it is encoded, so nothing a
mask covers or any face the detector finds is ever in a stored byte. Filtering costs tens of
milliseconds a frame, so it runs on its own low-priority thread, as clips do: the frame loop
never waits for it. Its queue is bounded; a frame that finds it full is dropped and counted
(frames are the first thing the lane does without).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import cv2

from checkout_node.clips import lower_priority
from checkout_node.frame_keeper import KeptFrame
from checkout_node.messages import StreamClock, frame_message
from checkout_node.outbox import Outbox
from checkout_node.privacy import PrivacyFilter

log = logging.getLogger("laneguard.node.frames")

MASKED = 0.5  # a box this much under the privacy masks is blacked out whole, unlabelled
JPEG_QUALITY = 90  # training wants detail; a 640x480 frame is ~60-90 KB at this quality


@dataclass
class FrameSenderStats:
    queued: int = 0  # frames put in the outbox
    dropped: int = 0  # frames that found the queue full
    failed: int = 0  # frames that could not be filtered or encoded


class FrameSender:
    """Filters, encodes and queues kept frames for the store, on one worker thread."""

    def __init__(
        self,
        lane_id: str,
        outbox: Outbox,
        clock: StreamClock,
        privacy: PrivacyFilter,
        queue_size: int = 16,
    ) -> None:
        self.lane_id, self.outbox, self.clock, self.privacy = lane_id, outbox, clock, privacy
        self.stats = FrameSenderStats()
        self._jobs: queue.Queue[KeptFrame | None] = queue.Queue(queue_size)
        self._worker = threading.Thread(target=self._run, name="frames", daemon=True)
        self._worker.start()

    def __call__(self, frame: KeptFrame) -> None:
        try:
            self._jobs.put_nowait(frame)
        except queue.Full:
            self.stats.dropped += 1

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every frame handed over so far is in the outbox (or failed); False when
        ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._jobs.unfinished_tasks

    def close(self) -> None:
        self._jobs.put(None)
        self._worker.join(timeout=30)

    def _run(self) -> None:
        lower_priority()
        while True:
            frame = self._jobs.get()
            try:
                if frame is None:
                    return
                self._send(frame)
            except Exception:  # one bad frame must not stop the next
                self.stats.failed += 1
                log.exception(
                    "frame of transaction %s not sent", getattr(frame, "transaction_id", "?")
                )
            finally:
                self._jobs.task_done()

    def _send(self, frame: KeptFrame) -> None:
        (filtered,) = self.privacy.apply([frame.image], 1.0)
        # A box the masks mostly black out leaves blacked out whole and without its label: its
        # label would teach the detector an object on a black patch, and without the label its
        # visible rest would teach the object as background.
        masked = [
            b for b in frame.boxes if self.privacy.masked_share(b.box, filtered.shape) >= MASKED
        ]
        for box in masked:
            x1, y1, x2, y2 = (round(v) for v in box.box)
            filtered[max(0, y1) : y2, max(0, x1) : x2] = 0
        boxes = tuple(b for b in frame.boxes if b not in masked)
        ok, jpeg = cv2.imencode(".jpg", filtered, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("the frame could not be encoded as JPEG")
        height, width = filtered.shape[:2]
        message = frame_message(
            self.lane_id,
            frame.transaction_id,
            frame.reason,
            frame.t,
            self.clock,
            frame.model_version,
            jpeg.tobytes(),
            (width, height),
            boxes,
        )
        self.outbox.put("frame", message.message_id, message.model_dump_json().encode())
        self.stats.queued += 1
