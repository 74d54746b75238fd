"""Broken on purpose: what drills in the tests and benchmarks offer a lane to prove it refuses
it (a bundle that passes every hash and signature check and still must not go live)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from laneguard.bundle import read_manifest


def not_a_detector(bundle: Path) -> dict[str, bytes]:
    """Member replacements that put the embedder where the detectors are: a bundle that
    loads, passes its hash and signature checks, and must fail its smoke test."""
    manifest = read_manifest(bundle)
    embedder = next(m.file for m in manifest.models if m.role == "embedder")
    with tarfile.open(bundle, "r:gz") as tar:
        member = tar.extractfile(embedder)
        assert member is not None
        data = member.read()
    return {m.file: data for m in manifest.models if m.role == "detector"}
