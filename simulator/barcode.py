"""Barcode symbols for a product's real code: EAN-13, UPC-A, EAN-8 and ITF-14.

The simulator prints the product's actual GTIN on its packaging so that the lane's camera
imager (pyzbar) can be tested against the same code the scanner reads. Encoding follows the
GS1 General Specifications; module patterns are returned as arrays of 0/1 (1 = dark bar).
"""

from __future__ import annotations

import cv2
import numpy as np

from product_db.codes import GTIN

_L_CODES = (
    "0001101",
    "0011001",
    "0010011",
    "0111101",
    "0100011",
    "0110001",
    "0101111",
    "0111011",
    "0110111",
    "0001011",
)
_R_CODES = tuple("".join("1" if b == "0" else "0" for b in code) for code in _L_CODES)
_G_CODES = tuple(code[::-1] for code in _R_CODES)
_EAN13_PARITY = (
    "LLLLLL",
    "LLGLGG",
    "LLGGLG",
    "LLGGGL",
    "LGLLGG",
    "LGGLLG",
    "LGGGLL",
    "LGLGLG",
    "LGLGGL",
    "LGGLGL",
)
_ITF_PATTERNS = (
    "nnwwn",
    "wnnnw",
    "nwnnw",
    "wwnnn",
    "nnwnw",
    "wnwnn",
    "nwwnn",
    "nnnww",
    "wnnwn",
    "nwnwn",
)
_GUARD, _CENTRE = "101", "01010"
QUIET_MODULES = 11  # GS1 minimum quiet zone for EAN-13 (left); used on both sides


def ean13_modules(digits: str) -> np.ndarray:
    """95 modules for a 13-digit EAN-13 (a UPC-A is encoded as EAN-13 with a leading 0)."""
    if len(digits) != 13 or not digits.isdigit():
        raise ValueError(f"EAN-13 needs 13 digits, got {digits!r}")
    parity = _EAN13_PARITY[int(digits[0])]
    left = "".join(
        (_L_CODES if p == "L" else _G_CODES)[int(d)] for d, p in zip(digits[1:7], parity)
    )
    right = "".join(_R_CODES[int(d)] for d in digits[7:])
    return _bits(_GUARD + left + _CENTRE + right + _GUARD)


def ean8_modules(digits: str) -> np.ndarray:
    """67 modules for an 8-digit EAN-8."""
    if len(digits) != 8 or not digits.isdigit():
        raise ValueError(f"EAN-8 needs 8 digits, got {digits!r}")
    left = "".join(_L_CODES[int(d)] for d in digits[:4])
    right = "".join(_R_CODES[int(d)] for d in digits[4:])
    return _bits(_GUARD + left + _CENTRE + right + _GUARD)


def itf14_modules(digits: str, wide: int = 3) -> np.ndarray:
    """Interleaved 2 of 5 for a 14-digit GTIN-14 (the symbol on outer cases)."""
    if len(digits) != 14 or not digits.isdigit():
        raise ValueError(f"ITF-14 needs 14 digits, got {digits!r}")
    out = "1010"  # start: narrow bar, narrow space, narrow bar, narrow space
    for first, second in zip(digits[0::2], digits[1::2]):
        for bar, space in zip(_ITF_PATTERNS[int(first)], _ITF_PATTERNS[int(second)]):
            out += "1" * (wide if bar == "w" else 1) + "0" * (wide if space == "w" else 1)
    out += "1" * wide + "0" + "1"  # stop: wide bar, narrow space, narrow bar
    return _bits(out)


def _bits(pattern: str) -> np.ndarray:
    return np.frombuffer(pattern.encode("ascii"), dtype=np.uint8) - ord("0")


def modules_for(gtin: GTIN) -> tuple[np.ndarray, str]:
    """The module pattern and the human-readable text for a GTIN, in its natural symbology."""
    display = gtin.display
    if len(display) == 8:
        return ean8_modules(display), display
    if len(display) == 12:
        return ean13_modules("0" + display), display
    if len(display) == 13:
        return ean13_modules(display), display
    if gtin.gtin14.startswith("0"):
        return ean13_modules(gtin.gtin14[1:]), gtin.gtin14[1:]
    return itf14_modules(gtin.gtin14), gtin.gtin14


def render_barcode(gtin: GTIN, module_px: int = 2, bar_height: int = 60) -> np.ndarray:
    """A white label with the symbol, its quiet zones and the digits beneath (BGR uint8)."""
    modules, text = modules_for(gtin)
    quiet = QUIET_MODULES * module_px
    width = len(modules) * module_px + 2 * quiet
    text_h = max(12, int(bar_height * 0.28))
    label = np.full((bar_height + text_h + 2 * module_px * 2, width, 3), 255, np.uint8)
    bars = np.repeat(modules, module_px)
    top = module_px * 2
    label[top : top + bar_height, quiet : quiet + bars.size][:, bars == 1] = 0
    scale = text_h / 30.0
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(
        label,
        text,
        ((width - tw) // 2, top + bar_height + text_h - 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return label
