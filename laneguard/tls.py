"""TLS between lanes and their store without a public CA: the store's certificate is bound to
the store's own signing key, which every lane already trusts.

A store server has an Ed25519 key (its enrolment tokens end in that key's id) but usually no
name a public CA would certify: lanes reach it by its address on the store network. So the
store signs the SHA-256 of the certificate it serves with that key (the *binding*); a lane
takes the certificate the server presents, asks for the binding over it, and trusts the
certificate only if the binding is signed by the key its token (or its enrolment) names and
hashes to that very certificate. From then on the lane's connections trust that one
certificate and nothing else (it is pinned), so a machine in the middle can neither read the
token or credential nor forge a reply. A certificate IT gives the store works the same way:
the binding pins the leaf itself, whoever issued it.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from laneguard.files import write_bytes_atomic
from laneguard.signing import (
    SignatureError,
    key_id,
    public_key_from_pem,
    public_pem,
    sign_json,
    verify_json,
)

BINDING_KIND = "laneguard-tls-binding"
CERTIFICATE_DAYS = 3650  # pinned, not checked against a CA: a short life buys nothing here
NO_CHECK_TIME = 0x200000  # OpenSSL's X509_V_FLAG_NO_CHECK_TIME


class TlsBindingError(SignatureError):
    """The certificate a server presents is not one the expected store vouched for."""


def leaf_certificate(pem: str) -> x509.Certificate:
    """The first certificate of a PEM file (a chain file IT gives starts with the server's own;
    text around the blocks is ignored); TlsBindingError when there is none."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as error:
        raise TlsBindingError(f"not a PEM certificate: {error}") from None
    return certificates[0]


def certificate_sha256(pem: str) -> str:
    """The SHA-256 of the (first) certificate's DER form: what the binding signs."""
    der = leaf_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def issued_at(pem: str) -> datetime.datetime:
    """When the certificate was made (its not-before): a lane moves its pin only to a newer
    one, so a replaced certificate (whose key may have leaked) is never taken back."""
    return leaf_certificate(pem).not_valid_before_utc


def make_self_signed(certificate: Path, key: Path, hosts: list[str]) -> None:
    """A new ECDSA P-256 key (0600) and a self-signed certificate for ``hosts`` (names and
    addresses, for browsers; lanes pin the certificate itself). P-256, not Ed25519: every
    browser a store manager uses accepts it."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LaneGuard store server")])
    alternatives: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alternatives.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    write_bytes_atomic(
        key,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    write_bytes_atomic(certificate, built.public_bytes(serialization.Encoding.PEM))


def server_hosts(listen_host: str) -> list[str]:
    """The names a store's own certificate is made for: the address it listens on (unless it
    listens everywhere), this computer's name and the loopback."""
    hosts = [socket.gethostname(), "localhost", "127.0.0.1"]
    if listen_host not in ("0.0.0.0", "::", ""):
        hosts.insert(0, listen_host)
    return hosts


def ensure_certificate(certificate: Path, key: Path, hosts: list[str]) -> None:
    """Make the store's own certificate on its first start; keep it on every later one (lanes
    have pinned it). A key without its certificate (the power went between the two writes) is
    made again: no lane can have pinned a certificate that never existed. A certificate
    without its key is refused rather than overwritten."""
    if certificate.is_file() and key.is_file():
        return
    if certificate.exists():
        raise TlsBindingError(f"{certificate} exists but its key {key} does not: restore it")
    make_self_signed(certificate, key, hosts)


def binding_for(store_key: Ed25519PrivateKey, certificate_pem: str) -> dict[str, object]:
    """The store's signature over the certificate it serves, with its public key, so a lane
    can check both against the key id it already trusts."""
    signed = sign_json(
        {"kind": BINDING_KIND, "certificate_sha256": certificate_sha256(certificate_pem)},
        store_key,
    )
    return {"binding": signed, "store_key": public_pem(store_key)}


def verify_binding(answer: Any, certificate_pem: str, expected_key_id: str) -> Ed25519PublicKey:
    """The store's key, if ``answer`` (what ``binding_for`` made) is signed by the key named
    ``expected_key_id`` and covers ``certificate_pem``; else TlsBindingError."""
    if not isinstance(answer, dict) or not isinstance(answer.get("binding"), dict):
        raise TlsBindingError("the server's answer holds no certificate binding")
    try:
        store_key = public_key_from_pem(str(answer.get("store_key", "")), "the store's key")
    except ValueError as error:
        raise TlsBindingError(f"the binding's key is not a key: {error}") from None
    if key_id(store_key) != expected_key_id:
        raise TlsBindingError(
            f"the server is not the expected store (its key is {key_id(store_key)}, "
            f"expected {expected_key_id})"
        )
    binding: dict[str, object] = answer["binding"]
    try:
        verify_json(binding, store_key)
    except SignatureError as error:
        raise TlsBindingError(f"the certificate binding does not verify: {error}") from None
    if binding.get("kind") != BINDING_KIND:
        raise TlsBindingError("the signed document is not a certificate binding")
    if binding.get("certificate_sha256") != certificate_sha256(certificate_pem):
        raise TlsBindingError("the store signed another certificate than the one presented")
    return store_key


def pinned_context(certificate_pem: str) -> ssl.SSLContext:
    """A client context that trusts exactly this certificate. The name is not checked: lanes
    reach their store by address, and the pin is stricter than any name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    # The pinned leaf is the trust anchor even when IT's CA issued it.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    # Nor its dates: the pin is the trust, and a board without a real-time clock may wake up
    # years early (OpenSSL's X509_V_FLAG_NO_CHECK_TIME, which Python does not name).
    context.verify_flags |= NO_CHECK_TIME
    context.load_verify_locations(cadata=certificate_pem)
    return context


def presented_certificate(host: str, port: int, timeout_s: float = 10.0) -> str:
    """The certificate a TLS server presents (PEM), not yet trusted: what the binding check
    then vouches for or refuses. Nothing is sent over this connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout_s) as raw,
        context.wrap_socket(raw, server_hostname=host) as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    if not der:
        raise TlsBindingError(f"{host}:{port} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der)
