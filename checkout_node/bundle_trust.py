"""The lane's side of signed bundles: verify before use, and never go back in release.

The highest release this lane has run is kept in ``bundle-state.json`` in its data folder
(written atomically), so a restart, or a stale bundle offered again, cannot roll it back.
"""

from __future__ import annotations

import json
from pathlib import Path

from laneguard.bundle import Manifest
from laneguard.files import write_json_atomic
from laneguard.signing import BundleTrust

STATE_FILE = "bundle-state.json"


def min_release(data_dir: Path) -> int:
    path = data_dir / STATE_FILE
    if not path.is_file():
        return 0
    return int(json.loads(path.read_text())["min_release"])


def remember_release(data_dir: Path, manifest: Manifest) -> None:
    if manifest.release <= min_release(data_dir):
        return
    write_json_atomic(
        data_dir / STATE_FILE, {"min_release": manifest.release, "version": manifest.version}
    )


def verify_bundle(
    bundle: Path, keys: list[Path], data_dir: Path, pinned_version: str | None = None
) -> Manifest:
    """Check ``bundle`` as this lane must before using it (signature, anti-rollback). The
    caller remembers its release once it runs. Raises BundleError (or SigningKeyError)."""
    trust = BundleTrust.from_files(
        keys, min_release=min_release(data_dir), pinned_version=pinned_version
    )
    return trust.check_signature(bundle)
