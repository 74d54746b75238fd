"""Turning raw scanner output into codes.

Scanners in the field speak in one of three ways: a serial line (CR and/or LF after each code),
keystrokes of a USB keyboard-wedge (digits then Enter), or an image a camera imager reads. The
parts here are pure: bytes or key codes in, codes out, so each input's reader stays small.
"""

from __future__ import annotations

from collections.abc import Iterator

from evdev import ecodes

MAX_CODE = 64  # longer runs without a terminator are line noise, not a code


class LineDecoder:
    """Bytes from a serial scanner -> codes, one per CR, LF or CRLF-terminated line."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._flooded = False  # a line too long to be a code: skipped up to its end

    def feed(self, data: bytes) -> Iterator[str]:
        for byte in data:
            if byte in (0x0D, 0x0A):
                if self._buffer and not self._flooded:
                    yield self._buffer.decode("ascii", errors="replace").strip()
                self._buffer.clear()
                self._flooded = False
            elif len(self._buffer) < MAX_CODE:
                self._buffer.append(byte)
            else:
                self._flooded = True


_KEY_CHARS = {getattr(ecodes, f"KEY_{d}"): d for d in "0123456789"}
_KEY_CHARS.update({getattr(ecodes, f"KEY_KP{d}"): d for d in "0123456789"})
_KEY_CHARS.update({getattr(ecodes, f"KEY_{c}"): c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"})
_KEY_CHARS.update({ecodes.KEY_MINUS: "-", ecodes.KEY_DOT: ".", ecodes.KEY_SPACE: " "})
_ENTER = {ecodes.KEY_ENTER, ecodes.KEY_KPENTER}
KEY_DOWN = 1


class KeystrokeDecoder:
    """Linux input events of a keyboard-wedge scanner -> codes (digits and letters, then Enter).

    Only key-down events count (``value`` 1; 0 is up, 2 auto-repeat); shift is ignored since
    product codes are digits.
    """

    def __init__(self) -> None:
        self._chars: list[str] = []

    def feed(self, event_type: int, code: int, value: int) -> str | None:
        if event_type != ecodes.EV_KEY or value != KEY_DOWN:
            return None
        if code in _ENTER:
            text = "".join(self._chars)
            self._chars.clear()
            return text or None
        char = _KEY_CHARS.get(code)
        if char is not None and len(self._chars) < MAX_CODE:
            self._chars.append(char)
        return None
