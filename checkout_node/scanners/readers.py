"""Scan inputs: serial and keyboard-wedge scanners, and a camera imager read with pyzbar.

Each reader runs on its own thread and hands every code it reads, valid or not, to the lane as
a Scan (an invalid code is recorded and shown, never dropped). A reader whose device goes away
reopens it with backoff, like the lane camera.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from checkout_node.reconcile.model import Scan
from checkout_node.scanners.decode import KeystrokeDecoder, LineDecoder

log = logging.getLogger("laneguard.node.scanners")
OnScan = Callable[[Scan], None]
Clock = Callable[[], float]


@dataclass
class _Reader(ABC):
    device: str
    on_scan: OnScan
    clock: Clock
    source: str = "scanner"
    max_backoff_s: float = 30.0
    reads: int = 0
    connected: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"scan:{self.device}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _emit(self, code: str) -> None:
        self.reads += 1
        self.on_scan(Scan.of(code, self.clock(), source=self.source))

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._read_until_closed()
                backoff = 0.5
            except OSError as error:
                self.connected = False
                log.warning(
                    "scanner %s unavailable (%s); retrying in %.1f s", self.device, error, backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    @abstractmethod
    def _read_until_closed(self) -> None:
        """Open the device and emit codes until it closes or fails (OSError) or we stop."""


@dataclass
class SerialScanner(_Reader):
    """A serial or USB-CDC scanner sending one code per line (pyserial)."""

    baudrate: int = 9600

    def _read_until_closed(self) -> None:
        import serial

        try:
            port = serial.Serial(self.device, self.baudrate, timeout=0.2)
        except serial.SerialException as error:
            raise OSError(str(error)) from error
        decoder = LineDecoder()
        self.connected = True
        with port:
            while not self._stop.is_set():
                try:
                    data = port.read(256)
                except serial.SerialException as error:
                    raise OSError(str(error)) from error
                for code in decoder.feed(data):
                    self._emit(code)


@dataclass
class HidScanner(_Reader):
    """A keyboard-wedge scanner read from its Linux input device (evdev), grabbed so its
    keystrokes do not also type into whatever has focus on the lane computer."""

    def _read_until_closed(self) -> None:
        import select

        from evdev import InputDevice

        device = InputDevice(self.device)
        decoder = KeystrokeDecoder()
        self.connected = True
        try:
            device.grab()
            while not self._stop.is_set():
                ready, _, _ = select.select([device.fd], [], [], 0.2)
                if not ready:
                    continue
                for event in device.read():
                    code = decoder.feed(event.type, event.code, event.value)
                    if code is not None:
                        self._emit(code)
        finally:
            device.close()


def decode_barcodes(image: np.ndarray) -> list[str]:
    """Every barcode pyzbar finds in a BGR or grey image, as text."""
    import cv2
    from pyzbar import pyzbar

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return [r.data.decode("ascii", errors="replace") for r in pyzbar.decode(grey)]


@dataclass
class ImagerScanner(_Reader):
    """A camera over the scanner glass: each barcode it reads becomes a scan, once per pass
    (the same code is not reported again until it has been out of view for ``gone_s``)."""

    source: str = "imager"
    gone_s: float = 1.0
    every_s: float = 0.05
    _last_seen: dict[str, float] = field(default_factory=dict)

    def _read_until_closed(self) -> None:
        from checkout_node.sources import LiveSource

        camera = LiveSource(self.device).start()
        try:
            while not self._stop.is_set():
                frame = camera.read(timeout=1.0)
                self.connected = camera.connected
                if frame is None:
                    continue
                for code in self.new_codes(decode_barcodes(frame.image), time.monotonic()):
                    self._emit(code)
                self._stop.wait(self.every_s)
        finally:
            camera.stop()

    def new_codes(self, codes: list[str], now: float) -> list[str]:
        """The codes that start a new pass over the glass."""
        fresh = [
            c for c in dict.fromkeys(codes) if now - self._last_seen.get(c, -1e9) > self.gone_s
        ]
        for code in codes:
            self._last_seen[code] = now
        return fresh
