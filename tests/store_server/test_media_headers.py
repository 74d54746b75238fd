"""Image and clip sides are read from their headers before anything decodes them: the JPEG
bomb (a small progressive file claiming 15,900x15,900 pixels) and a clip claiming a huge frame
are refused by their header, at the store's ingest over real HTTP as well as alone."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from laneguard.image_headers import ImageHeaderError, jpeg_size, webm_size
from store_server.app import create_app
from store_server.media import MAX_SIDE, EvidenceImageError, check_jpeg, check_webm
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrol, serve
from tests.helpers.messages import as_json, b64, jpeg, sample, webm


def _claiming(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a JPEG) with its frame header rewritten to claim ``width`` x ``height``."""
    at = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] == 0xC2)
    return data[: at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[at + 9 :]


def _progressive(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()


def test_jpeg_and_webm_sides_come_from_their_headers(tmp_path: Path) -> None:
    photo = np.random.default_rng(3).integers(0, 255, (123, 457, 3), dtype=np.uint8)
    assert jpeg_size(cv2.imencode(".jpg", photo)[1].tobytes()) == (457, 123)
    assert jpeg_size(_progressive(photo)) == (457, 123)
    assert webm_size(webm(tmp_path)) == (160, 120)
    for broken, reason in (
        (b"\xff\xd8\xff\xda\x00\x02", "no frame header"),
        (b"\xff\xd8\x00\x00\x00\x00", "no marker"),
        (b"\x89PNG\r\n\x1a\n", "not a JPEG"),
        (_claiming(_progressive(photo), 0, 123), "says 0x123"),
    ):
        with pytest.raises(ImageHeaderError, match=reason):
            jpeg_size(broken)
    with pytest.raises(ImageHeaderError):
        webm_size(webm(tmp_path)[:40])


def test_the_jpeg_bomb_is_refused_by_its_header_without_decoding() -> None:
    """A real progressive JPEG over the side limit, and a small one whose header claims
    15,900x15,900: both refused by the header; the process grows by no decoded image."""
    grey = np.full((MAX_SIDE + 8, 64, 3), 128, np.uint8)
    tall = _progressive(grey)
    bomb = _claiming(_progressive(np.full((64, 64, 3), 90, np.uint8)), 15_900, 15_900)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for data, claimed in ((tall, f"64x{MAX_SIDE + 8}"), (bomb, "15900x15900")):
        with pytest.raises(EvidenceImageError, match=f"{claimed} by its header"):
            check_jpeg(data)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown_kb < 100_000  # 15,900 squared RGB would be 758 MB
    check_jpeg(jpeg(1))  # an ordinary crop still passes


def test_a_clip_claiming_a_huge_frame_is_refused_by_its_header(tmp_path: Path) -> None:
    """The track's PixelWidth (one byte, 160) rewritten to two (9,000, 0x2328) and its Video
    element one byte longer; that byte comes from the track's 8-byte UID, so the track entry
    and every element above it keep their sizes."""
    clip = webm(tmp_path)
    uid = clip.index(bytes([0x73, 0xC5, 0x88]))
    clip = clip[: uid + 2] + bytes([0x87]) + clip[uid + 4 :]
    video = clip.index(bytes([0xE0, 0x86, 0xB0, 0x81, 160]))  # Video, 6 bytes: PixelWidth first
    clip = clip[:video] + bytes([0xE0, 0x87, 0xB0, 0x82, 0x23, 0x28]) + clip[video + 5 :]
    assert webm_size(clip) == (9000, 120)
    with pytest.raises(EvidenceImageError, match="9000x120 by its header"):
        check_webm(clip)
    check_webm(webm(tmp_path))


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    settings = StoreSettings(database_url=database_url, data_dir=tmp_path / "store")
    with serve(create_app(settings)) as url:
        yield url, enrol(url, database_url, "lane-1")


def test_the_store_refuses_the_bomb_in_a_batch_and_keeps_the_rest(
    store: tuple[str, str],
) -> None:
    url, credential = store
    bomb = _claiming(_progressive(np.full((64, 64, 3), 90, np.uint8)), 15_900, 15_900)
    bombs = []
    for n in range(2, 6):
        message = as_json(sample("lane-1", n, jpeg(n)))
        message["crop_jpeg_b64"] = b64(bomb)
        bombs.append(message)
    batch = [as_json(sample("lane-1", 1, jpeg(1))), *bombs]
    with httpx.Client(base_url=url, timeout=10) as client:
        reply = client.post(
            "/api/v1/ingest",
            json={"messages": batch},
            headers={"Authorization": f"Bearer {credential}"},
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["stored"], body["rejected"]) == (1, 4)
    errors = [r["error"] for r in body["results"] if r["status"] == "rejected"]
    assert all("15900x15900 by its header" in error for error in errors)
