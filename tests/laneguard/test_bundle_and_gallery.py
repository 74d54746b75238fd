"""Bundle integrity checks and the gallery's nearest-neighbour identification."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from laneguard.bundle import (
    BundleError,
    HardwareProfile,
    Manifest,
    ModelFile,
    Thresholds,
    extract_bundle,
    write_bundle,
)
from laneguard.embedding import l2_normalise, letterbox_square, preprocess
from laneguard.gallery import Gallery, GalleryError


def _bundle(tmp_path: Path) -> Path:
    members = {}
    for name, content in (
        ("detector-320-fp32.onnx", b"det" * 100),
        ("embedder-fp32.onnx", b"emb" * 50),
        ("gallery.npz", b"gal"),
        ("class_map.json", b"{}"),
    ):
        path = tmp_path / "src" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        members[name] = path
    manifest = Manifest(
        version="t1",
        detector_classes=["product", "hand", "non_merchandise"],
        models=[
            ModelFile(
                file="detector-320-fp32.onnx", role="detector", precision="fp32", input_size=320
            ),
            ModelFile(file="embedder-fp32.onnx", role="embedder", precision="fp32", input_size=112),
        ],
        gallery="gallery.npz",
        class_map="class_map.json",
        thresholds=Thresholds(t1=0.8, t2=0.6, far_t1=0.01, far_t2=0.1),
        profiles=[
            HardwareProfile(
                name="x",
                description="x",
                detector="detector-320-fp32.onnx",
                embedder="embedder-fp32.onnx",
                detector_latency_budget_ms=20,
            )
        ],
        training_data={},
        metrics={},
    )
    return write_bundle(manifest, members, tmp_path / "b.tar.gz")


def _rewrite(
    bundle: Path, out: Path, change: dict[str, bytes | None], add: dict[str, bytes] | None = None
) -> Path:
    with tarfile.open(bundle, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name in change:
                if change[member.name] is None:
                    continue
                data = change[member.name]  # type: ignore[assignment]
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
        for name, data in (add or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


def test_good_bundle_extracts(tmp_path: Path) -> None:
    manifest = extract_bundle(_bundle(tmp_path), tmp_path / "out")
    assert (tmp_path / "out" / "gallery.npz").read_bytes() == b"gal"
    assert set(manifest.files) == {
        "detector-320-fp32.onnx",
        "embedder-fp32.onnx",
        "gallery.npz",
        "class_map.json",
    }


@pytest.mark.parametrize(
    ("change", "add", "message"),
    [
        ({"gallery.npz": b"evil"}, None, "gallery.npz does not match its sha256"),
        ({"embedder-fp32.onnx": None}, None, "members missing: ['embedder-fp32.onnx']"),
        ({}, {"../escape.sh": b"x"}, "unexpected member '../escape.sh'"),
        ({}, {"extra.onnx": b"x"}, "unexpected member 'extra.onnx'"),
        ({"manifest.json": None}, None, "no manifest.json"),
        ({"manifest.json": b"{not json"}, None, "invalid manifest"),
    ],
)
def test_tampered_bundles_are_refused_with_the_reason(
    tmp_path: Path, change: dict[str, bytes | None], add: dict[str, bytes] | None, message: str
) -> None:
    bad = _rewrite(_bundle(tmp_path), tmp_path / "bad.tar.gz", change, add)
    with pytest.raises(BundleError) as info:
        extract_bundle(bad, tmp_path / "out")
    assert message in str(info.value)


def test_truncated_bundle_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(data) - 40])
    with pytest.raises(BundleError, match=r"truncated or corrupt"):
        extract_bundle(bundle, tmp_path / "out")


def test_gallery_identifies_nearest_code_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = l2_normalise(rng.normal(size=(3, 16)))
    refs = {
        code: l2_normalise(centres[i] + 0.05 * rng.normal(size=(40, 16)))
        for i, code in enumerate(("a", "b", "c"))
    }
    gallery = Gallery.build(refs, "sha-x", max_per_code=4)
    assert len(gallery.vectors) == 12  # thinned to 4 centres per code
    queries = l2_normalise(centres + 0.05 * rng.normal(size=(3, 16)))
    assert [m[0].code for m in gallery.identify(queries)] == ["a", "b", "c"]
    assert gallery.identify(queries[:1])[0][0].score > 0.9
    loaded = Gallery.load(gallery.save(tmp_path / "g.npz"), expect_embedder_sha256="sha-x")
    assert loaded.codes == gallery.codes and np.allclose(loaded.vectors, gallery.vectors)
    with pytest.raises(GalleryError, match="built for embedder"):
        Gallery.load(tmp_path / "g.npz", expect_embedder_sha256="sha-y")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(GalleryError, match="not a LaneGuard gallery"):
        Gallery.load(tmp_path / "junk.npz")


def test_preprocess_keeps_aspect_and_normalises() -> None:
    crop = np.zeros((50, 100, 3), np.uint8)
    crop[:, :, 2] = 255  # red in BGR
    square = letterbox_square(crop, 112)
    assert square.shape == (112, 112, 3)
    assert (square[0, 0] == 114).all() and (square[56, 56] == (0, 0, 255)).all()
    batch = preprocess([crop], 112)
    assert batch.shape == (1, 3, 112, 112)
    assert batch[0, 0, 56, 56] == pytest.approx((1.0 - 0.5) / 0.25)  # R channel first
