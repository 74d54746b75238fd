"""Signed bundles: a lane uses only what a trusted key signed, refuses tampered, unsigned,
truncated and older bundles with a reason, and an IT admin's pin lets one older version in."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from checkout_node.bundle_trust import min_release, remember_release, verify_bundle
from checkout_node.service import LaneService
from checkout_node.settings import LaneSettings
from laneguard.bundle import SHIPPED_BUNDLE, BundleError, read_manifest
from laneguard.cli import main as cli
from laneguard.signing import (
    BundleTrust,
    key_id,
    load_private_key,
    load_public_key,
    new_keypair,
    sign_bundle,
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    private, public = new_keypair(folder)
    _other_private, other_public = new_keypair(folder, "other")
    return private, public, other_public


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path, Path]) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "signed.tar.gz"
    return sign_bundle(SHIPPED_BUNDLE, load_private_key(keys[0]), out, release=7)


def rewrite(bundle: Path, out: Path, change: dict[str, bytes]) -> Path:
    """Copy ``bundle`` with some members' bytes replaced (what an attacker or a bad disk does)."""
    with tarfile.open(bundle, "r:gz") as source, tarfile.open(out, "w:gz") as target:
        for info in source.getmembers():
            handle = source.extractfile(info)
            data = change.get(info.name, handle.read() if handle else b"")
            info.size = len(data)
            target.addfile(info, io.BytesIO(data))
    return out


def test_a_signed_bundle_verifies_and_carries_its_release(
    signed: Path, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    trust = BundleTrust.from_files([keys[1]])
    manifest = trust.extract(signed, tmp_path / "x")
    assert manifest.release == 7 and manifest.version == read_manifest(SHIPPED_BUNDLE).version
    assert (tmp_path / "x" / manifest.gallery).is_file()


def test_tampered_unsigned_truncated_and_foreign_bundles_are_refused(
    signed: Path, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    trust = BundleTrust.from_files([keys[1]])
    with pytest.raises(BundleError, match="unsigned"):
        trust.check_signature(SHIPPED_BUNDLE)
    with pytest.raises(BundleError, match="does not trust"):
        BundleTrust.from_files([keys[2]]).check_signature(signed)

    manifest = json.loads(read_manifest(signed).model_dump_json())
    manifest["thresholds"]["t2"] = 0.0  # accept anything as a known product
    forged = rewrite(
        signed, tmp_path / "forged.tar.gz", {"manifest.json": json.dumps(manifest).encode()}
    )
    with pytest.raises(BundleError, match="signature does not match the manifest"):
        trust.check_signature(forged)

    gallery = read_manifest(signed).gallery
    swapped = rewrite(signed, tmp_path / "swapped.tar.gz", {gallery: b"not the gallery"})
    trust.check_signature(swapped)  # the manifest is intact...
    with pytest.raises(BundleError, match="does not match its sha256"):
        trust.extract(swapped, tmp_path / "out")  # ...but a member is not what it lists

    data = signed.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    trust.check_signature(truncated)  # the signature reads the archive's head only...
    with pytest.raises(BundleError, match="truncated or corrupt"):
        trust.extract(truncated, tmp_path / "cut")  # ...and extraction finds the rest missing
    head = tmp_path / "head.tar.gz"
    head.write_bytes(data[:60])  # cut inside the manifest
    with pytest.raises(BundleError, match="truncated or corrupt"):
        trust.check_signature(head)


def test_anti_rollback_and_the_admin_pin(
    signed: Path, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    remember_release(tmp_path, read_manifest(signed))
    assert min_release(tmp_path) == 7
    older = sign_bundle(signed, load_private_key(keys[0]), tmp_path / "old.tar.gz", release=3)
    with pytest.raises(BundleError, match="older than this lane's minimum 7"):
        verify_bundle(older, [keys[1]], tmp_path)
    pinned = verify_bundle(older, [keys[1]], tmp_path, pinned_version=read_manifest(older).version)
    assert pinned.release == 3
    remember_release(tmp_path, pinned)
    assert min_release(tmp_path) == 7  # never lowered


def test_a_lane_will_not_start_on_a_bundle_it_cannot_trust(
    signed: Path, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    settings = LaneSettings(
        bundle=SHIPPED_BUNDLE, bundle_keys=[keys[1]], data_dir=tmp_path, camera="none.mp4"
    )
    with pytest.raises(BundleError, match="unsigned"):
        LaneService(settings)
    service = LaneService(settings.model_copy(update={"bundle": signed}))
    assert service.models.manifest.release == 7 and min_release(tmp_path) == 7


def test_keys_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "new", "--out", str(tmp_path)])
    assert made.exit_code == 0 and "key id" in made.output
    again = runner.invoke(cli, ["keys", "new", "--out", str(tmp_path)])
    assert again.exit_code != 0 and "refusing to overwrite" in again.output
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(SHIPPED_BUNDLE.read_bytes())
    signed = runner.invoke(
        cli, ["keys", "sign", str(bundle), "--key", str(tmp_path / "release.key"), "--release", "2"]
    )
    assert signed.exit_code == 0, signed.output
    ok = runner.invoke(
        cli, ["keys", "verify", str(bundle), "--trust", str(tmp_path / "release.pub")]
    )
    assert ok.exit_code == 0 and "release 2" in ok.output
    unsigned = runner.invoke(
        cli, ["keys", "verify", str(SHIPPED_BUNDLE), "--trust", str(tmp_path / "release.pub")]
    )
    assert unsigned.exit_code != 0 and "unsigned" in unsigned.output
    assert key_id(load_public_key(tmp_path / "release.pub")) in made.output
