"""Signed model bundles: Ed25519 over the manifest, checked before a lane uses anything.

The manifest lists the SHA-256 of every other member, so one signature over the manifest's
exact bytes covers the whole bundle. The signature travels inside the archive as
``signature.json`` (``key_id``, ``signature``), added after the bundle is built:

    laneguard keys new --out keys/            # release.key (private, 0600) and release.pub
    laneguard keys sign bundle.tar.gz --key keys/release.key
    laneguard keys verify bundle.tar.gz --trust keys/release.pub

A lane trusts the public keys in its settings. It refuses a bundle that is unsigned, signed by
a key it does not trust, whose signature does not match the manifest (tampered), or whose
members do not match the manifest (tampered or truncated): each with its own reason.

Anti-rollback: every manifest carries a ``release`` number. A lane remembers the highest it has
run and refuses an older one unless an IT admin pinned exactly that version.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from laneguard.bundle import (
    MANIFEST,
    SIGNATURE,
    BundleError,
    Manifest,
    extract_bundle,
    small_members,
)
from product_db.errors import LaneGuardError


class SigningKeyError(LaneGuardError, ValueError):
    """A key file that cannot be read as the key it should be."""


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint: the first 16 hex digits of the raw public key's SHA-256."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def new_keypair(out: Path, name: str = "release") -> tuple[Path, Path]:
    """Write ``name.key`` (PEM, readable by its owner only) and ``name.pub`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / f"{name}.key", out / f"{name}.pub"
    if private_path.exists():
        raise SigningKeyError(f"{private_path} exists; refusing to overwrite a signing key")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_text(public_pem(private))
    return private_path, public_path


def public_pem(key: Ed25519PrivateKey) -> str:
    """The public half of ``key`` as PEM text (what lanes, stores and HQ hand each other)."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as error:
        raise SigningKeyError(f"{path}: not a readable private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 private key")
    return key


def public_key_from_pem(pem: bytes | str, source: str = "key") -> Ed25519PublicKey:
    """An Ed25519 public key from its PEM text; SigningKeyError names ``source`` if not one."""
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError) as error:
        raise SigningKeyError(f"{source}: not a readable public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{source}: not an Ed25519 public key")
    return key


def load_or_make_key(path: Path) -> Ed25519PrivateKey:
    """The private key at ``path``, made there (with its ``.pub`` beside it) on first use: a
    server's own key (the store's, HQ's), which it then keeps."""
    if not path.exists():
        new_keypair(path.parent, path.stem)
    return load_private_key(path)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        pem = Path(path).read_bytes()
    except OSError as error:
        raise SigningKeyError(f"{path}: not a readable public key ({error})") from None
    return public_key_from_pem(pem, str(path))


def _members(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            members = []
            for info in tar.getmembers():
                handle = tar.extractfile(info)
                members.append((info, handle.read() if handle else b""))
            return members
    except (tarfile.TarError, OSError, EOFError) as error:
        raise BundleError(f"{bundle}: truncated or corrupt ({error})") from None


def sign_bundle(
    bundle: Path,
    private: Ed25519PrivateKey,
    out: Path | None = None,
    release: int | None = None,
) -> Path:
    """Add (or replace) the signature over the manifest; writes ``out`` (default: in place).
    ``release`` sets the manifest's release number first (the publisher hands them out)."""
    members = [(i, data) for i, data in _members(bundle) if i.name != SIGNATURE]
    index = next((n for n, (info, _) in enumerate(members) if info.name == MANIFEST), None)
    if index is None:
        raise BundleError(f"{bundle}: no {MANIFEST} to sign")
    if release is not None:
        parsed = Manifest.model_validate_json(members[index][1])
        data = parsed.model_copy(update={"release": release}).model_dump_json(indent=2).encode()
        info = members[index][0]
        info.size = len(data)
        members[index] = (info, data)
    manifest = members[index][1]
    signature = {
        "key_id": key_id(private.public_key()),
        "signature": base64.b64encode(private.sign(manifest)).decode(),
    }
    target = out or bundle
    partial = target.with_name(target.name + ".partial")
    blob = json.dumps(signature).encode()
    signature_info = tarfile.TarInfo(SIGNATURE)
    signature_info.size, signature_info.mtime, signature_info.mode = len(blob), 0, 0o644
    # right after the manifest: a lane checking the signature reads the archive's head only
    members.insert(index + 1, (signature_info, blob))
    with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    os.replace(partial, target)
    return target


@dataclass
class BundleTrust:
    """What a lane accepts: bundles signed by one of ``keys``, not older than ``min_release``
    (unless ``pinned_version`` names that exact version)."""

    keys: list[Ed25519PublicKey]
    min_release: int = 0
    pinned_version: str | None = None
    _by_id: dict[str, Ed25519PublicKey] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {key_id(k): k for k in self.keys}

    @classmethod
    def from_files(cls, paths: list[Path], **kwargs: object) -> BundleTrust:
        return cls([load_public_key(p) for p in paths], **kwargs)  # type: ignore[arg-type]

    def check_signature(self, bundle: Path) -> Manifest:
        """The manifest, once its signature is verified; BundleError says why not. Only the
        manifest and the signature are read (each capped), so a bundle refused here has cost
        no more than those two small files; the members are checked against the manifest's
        hashes as they are extracted. The signature is the member right after the manifest
        (sign_bundle puts it there); one anywhere else is not looked for."""
        found = small_members(bundle, {MANIFEST, SIGNATURE}, first=2)
        if MANIFEST not in found:
            raise BundleError(f"{bundle}: no {MANIFEST}")
        if SIGNATURE not in found:
            raise BundleError(f"{bundle}: unsigned (no {SIGNATURE}); refusing to use it")
        try:
            signature = json.loads(found[SIGNATURE])
            raw = base64.b64decode(signature["signature"], validate=True)
            signer = str(signature["key_id"])
        except (ValueError, KeyError, TypeError):
            raise BundleError(f"{bundle}: {SIGNATURE} is malformed") from None
        key = self._by_id.get(signer)
        if key is None:
            raise BundleError(f"{bundle}: signed by key {signer}, which this lane does not trust")
        try:
            key.verify(raw, found[MANIFEST])
        except InvalidSignature:
            raise BundleError(
                f"{bundle}: signature does not match the manifest (tampered)"
            ) from None
        manifest = Manifest.model_validate_json(found[MANIFEST])
        self.check_release(manifest)
        return manifest

    def check_release(self, manifest: Manifest) -> None:
        if manifest.release < self.min_release and manifest.version != self.pinned_version:
            raise BundleError(
                f"bundle {manifest.version} is release {manifest.release}, older than this "
                f"lane's minimum {self.min_release} (anti-rollback); an IT admin can pin it"
            )

    def extract(self, bundle: Path, target: Path) -> Manifest:
        """Verify the signature, then every member's hash, then extract."""
        self.check_signature(bundle)
        return extract_bundle(bundle, target)


def canonical_json(body: dict[str, object]) -> bytes:
    """The bytes a signed JSON document's signature covers: every key but ``signature`` and
    ``key_id``, sorted, without spaces (the same on the server that signs and the lane)."""
    content = {k: v for k, v in body.items() if k not in ("signature", "key_id")}
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def sign_json(body: dict[str, object], key: Ed25519PrivateKey) -> dict[str, object]:
    signed = dict(body)
    signed["key_id"] = key_id(key.public_key())
    signed["signature"] = base64.b64encode(key.sign(canonical_json(body))).decode()
    return signed


def verify_json(body: dict[str, object], key: Ed25519PublicKey) -> None:
    """Raises SignatureError unless ``body`` carries a valid signature by ``key``."""
    if body.get("key_id") != key_id(key):
        raise SignatureError(f"signed by key {body.get('key_id')!r}, not the store's")
    try:
        key.verify(
            base64.b64decode(str(body.get("signature", "")), validate=True), canonical_json(body)
        )
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not match the content (tampered)") from None


class SignatureError(LaneGuardError, ValueError):
    """A signed document that is not what its signer signed."""
