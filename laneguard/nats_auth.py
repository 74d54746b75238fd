"""The chain's broker with a credential per store: NATS decentralised authentication (an
operator, one account for the chain, a user per store), made and signed here with Ed25519.

Why JWTs and not a users list in the broker's config: HQ issues a store's credential at the
moment the store enrols, signed with the chain account's key, and the broker checks the
signature; nothing in the broker's config changes and nothing is reloaded. Each store's user
JWT lists the only subjects it may publish on (its own ``lg.store.<id>.>``, the JetStream API
calls of its own two consumers, their acks) and subscribe to (its own reply inbox), so a store
can neither read another store's messages nor the streams, nor create, purge or delete
anything; HQ creates the streams and each store's consumers (laneguard.jetstream).

A store's NATS user key is its own (made on the store, the public half sent at enrolment),
never the store's signing key: the broker asks a client to sign a nonce it chooses, and a
broker in the middle could choose a chain message as the nonce.

The encodings follow the NATS specifications: nkeys (a prefix byte, the 32-byte Ed25519 public
key and a CRC-16/XMODEM, in base32 without padding) and JWT v2 (``ed25519-nkey``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from laneguard.chain import HQ_STREAM, STORE_ID, hq_subject, store_subject
from laneguard.signing import load_or_make_key
from product_db.errors import LaneGuardError

# nkey prefix bytes (NATS nkeys: the first base32 letter says what the key is)
OPERATOR, ACCOUNT, USER = 14 << 3, 0, 20 << 3
_LETTER = {OPERATOR: "O", ACCOUNT: "A", USER: "U"}
UNLIMITED = -1
# A store's broker credential lasts a day and the store renews it from HQ when half is left:
# a retired store (its HQ credential cleared) is off the broker within a day, with no change
# to the broker (the memory resolver has no revocation list to update).
STORE_CREDENTIAL_S = 24 * 3600


class BrokerAuthError(LaneGuardError, ValueError):
    """A broker credential that is not one: a bad nkey, a store id outside the rules."""


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def public_nkey(key: Ed25519PublicKey, prefix: int) -> str:
    """The nkey text of ``key`` as an operator, account or user (``prefix``)."""
    raw = bytes([prefix]) + key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw += _crc16(raw).to_bytes(2, "little")
    return base64.b32encode(raw).decode().rstrip("=")


def public_key_of_nkey(nkey: str, prefix: int) -> Ed25519PublicKey:
    """The Ed25519 key an nkey names; BrokerAuthError unless it is a well-formed ``prefix``
    nkey (a store sends its user nkey at enrolment)."""
    try:
        raw = base64.b32decode(nkey + "=" * (-len(nkey) % 8))
    except ValueError:
        raise BrokerAuthError("the NATS key is not base32") from None
    if len(raw) != 35 or raw[0] != prefix:
        raise BrokerAuthError(f"not a NATS {_LETTER.get(prefix, '?')} key")
    if _crc16(raw[:-2]).to_bytes(2, "little") != raw[-2:]:
        raise BrokerAuthError("the NATS key's checksum does not match")
    return Ed25519PublicKey.from_public_bytes(raw[1:33])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode_jwt(
    issuer: Ed25519PrivateKey,
    issuer_prefix: int,
    subject: str,
    name: str,
    nats: dict[str, Any],
    lifetime_s: float | None = None,
) -> str:
    """A NATS JWT v2 signed by ``issuer``: ``subject`` (an nkey) with the ``nats`` claims,
    expiring after ``lifetime_s`` when given."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iat": now,
        "iss": public_nkey(issuer.public_key(), issuer_prefix),
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    if lifetime_s is not None:
        claims["exp"] = now + int(lifetime_s)
    digest = hashlib.new("sha512_256", json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64url(json.dumps(claims).encode())
    signature = _b64url(issuer.sign(f"{header}.{body}".encode()))
    return f"{header}.{body}.{signature}"


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a NATS JWT (not verified: for reading what a credential allows)."""
    body = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


def store_permissions(store_id: str) -> dict[str, Any]:
    """What store ``store_id``'s user may do on the broker, and nothing more."""
    if not STORE_ID.match(store_id):
        raise BrokerAuthError(f"unusable store id {store_id!r}")
    publish = [store_subject(store_id, ">")]
    for durable, _subject in store_consumers(store_id):
        publish += [
            f"$JS.API.CONSUMER.INFO.{HQ_STREAM}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{HQ_STREAM}.{durable}",
            f"$JS.ACK.{HQ_STREAM}.{durable}.>",
        ]
    return {"pub": {"allow": publish}, "sub": {"allow": [f"{store_inbox(store_id)}.>"]}}


def store_inbox(store_id: str) -> str:
    """The reply-subject prefix store ``store_id`` uses (its user may subscribe to no other)."""
    return f"_INBOX_lg_store_{store_id}"


@dataclass(frozen=True)
class BrokerUser:
    """What a client connects with: its user JWT (or where to get the current one: a store's
    is renewed) and the key that signs the broker's nonce."""

    jwt: str | Callable[[], str]
    key: Ed25519PrivateKey
    inbox_prefix: str = "_INBOX"

    def current_jwt(self) -> str:
        return self.jwt() if callable(self.jwt) else self.jwt

    def connect_options(self) -> dict[str, Any]:
        """nats-py's options for this user (its callbacks: no creds file on disk; asked again
        at every reconnection, so a renewed JWT is the one sent)."""
        signer = self.key

        def signature(nonce: str) -> bytes:
            return base64.b64encode(signer.sign(nonce.encode()))

        def jwt() -> bytes:
            return self.current_jwt().encode()

        return {"signature_cb": signature, "user_jwt_cb": jwt, "inbox_prefix": self.inbox_prefix}


@dataclass(frozen=True)
class BrokerKeys:
    """HQ's keys for the chain's broker: the operator (signs the accounts), the chain's
    account (signs every user), and the broker's system account. Made once in HQ's data
    folder (0600) and kept: the broker trusts the operator's JWTs made from them."""

    operator: Ed25519PrivateKey
    account: Ed25519PrivateKey
    system: Ed25519PrivateKey

    @classmethod
    def load_or_make(cls, folder: Path) -> BrokerKeys:
        return cls(
            load_or_make_key(folder / "nats-operator.key"),
            load_or_make_key(folder / "nats-account.key"),
            load_or_make_key(folder / "nats-system.key"),
        )

    @property
    def account_nkey(self) -> str:
        return public_nkey(self.account.public_key(), ACCOUNT)

    @property
    def system_nkey(self) -> str:
        return public_nkey(self.system.public_key(), ACCOUNT)

    def operator_jwt(self) -> str:
        operator = public_nkey(self.operator.public_key(), OPERATOR)
        claims = {"type": "operator", "system_account": self.system_nkey}
        return encode_jwt(self.operator, OPERATOR, operator, "laneguard", claims)

    def account_jwts(self) -> dict[str, str]:
        """Account nkey -> JWT, for the broker's resolver: the chain's (with JetStream) and
        the system account."""
        limits = {
            key: UNLIMITED
            for key in ("subs", "data", "payload", "imports", "exports", "conn", "leaf")
        }
        chain = {
            "type": "account",
            "limits": {
                **limits,
                "wildcards": True,
                "mem_storage": UNLIMITED,
                "disk_storage": UNLIMITED,
                "streams": UNLIMITED,
                "consumer": UNLIMITED,
            },
        }
        system = {"type": "account", "limits": {**limits, "wildcards": True}}
        return {
            self.account_nkey: encode_jwt(
                self.operator, OPERATOR, self.account_nkey, "laneguard-chain", chain
            ),
            self.system_nkey: encode_jwt(
                self.operator, OPERATOR, self.system_nkey, "system", system
            ),
        }

    def user_jwt(
        self,
        user: str,
        name: str,
        permissions: dict[str, Any],
        lifetime_s: float | None = None,
    ) -> str:
        """A user of the chain's account (``user``: its nkey) allowed ``permissions``."""
        public_key_of_nkey(user, USER)
        claims = {"type": "user", **permissions, "subs": -1, "data": -1, "payload": -1}
        return encode_jwt(self.account, ACCOUNT, user, name, claims, lifetime_s)

    def store_user(self, store_id: str, user_nkey: str) -> str:
        """Store ``store_id``'s user JWT: its own subjects and consumers only, for a day."""
        return self.user_jwt(
            user_nkey, f"store-{store_id}", store_permissions(store_id), STORE_CREDENTIAL_S
        )

    def hq_user(self, key: Ed25519PrivateKey) -> BrokerUser:
        """HQ's own user: everything in the chain's account (it owns the streams)."""
        nkey = public_nkey(key.public_key(), USER)
        everything = {"pub": {"allow": [">"]}, "sub": {"allow": [">"]}}
        return BrokerUser(self.user_jwt(nkey, "hq", everything), key, "_INBOX_lg_hq")

    def server_config(
        self,
        port: int,
        store_dir: Path,
        host: str = "127.0.0.1",
        tls: tuple[Path, Path] | None = None,
    ) -> str:
        """A ``nats-server -c`` configuration for this chain: JetStream, these accounts, no
        anonymous clients, and TLS with ``tls`` (certificate, key) when given."""
        preload = "\n".join(f"  {nkey}: {jwt}" for nkey, jwt in self.account_jwts().items())
        lines = [
            f"host: {json.dumps(host)}",
            f"port: {port}",
            f"jetstream: {{store_dir: {json.dumps(str(store_dir))}}}",
            f"operator: {self.operator_jwt()}",
            f"system_account: {self.system_nkey}",
            "resolver: MEMORY",
            f"resolver_preload: {{\n{preload}\n}}",
        ]
        if tls is not None:
            lines.append(
                f"tls: {{cert_file: {json.dumps(str(tls[0]))}, "
                f"key_file: {json.dumps(str(tls[1]))}}}"
            )
        return "\n".join(lines) + "\n"


def user_nkey(key: Ed25519PrivateKey) -> str:
    """The nkey a client's own user key goes by (what a store sends HQ at enrolment)."""
    return public_nkey(key.public_key(), USER)


def store_consumers(store_id: str) -> list[tuple[str, str]]:
    """Store ``store_id``'s two durable consumers on HQ's stream (name, filter subject): the
    chain-wide messages, and those for it alone. HQ creates them; the store pulls from them."""
    return [
        (f"store-{store_id}-all", hq_subject(">")),
        (f"store-{store_id}-own", hq_subject(">", store_id)),
    ]
