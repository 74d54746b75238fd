"""A self-signed certificate for 127.0.0.1, for tests that serve HTTPS (the product's own
maker, laneguard.tls, which the store server uses for its certificate)."""

from __future__ import annotations

from pathlib import Path

from laneguard.tls import make_self_signed


def self_signed(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """(certificate file, key file, 0600) of a new P-256 certificate for ``host``."""
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    make_self_signed(cert_file, key_file, [host])
    return cert_file, key_file
