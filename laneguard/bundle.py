"""Model bundles: one archive with everything a lane needs to recognise products.

    manifest.json        version, parent, training data, metrics, thresholds, hardware
                         profiles, and the sha256 of every other member (first in the archive)
    signature.json       when signed (laneguard.signing): right after the manifest
    detector-*.onnx      detector variants (input size, precision)
    embedder-*.onnx      embedder (fp32 and int8)
    gallery.npz          reference vectors per product code, for that embedder
    class_map.json       product codes and names the gallery knows
    golden-frames.npz    lane frames with known items, for the lane's smoke test

Reading verifies every member's hash and refuses anything the manifest does not list (or a
path that would escape the target folder). laneguard.signing adds and checks the signature.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from product_db.errors import LaneGuardError

# The bundle LaneGuard ships (made by `laneguard train bootstrap`; recipe and history in
# checkout_node/models/README.md). It is package data of checkout_node, installed beside this
# package, and both the lane and the store server start from it, so its one name lives here in
# the ground both stand on. BUNDLE_CACHE is where verified bundles are extracted.
SHIPPED_BUNDLE = (
    Path(__file__).resolve().parent.parent / "checkout_node" / "models" / "bootstrap.tar.gz"
)
# The store server's teacher (T3): a larger embedder for "of interest" crops; no lane runs it.
SHIPPED_TEACHER = SHIPPED_BUNDLE.with_name("teacher.tar.gz")
BUNDLE_CACHE = Path.home() / ".cache" / "laneguard" / "bundles"
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"  # added by laneguard.signing; covers the manifest's bytes
BUNDLE_FORMAT = 1
GOLDEN_FRAMES = "golden-frames.npz"
# Caps checked on each member's tar header before a byte of it is read: an archive can promise
# gigabytes of zeros in a few megabytes. A bundle is a few tens of MB in all.
MAX_MANIFEST_BYTES = 1 << 20
MAX_MEMBER_BYTES = 256 << 20
MAX_BUNDLE_BYTES = 1 << 30


class BundleError(LaneGuardError, ValueError):
    """A bundle that cannot be used; the message says why (corrupt, tampered, truncated...)."""


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    role: Literal["detector", "embedder", "verifier"]
    precision: Literal["fp32", "int8"]
    input_size: int
    latency_ms: float | None = Field(default=None, description="median, build machine")
    metrics: dict[str, Any] = Field(default_factory=dict)


class HardwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    detector: str  # file name
    embedder: str
    detector_latency_budget_ms: float
    threads: int = Field(default=2, ge=1, description="onnxruntime intra-op threads")


class Thresholds(BaseModel):
    """Cosine-similarity bands: >= t1 trusted identity; t2..t1 counted, "of interest"."""

    model_config = ConfigDict(extra="forbid")

    t1: float
    t2: float
    far_t1: float
    far_t2: float


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    version: str
    release: int = Field(default=0, ge=0, description="monotonic; anti-rollback compares it")
    parent_version: str | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    detector_classes: list[str]
    models: list[ModelFile]
    gallery: str
    class_map: str
    golden_frames: str | None = Field(
        default=None, description="member holding the smoke test's frames and their boxes"
    )
    thresholds: Thresholds
    profiles: list[HardwareProfile]
    training_data: dict[str, Any]
    metrics: dict[str, Any]
    files: dict[str, str] = Field(default_factory=dict, description="member -> sha256")

    def model(self, file: str) -> ModelFile:
        for entry in self.models:
            if entry.file == file:
                return entry
        raise BundleError(f"manifest lists no model {file!r}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_class_map(path: Path, codes: list[str], names: dict[str, str]) -> Path:
    """The bundle's class map: the gallery's codes and a display name for each (the code when
    no name is known)."""
    body = {"codes": codes, "names": {code: names.get(code, code) for code in codes}}
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False), "utf-8")
    return path


def write_bundle(manifest: Manifest, members: dict[str, Path], out: Path) -> Path:
    """Write ``out`` (.tar.gz) with the members and the manifest (hashes filled in)."""
    referenced = {m.file for m in manifest.models} | {manifest.gallery, manifest.class_map}
    if manifest.golden_frames is not None:
        referenced.add(manifest.golden_frames)
    missing = referenced - set(members)
    if missing:
        raise BundleError(f"manifest refers to files not given: {sorted(missing)}")
    files = {name: sha256_file(path) for name, path in sorted(members.items())}
    final = manifest.model_copy(update={"files": files})
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest_bytes = final.model_dump_json(indent=2).encode()
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(manifest_bytes), 0, 0o644
        tar.addfile(info, io.BytesIO(manifest_bytes))
        for name, path in sorted(members.items()):
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return out


def small_members(
    bundle: Path, names: set[str], cap: int = MAX_MANIFEST_BYTES, first: int | None = None
) -> dict[str, bytes]:
    """The members called ``names`` (manifest, signature: small ones), read in archive order
    and stopping once all are found (or after the ``first`` members), so nothing else in the
    archive is decompressed or held."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(bundle, "r|gz") as tar:
            for position, info in enumerate(tar):
                if info.name in names and info.name not in found:
                    if not info.isfile() or info.size > cap:
                        raise BundleError(
                            f"{bundle}: {info.name} is not a file of at most {cap} bytes"
                        )
                    handle = tar.extractfile(info)
                    assert handle is not None
                    found[info.name] = handle.read()
                if len(found) == len(names) or (first is not None and position + 1 >= first):
                    break  # before the iterator decompresses its way past the next member
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(
            f"{bundle}: not a readable bundle, truncated or corrupt ({exc})"
        ) from None
    return found


def read_manifest(bundle: Path) -> Manifest:
    """The manifest alone (no extraction, no hash checks)."""
    member = small_members(bundle, {MANIFEST}).get(MANIFEST)
    if member is None:
        raise BundleError(f"{bundle}: no {MANIFEST}")
    try:
        return Manifest.model_validate_json(member)
    except ValidationError as exc:
        raise BundleError(f"{bundle}: invalid manifest ({exc.error_count()} errors)") from None


def extract_bundle(bundle: Path, target: Path) -> Manifest:
    """Extract into ``target`` after checking every member against the manifest. Members are
    streamed to disk while they are hashed (never held whole), each refused from its header if
    it is over MAX_MEMBER_BYTES or would take the bundle over MAX_BUNDLE_BYTES."""
    manifest = read_manifest(bundle)
    target.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    total = 0
    try:
        with tarfile.open(bundle, "r|gz") as tar:
            for member in tar:
                name = member.name
                if name in (MANIFEST, SIGNATURE):
                    continue
                if (
                    name not in manifest.files
                    or name in seen
                    or not member.isfile()
                    or "/" in name
                    or name.startswith(".")
                ):
                    raise BundleError(f"{bundle}: unexpected member {name!r}")
                total += member.size
                if member.size > MAX_MEMBER_BYTES or total > MAX_BUNDLE_BYTES:
                    raise BundleError(
                        f"{bundle}: {name} is {member.size} bytes; a bundle member may be at "
                        f"most {MAX_MEMBER_BYTES} and the bundle {MAX_BUNDLE_BYTES}"
                    )
                data = tar.extractfile(member)
                assert data is not None
                digest = hashlib.sha256()
                with (target / name).open("wb") as out:
                    while block := data.read(1 << 20):
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != manifest.files[name]:
                    (target / name).unlink()
                    raise BundleError(
                        f"{bundle}: {name} does not match its sha256 (tampered or corrupt)"
                    )
                seen.add(name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"{bundle}: truncated or corrupt ({exc})") from None
    absent = set(manifest.files) - seen
    if absent:
        raise BundleError(f"{bundle}: truncated or corrupt: members missing: {sorted(absent)}")
    (target / MANIFEST).write_text(manifest.model_dump_json(indent=2), "utf-8")
    return manifest


def extracted(bundle: Path, cache: Path | None = None) -> tuple[Path, Manifest]:
    """``bundle`` verified and extracted into the shared cache, keyed by its hash; returns the
    folder and manifest. Extraction goes beside and is renamed into place, so a crash never
    leaves a half-extracted entry and another process extracting the same bundle is harmless."""
    folder = (cache or BUNDLE_CACHE) / sha256_file(bundle)[:16]
    manifest_path = folder / MANIFEST
    if manifest_path.exists():
        return folder, Manifest.model_validate_json(manifest_path.read_text("utf-8"))
    staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    manifest = extract_bundle(bundle, staging)
    try:
        staging.rename(folder)
    except OSError:  # another process extracted it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder, manifest


def derive_bundle(
    source: Path,
    out: Path,
    version: str | None = None,
    release: int | None = None,
    replace: dict[str, bytes] | None = None,
    add: dict[str, bytes] | None = None,
    fields: dict[str, Any] | None = None,
) -> Path:
    """A copy of ``source`` (unsigned) under another version or release, with some members'
    bytes replaced, members added and manifest ``fields`` changed; the manifest's hashes follow.
    For new galleries, for drills with a bundle the lanes must refuse, and for adding what an
    older bundle lacks."""
    with tarfile.open(source, "r:gz") as tar:
        members = {}
        for info in tar.getmembers():
            handle = tar.extractfile(info) if info.isfile() else None
            if handle is not None and info.name not in (MANIFEST, SIGNATURE):
                members[info.name] = handle.read()
        manifest_file = tar.extractfile(MANIFEST)
        if manifest_file is None:
            raise BundleError(f"{source}: no {MANIFEST}")
        manifest = Manifest.model_validate_json(manifest_file.read())
    for name, data in (replace or {}).items():
        if name not in members:
            raise BundleError(f"{source}: no member {name!r} to replace")
        members[name] = data
    for name, data in (add or {}).items():
        if name in members or name in (MANIFEST, SIGNATURE):
            raise BundleError(f"{source}: already has a member {name!r}")
        members[name] = data
    update: dict[str, Any] = {
        **(fields or {}),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(members.items())},
    }
    if version is not None:
        update["version"] = version
    if release is not None:
        update["release"] = release
    manifest_bytes = manifest.model_copy(update=update).model_dump_json(indent=2).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        for name, data in [(MANIFEST, manifest_bytes), *sorted(members.items())]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out
