"""laneguard.tls on its own: what a certificate's binding covers in the files IT gives a
store, the store's own pair surviving a power cut, and a pin that holds on a lane whose clock
is wrong."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from laneguard.signing import key_id
from laneguard.tls import (
    TlsBindingError,
    binding_for,
    certificate_sha256,
    ensure_certificate,
    make_self_signed,
    pinned_context,
    verify_binding,
)


def test_a_chain_file_binds_its_first_certificate(tmp_path: Path) -> None:
    make_self_signed(tmp_path / "leaf.crt", tmp_path / "leaf.key", ["127.0.0.1"])
    make_self_signed(tmp_path / "ca.crt", tmp_path / "ca.key", ["ca"])
    leaf = (tmp_path / "leaf.crt").read_text()
    chain = "Bag Attributes\n    friendlyName: store\n" + leaf + (tmp_path / "ca.crt").read_text()
    assert certificate_sha256(chain) == certificate_sha256(leaf)
    store = Ed25519PrivateKey.generate()
    verify_binding(binding_for(store, chain), leaf, key_id(store.public_key()))
    with pytest.raises(TlsBindingError, match="not a PEM certificate"):
        certificate_sha256("no certificate here")


def test_the_stores_own_pair_is_made_once_and_a_lone_key_made_again(tmp_path: Path) -> None:
    certificate, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    ensure_certificate(certificate, key, ["127.0.0.1"])
    first = certificate.read_bytes()
    ensure_certificate(certificate, key, ["127.0.0.1"])
    assert certificate.read_bytes() == first, "kept: lanes pinned it"
    certificate.unlink()  # the power went between writing the key and the certificate
    ensure_certificate(certificate, key, ["127.0.0.1"])
    assert certificate.read_bytes() != first and key.stat().st_mode & 0o077 == 0
    key.unlink()
    with pytest.raises(TlsBindingError, match="its key"):
        ensure_certificate(certificate, key, ["127.0.0.1"])


def test_a_pinned_certificate_holds_on_a_lane_whose_clock_is_years_behind(tmp_path: Path) -> None:
    """A certificate valid only from next year, as a lane without a real-time clock sees its
    store's after waking up in the past."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "store")])
    start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)
    built = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(1)
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=365))
        .sign(private, hashes.SHA256())
    )  # fmt: skip
    pem = built.public_bytes(serialization.Encoding.PEM).decode()
    (tmp_path / "c.pem").write_text(pem)
    (tmp_path / "k.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        connection, _ = listener.accept()
        try:
            with server.wrap_socket(connection, server_side=True) as wrapped:
                wrapped.sendall(b"ok")
        except OSError:
            pass

    threading.Thread(target=serve_once, daemon=True).start()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pinned_context(pem).wrap_socket(raw, server_hostname="127.0.0.1") as pinned,
    ):
        assert pinned.recv(2) == b"ok"
    listener.close()
