"""Alert clips: a few seconds of video around each alert, made without slowing the frame loop.

    frame loop ──► every 1/fps s: resize, JPEG ──► FrameRing (bytes-capped, history-capped)
    alert raised ──► pending window [event - before_s, event + after_s]
    a frame past the window's end ──► worker thread: decode, privacy filter, track box, WebM
                                       ──► on_clip (the lane: outbox, lane screen)

The ring holds small JPEGs rather than raw frames, so the 30 s it needs to reach back to an item
an alert at the final check names fit in a few MB, and its cap is in bytes: memory never grows
with what the camera sees. The frame loop only resizes and encodes one small JPEG at the clip
rate; everything else happens on the worker, at a lower CPU priority, whose queue is bounded:
when it is behind, a clip is dropped and counted, and the frame loop never waits. Nothing leaves
here unfiltered: the privacy filter runs on every frame before it is encoded into a clip.

WebM/VP8 because OpenCV's wheel encodes it and every browser plays it; the wheel has no H.264
encoder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from checkout_node.privacy import PrivacyFilter
from laneguard.files import private_dir
from product_db.errors import LaneGuardError

log = logging.getLogger("laneguard.node.clips")

BoxF = tuple[float, float, float, float]
MAX_PENDING = 32  # alerts waiting for their after-window; beyond it the oldest is made now
WORKER_QUEUE = 8  # clips waiting to be encoded; beyond it a clip is dropped (and counted)
TRACK_COLOUR = (0, 215, 255)  # BGR amber: the alert's item


class ClipError(LaneGuardError, RuntimeError):
    """A clip this computer cannot encode (its OpenCV has no WebM/VP8 writer)."""


@dataclass(frozen=True, slots=True)
class RingFrame:
    t: float
    jpeg: bytes
    boxes: dict[int, BoxF]  # track id -> box in camera pixels


class FrameRing:
    """Recent frames as JPEGs, at most ``cap_bytes`` of them and ``history_s`` back."""

    def __init__(self, cap_bytes: int, history_s: float) -> None:
        self.cap_bytes, self.history_s = cap_bytes, history_s
        self._frames: deque[RingFrame] = deque()
        self.bytes = 0
        self._lock = threading.Lock()

    def add(self, frame: RingFrame) -> None:
        with self._lock:
            self._frames.append(frame)
            self.bytes += len(frame.jpeg)
            oldest_kept = frame.t - self.history_s
            while self._frames and (self.bytes > self.cap_bytes or self._frames[0].t < oldest_kept):
                self.bytes -= len(self._frames.popleft().jpeg)

    def between(self, start_s: float, end_s: float) -> list[RingFrame]:
        with self._lock:
            return [f for f in self._frames if start_s <= f.t <= end_s]

    @property
    def newest_s(self) -> float | None:
        with self._lock:
            return self._frames[-1].t if self._frames else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


@dataclass(frozen=True)
class Clip:
    alert_id: str
    transaction_id: str
    data: bytes  # WebM (VP8)
    started_s: float  # stream clock
    duration_s: float
    fps: float
    width: int
    height: int
    frames: int


@dataclass
class _Pending:
    alert_id: str
    transaction_id: str
    track_id: int | None
    start_s: float
    end_s: float


@dataclass
class ClipStats:
    made: int = 0
    dropped: int = 0  # the worker was behind, or the window held no frames
    failed: int = 0
    encode_seconds: float = 0.0


@dataclass
class ClipRecorder:
    """The ring, the alerts waiting for their clip, and the worker that encodes them."""

    work_dir: Path  # a private folder for the encoder's temporary files
    privacy: PrivacyFilter
    fps: float = 8.0
    width: int = 320
    before_s: float = 3.0
    after_s: float = 1.5
    buffer_bytes: int = 8 << 20
    history_s: float = 30.0
    jpeg_quality: int = 80
    on_clip: Callable[[Clip], None] = field(default=lambda _clip: None)

    def __post_init__(self) -> None:
        self.work_dir = private_dir(Path(self.work_dir))
        self.ring = FrameRing(self.buffer_bytes, self.history_s)
        self.stats = ClipStats()
        self._pending: list[_Pending] = []
        self._last_kept_s: float | None = None
        self._scale: float = 1.0
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[_Pending, list[RingFrame], float] | None] = queue.Queue(
            WORKER_QUEUE
        )
        self._idle = threading.Condition()
        self._busy = 0
        self._worker = threading.Thread(target=self._run, name="clips", daemon=True)
        self._worker.start()

    # -- the frame loop's side: cheap ---------------------------------------------------------
    def add_frame(
        self, image: np.ndarray, t: float, boxes: Iterable[tuple[int, np.ndarray]]
    ) -> None:
        """Keep this frame if the clip rate is due for one; hand over the clips now complete.
        ``boxes``: the tracked products' boxes (x1, y1, x2, y2) in camera pixels."""
        if self._last_kept_s is None or t - self._last_kept_s >= 0.999 / self.fps:
            self._last_kept_s = t
            self._scale = min(1.0, self.width / image.shape[1])
            small = _resized(image, self._scale)
            ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if ok:
                kept = {track: _box(box) for track, box in boxes}
                self.ring.add(RingFrame(t, jpeg.tobytes(), kept))
        self._hand_over(lambda p: p.end_s <= t)

    def alert(
        self, alert_id: str, transaction_id: str, track_id: int | None, event_s: float
    ) -> None:
        """An alert was raised about what happened at ``event_s`` (an item's crossing, a scan):
        its clip runs from ``before_s`` before that to ``after_s`` after."""
        pending = _Pending(
            alert_id, transaction_id, track_id, event_s - self.before_s, event_s + self.after_s
        )
        with self._lock:
            if any(p.alert_id == alert_id for p in self._pending):
                return
            self._pending.append(pending)
            overflow = self._pending[:-MAX_PENDING]
        newest = self.ring.newest_s
        self._hand_over(lambda p: p in overflow or (newest is not None and p.end_s <= newest))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Make every waiting clip now with the frames there are, and wait for the worker (a
        replay's end, the lane stopping)."""
        self._hand_over(lambda _p: True, block=True)
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._busy and time.monotonic() < deadline:
                self._idle.wait(0.05)

    def close(self) -> None:
        self.flush()
        self._jobs.put(None)
        self._worker.join(timeout=10)

    def _hand_over(self, ready: Callable[[_Pending], bool], block: bool = False) -> None:
        with self._lock:
            if not self._pending:
                return
            due = [p for p in self._pending if ready(p)]
            self._pending = [p for p in self._pending if p not in due]
        for pending in due:
            frames = self.ring.between(pending.start_s, pending.end_s)
            if not frames:
                self.stats.dropped += 1
                log.warning("no frames for the clip of alert %s", pending.alert_id)
                continue
            with self._idle:
                self._busy += 1
            try:
                self._jobs.put((pending, frames, self._scale), block=block, timeout=30)
            except queue.Full:
                self._done()
                self.stats.dropped += 1
                log.warning("clip encoder behind: no clip for alert %s", pending.alert_id)

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    # -- the worker's side ----------------------------------------------------------------------
    def _run(self) -> None:
        lower_priority()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            pending, frames, scale = job
            started = time.perf_counter()
            try:
                clip = self._encode(pending, frames, scale)
                self.stats.made += 1
                self.on_clip(clip)
            except Exception:  # one bad clip must not stop the next alert's
                self.stats.failed += 1
                log.exception("making the clip of alert %s failed", pending.alert_id)
            finally:
                self.stats.encode_seconds += time.perf_counter() - started
                self._done()

    def _encode(self, pending: _Pending, frames: list[RingFrame], scale: float) -> Clip:
        images = [_decoded(frame.jpeg) for frame in frames]
        images = self.privacy.apply(images, scale)
        if pending.track_id is not None:
            for image, frame in zip(images, frames):
                box = frame.boxes.get(pending.track_id)
                if box is not None:
                    _draw_box(image, box, scale)
        height, width = images[0].shape[:2]
        data = encode_webm(images, self.fps, self.work_dir)
        return Clip(
            alert_id=pending.alert_id,
            transaction_id=pending.transaction_id,
            data=data,
            started_s=frames[0].t,
            duration_s=max(len(frames) / self.fps, frames[-1].t - frames[0].t),
            fps=self.fps,
            width=width,
            height=height,
            frames=len(frames),
        )


def lower_priority() -> None:
    """A worker thread (the clip or the frame encoder) yields to the frame loop: nice 10 on
    Linux (a thread is a task there), so it takes the cycles the frame loop leaves; elsewhere it
    runs as is."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        log.debug("%s runs at normal priority", threading.current_thread().name)


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_ffmpeg_tag_warning() -> Iterator[None]:
    """OpenCV's FFmpeg writer prints "tag 'VP80' is not supported with ... 'webm'" straight
    to the process's stderr on every clip (WebM keeps no codec tags, so every fourcc fails
    its check; it then writes VP8 correctly). No setting silences that print, so the
    writer's few milliseconds of opening run with file descriptor 2 on /dev/null."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def encode_webm(images: list[np.ndarray], fps: float, work_dir: Path) -> bytes:
    """VP8 in WebM through OpenCV's FFmpeg, via a private temporary file (its only API)."""
    height, width = images[0].shape[:2]
    descriptor, name = tempfile.mkstemp(suffix=".webm", dir=work_dir)
    os.close(descriptor)
    path = Path(name)
    try:
        with _without_ffmpeg_tag_warning():
            writer = cv2.VideoWriter(
                str(path), cv2.VideoWriter.fourcc(*"VP80"), fps, (width, height)
            )
        if not writer.isOpened():
            raise ClipError("OpenCV cannot write WebM/VP8 here (no FFmpeg VP8 encoder)")
        for image in images:
            writer.write(image)
        writer.release()
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return image
    height, width = image.shape[:2]
    # Even sides: VP8 encodes 4:2:0 colour.
    size = (max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _box(box: np.ndarray) -> BoxF:
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


def _decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("a ring frame does not decode")
    return image


def _draw_box(image: np.ndarray, box: BoxF, scale: float) -> None:
    x1, y1, x2, y2 = (round(v * scale) for v in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), TRACK_COLOUR, 2)
