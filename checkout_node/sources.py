"""Frame sources: cameras (USB, CSI, RTSP, HTTP/MJPEG such as the simulator's feed) and files.

A live source never builds a backlog: a reader thread keeps only the newest frame, the lane
processes whatever is newest when it is ready, and frames it never saw are counted as dropped.
When a camera drops, the reader reconnects with exponential backoff and the lane's health shows
the camera as down meanwhile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("laneguard.node.source")


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray
    t: float  # seconds since the source started
    index: int  # frames the source has produced, including dropped ones


def open_capture(uri: str | int) -> cv2.VideoCapture:
    """A device index ("0"), a V4L2 path, an RTSP/HTTP URL, a GStreamer pipeline or a file."""
    if isinstance(uri, str) and uri.isdigit():
        uri = int(uri)
    if isinstance(uri, str) and "!" in uri:  # CSI cameras on Jetson/Pi come as GStreamer pipelines
        return cv2.VideoCapture(uri, cv2.CAP_GSTREAMER)
    return cv2.VideoCapture(uri)


def video_frames(path: str | Path, read_ahead: int = 4) -> Iterator[Frame]:
    """Every frame of a recorded video, in order, timed by the file's frame rate (replay).

    A reader thread decodes up to ``read_ahead`` frames ahead (OpenCV releases the GIL while
    decoding), so decoding overlaps the lane's work as a live camera's reader thread does;
    unlike a live source, replay never drops a frame.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"{path}: cannot open as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=max(1, read_ahead))
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                ok, image = capture.read()
                frames.put(image if ok else None)
                if not ok:
                    return
        finally:
            capture.release()

    reader = threading.Thread(target=read, name="video-reader", daemon=True)
    reader.start()
    index = 0
    try:
        while (image := frames.get()) is not None:
            yield Frame(image, index / fps, index)
            index += 1
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                frames.get_nowait()
            except queue.Empty:
                reader.join(timeout=0.05)


class LiveSource:
    """Newest-frame-only reader with reconnect and backoff; ``frames()`` yields as they come."""

    def __init__(self, uri: str | int, max_backoff_s: float = 30.0) -> None:
        self.uri = uri
        self.max_backoff_s = max_backoff_s
        self.produced = 0
        self.consumed = 0  # index of the next frame the lane has not seen
        self.dropped = 0  # frames the camera produced that the lane never processed
        self.reconnects = 0
        self.connected = False
        self._latest: Frame | None = None
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="camera-reader")

    def start(self) -> LiveSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            capture = open_capture(self.uri)
            if not capture.isOpened():
                self.connected = False
                log.warning("camera %s unavailable; retrying in %.1f s", self.uri, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                self.reconnects += 1
                continue
            self.connected, backoff = True, 0.5
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok:
                    log.warning("camera %s stopped delivering frames; reconnecting", self.uri)
                    break
                frame = Frame(image, time.monotonic() - self._start, self.produced)
                with self._condition:
                    self._latest = frame
                    self.produced += 1
                    self._condition.notify_all()
            capture.release()
            self.connected = False
            if not self._stop.is_set():
                self.reconnects += 1
                self._stop.wait(backoff)

    def read(self, timeout: float = 5.0) -> Frame | None:
        """The newest frame not yet returned, waiting up to ``timeout``; None if none came."""
        with self._condition:
            self._condition.wait_for(
                lambda: (
                    self._stop.is_set()
                    or (self._latest is not None and self._latest.index >= self.consumed)
                ),
                timeout=timeout,
            )
            frame = self._latest
            if frame is None or frame.index < self.consumed:
                return None
            self.dropped += frame.index - self.consumed
            self.consumed = frame.index + 1
            return frame

    def frames(self) -> Iterator[Frame]:
        while not self._stop.is_set():
            frame = self.read()
            if frame is not None:
                yield frame
