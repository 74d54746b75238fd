"""An image's or clip's pixel size read from its header, before anything decodes it.

A decoder allocates for the size a file claims: a 1.5 MB progressive JPEG can claim
15,900x15,900 pixels and cost a quarter of a gigabyte and over a second before a check of the
decoded array could refuse it. Whoever accepts an image from elsewhere reads its sides here
first and decodes only what is small enough.
"""

from __future__ import annotations

from product_db.errors import LaneGuardError

# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic):
# every C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field

# EBML (Matroska/WebM) element ids, as written (length marker included).
_SEGMENT, _TRACKS, _TRACK_ENTRY, _VIDEO = 0x18538067, 0x1654AE6B, 0xAE, 0xE0
_PIXEL_WIDTH, _PIXEL_HEIGHT = 0xB0, 0xBA
_CLUSTER = 0x1F43B675  # frames start here: the video's size must be known by then


class ImageHeaderError(LaneGuardError, ValueError):
    """A header that does not say the image's size, or says it wrongly."""


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, walking its marker segments only."""
    if not data.startswith(b"\xff\xd8"):
        raise ImageHeaderError("not a JPEG: it does not start with FF D8")
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise ImageHeaderError(f"JPEG header broken at byte {at}: no marker there")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header came first
            break
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if length < 2:
            raise ImageHeaderError(f"JPEG segment at byte {at} has length {length}")
        if marker in _JPEG_FRAME_MARKERS:
            if length < 7 or at + 9 > len(data):
                raise ImageHeaderError("JPEG frame header is cut short")
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            if width == 0 or height == 0:  # a height given later (DNL) is not accepted
                raise ImageHeaderError(f"JPEG frame header says {width}x{height}")
            return width, height
        at += 2 + length
    raise ImageHeaderError("JPEG has no frame header before its image data")


def webm_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a WebM's video track, from its Tracks element before any frame."""
    size = _ebml_video_size(data, 0, len(data))
    if size is None:
        raise ImageHeaderError("WebM names no video size before its first frames")
    return size


def _ebml_video_size(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    at, width, height = start, 0, 0
    while at < end:
        element, at = _element_id(data, at)
        length, at = _element_size(data, at)
        body_end = end if length is None else at + length
        if body_end > end and element not in (_SEGMENT, _CLUSTER):
            raise ImageHeaderError(f"WebM element {element:#x} runs past its parent")
        if element == _CLUSTER:
            return None
        if element in (_SEGMENT, _TRACKS, _TRACK_ENTRY, _VIDEO):
            found = _ebml_video_size(data, at, min(body_end, end))
            if found is not None:
                return found
        elif element in (_PIXEL_WIDTH, _PIXEL_HEIGHT):
            value = int.from_bytes(data[at:body_end], "big")
            width, height = (value, height) if element == _PIXEL_WIDTH else (width, value)
            if width and height:
                return width, height
        at = body_end
    return None


def _vint(data: bytes, at: int) -> tuple[int, int, int]:
    """The EBML variable-length integer at ``at``: (raw bytes as a number, its width in bytes,
    where the next field starts)."""
    if at >= len(data):
        raise ImageHeaderError("WebM header is cut short")
    first = data[at]
    width = 9 - first.bit_length()
    if first == 0 or at + width > len(data):
        raise ImageHeaderError(f"WebM header broken at byte {at}")
    return int.from_bytes(data[at : at + width], "big"), width, at + width


def _element_id(data: bytes, at: int) -> tuple[int, int]:
    raw, _, after = _vint(data, at)
    return raw, after  # ids are written with their length marker


def _element_size(data: bytes, at: int) -> tuple[int | None, int]:
    """A size without its length marker; all ones (unknown, as live-written files have) is
    None."""
    raw, width, after = _vint(data, at)
    value = raw & ((1 << (7 * width)) - 1)
    return (None if value == (1 << (7 * width)) - 1 else value), after
