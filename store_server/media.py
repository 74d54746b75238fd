"""Evidence and sample images, and alert clips, on disk, named by their content.

A lane sends bytes, never names or paths: the server checks that the bytes are a JPEG whose
header's sides are within bounds and that then decodes (or a WebM video the same way), and
stores them as ``<sha256>.jpg`` / ``<sha256>.webm`` under the media folder, so nothing a client
sends can choose where a file goes, and the same crop sent twice is stored once (which is why
deleting one needs to know nothing else uses it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from sqlmodel import Session, col, select

from laneguard.files import private_dir
from laneguard.image_headers import ImageHeaderError, jpeg_size, webm_size
from product_db.errors import LaneGuardError
from store_server.models import (
    AlertClip,
    AlertRecord,
    DetectionFrame,
    ProductPicture,
    SampleRecord,
)

JPEG_MAGIC = b"\xff\xd8\xff"
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"  # EBML, the container WebM is
MAX_IMAGE_BYTES = 1_500_000
MAX_CLIP_BYTES = 3_000_000
MAX_SIDE = 4096
NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|webm)$")
MEDIA_TYPES = {"jpg": "image/jpeg", "webm": "video/webm"}


class EvidenceImageError(LaneGuardError, ValueError):
    """Bytes that are not an acceptable JPEG image."""


def decode_b64(text: str, what: str) -> bytes:
    """``text`` as bytes; refused, naming ``what``, unless it is strict base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise EvidenceImageError(f"{what} is not valid base64: {error}") from error


def b64_size(text: str) -> int:
    """The byte length of valid base64 ``text`` (checked before), without decoding it."""
    return len(text) * 3 // 4 - text[-2:].count("=")


def decode_jpeg_b64(text: str) -> bytes:
    data = decode_b64(text, "image")
    check_jpeg(data)
    return data


def check_jpeg(data: bytes) -> None:
    if len(data) > MAX_IMAGE_BYTES:
        raise EvidenceImageError(f"image is {len(data)} bytes; at most {MAX_IMAGE_BYTES}")
    if not data.startswith(JPEG_MAGIC):
        raise EvidenceImageError("image is not a JPEG (its first bytes are not FF D8 FF)")
    _check_sides("image", data, jpeg_size)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise EvidenceImageError("image does not decode as a JPEG")
    if max(image.shape[:2]) > MAX_SIDE:
        raise EvidenceImageError(
            f"image is {image.shape[1]}x{image.shape[0]}; at most {MAX_SIDE} a side"
        )


def _check_sides(what: str, data: bytes, size_of: Callable[[bytes], tuple[int, int]]) -> None:
    """The sides the header claims, before a decoder allocates for them."""
    try:
        width, height = size_of(data)
    except ImageHeaderError as error:
        raise EvidenceImageError(f"{what}: {error}") from None
    if max(width, height) > MAX_SIDE:
        raise EvidenceImageError(
            f"{what} is {width}x{height} by its header; at most {MAX_SIDE} a side"
        )


def decode_webm_b64(text: str) -> bytes:
    data = decode_b64(text, "clip")
    check_webm(data)
    return data


def check_webm(data: bytes) -> None:
    """A WebM video of at most MAX_CLIP_BYTES whose first frame decodes (OpenCV reads videos
    from files only: a private temporary one)."""
    if len(data) > MAX_CLIP_BYTES:
        raise EvidenceImageError(f"clip is {len(data)} bytes; at most {MAX_CLIP_BYTES}")
    if not data.startswith(WEBM_MAGIC):
        raise EvidenceImageError("clip is not a WebM video (its first bytes are not 1A 45 DF A3)")
    _check_sides("clip", data, webm_size)
    with tempfile.NamedTemporaryFile(suffix=".webm") as handle:
        handle.write(data)
        handle.flush()
        capture = cv2.VideoCapture(handle.name)
        try:
            ok, frame = capture.read()
        finally:
            capture.release()
    if not ok or frame is None:
        raise EvidenceImageError("clip does not decode as a video")
    if max(frame.shape[:2]) > MAX_SIDE:
        raise EvidenceImageError(f"clip is {frame.shape[1]}x{frame.shape[0]}; too large")


def media_type(name: str) -> str:
    return MEDIA_TYPES[name.rsplit(".", 1)[-1]]


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = private_dir(Path(root))

    def save(self, data: bytes, suffix: str = ".jpg") -> str:
        """Store checked bytes (a JPEG, or with ``suffix`` ".webm" a clip); returns the media
        name."""
        name = hashlib.sha256(data).hexdigest() + suffix
        path = self.root / name[:2] / name
        if not path.exists():
            if not path.parent.is_dir():
                private_dir(path.parent)
            partial = path.with_suffix(f".{os.getpid()}.part")
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(partial, path)
        return name

    def delete(self, name: str) -> bool:
        """Remove a stored file (retention); False when it was not there."""
        path = self.path(name)
        if not path.is_file():
            return False
        path.unlink()
        return True

    def path(self, name: str) -> Path:
        """The file of a stored name; names are validated, so no path can escape the folder."""
        if not NAME.match(name):
            raise EvidenceImageError(f"{name!r} is not a media name")
        return self.root / name[:2] / name


def media_in_use(session: Session, names: list[str]) -> set[str]:
    """Those of ``names`` some row still names (media files are named by their content, so
    one file may be a crop, an alert's evidence, a product's picture and a frame at once)."""
    used: set[str] = set()
    for column in (
        col(SampleRecord.image),
        col(AlertRecord.evidence),
        col(AlertClip.media),
        col(ProductPicture.image),
        col(DetectionFrame.image),
    ):
        used |= {n for n in session.exec(select(column).where(column.in_(names))) if n}
    return used
