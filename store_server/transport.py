"""How the store server meets the network: HTTPS with its own certificate (or IT's), and the
binding that lets lanes trust that certificate through the store's key (laneguard.tls)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from laneguard.tls import (
    TlsBindingError,
    binding_for,
    ensure_certificate,
    leaf_certificate,
    server_hosts,
)
from store_server.settings import StoreSettings

OWN_CERTIFICATE = ("keys/tls.crt", "keys/tls.key")  # in the data folder, made on first start


def tls_files(settings: StoreSettings) -> tuple[Path, Path] | None:
    """The certificate and key the server serves with (IT's, or its own, made on the first
    start and kept: lanes have pinned it); None when TLS is off."""
    if not settings.tls:
        return None
    if settings.tls_cert is not None and settings.tls_key is not None:
        for given in (settings.tls_cert, settings.tls_key):
            if not given.is_file():
                raise TlsBindingError(f"TLS file {given} does not exist (tls_cert, tls_key)")
        leaf_certificate(settings.tls_cert.read_text("utf-8"))  # refused here, by name
        return settings.tls_cert, settings.tls_key
    certificate, key = (settings.data_dir / name for name in OWN_CERTIFICATE)
    ensure_certificate(certificate, key, server_hosts(settings.host))
    return certificate, key


def certificate_binding(
    settings: StoreSettings, store_key: Ed25519PrivateKey
) -> dict[str, object] | None:
    """The store key's signature over the certificate the server serves (what
    ``GET /api/v1/tls-binding`` answers); None when TLS is off."""
    files = tls_files(settings)
    if files is None:
        return None
    return binding_for(store_key, files[0].read_text("utf-8"))


def base_url(settings: StoreSettings) -> str:
    """The URL lanes and people reach this server at (the listening address and port)."""
    scheme = "https" if settings.tls else "http"
    return f"{scheme}://{settings.host}:{settings.port}"
