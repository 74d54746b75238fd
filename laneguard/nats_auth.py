"""The chain's broker with a credential per store: NATS decentralised authentication (an
operator, the chain's account, an account per store and a user in each), made and signed
here with Ed25519.

Why JWTs and not a users list in the broker's config: HQ issues a store's account and
credential at the moment the store enrols and pushes the account to the broker (its system
account's ``$SYS.REQ.CLAIMS.UPDATE``); nothing in the broker's config changes and nothing is
reloaded. Why an account per store and not a user per store in one account: in one account
the permissions bound only the subjects a client publishes on, never the reply subject it
names, and JetStream answers to whatever reply subject a request carries. A store allowed to
acknowledge its own messages could name ``$JS.API.STREAM.PURGE.LG_STORES`` as the reply of an
acknowledgement and have JetStream purge the stream for it (found in review, played on this
broker). In its own account a store sees only what the chain's account exports to it: its own
``lg.store.<id>.>`` (publishing, with the stream's acknowledgement), the information, next
message and acknowledgement subjects of its own two consumers (under ``JS.chain.API``, as
nats-py's JetStream prefix), nothing else; replies land in its own account, which has no
JetStream. HQ creates the streams and each store's consumers (laneguard.jetstream).

A store's NATS user key is its own (made on the store, the public half sent at enrolment),
never the store's signing key: the broker asks a client to sign a nonce it chooses, and a
broker in the middle could choose a chain message as the nonce.

The encodings follow the NATS specifications: nkeys (a prefix byte, the 32-byte Ed25519 public
key and a CRC-16/XMODEM, in base32 without padding) and JWT v2 (``ed25519-nkey``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
# The JetStream API prefix a store's client uses: its account imports its consumers' calls
# under it (the store's own account answers "$JS.API.>" itself: it has no JetStream).
STORE_JS_API = "JS.chain.API"
# The chain account's exports that store accounts import from (a store account's imports are
# signed by the operator, so a store cannot widen them).
_EXPORTS = (
    ("store-publish", "lg.store.>", "Singleton"),
    ("consumer-info", f"$JS.API.CONSUMER.INFO.{HQ_STREAM}.>", "Singleton"),
    ("consumer-next", f"$JS.API.CONSUMER.MSG.NEXT.{HQ_STREAM}.>", "Stream"),
    ("consumer-ack", f"$JS.ACK.{HQ_STREAM}.>", "Singleton"),
)
_UNLIMITED_LIMITS = {
    key: -1 for key in ("subs", "data", "payload", "imports", "exports", "conn", "leaf")
}
# A store's broker credential lasts a day and the store renews it from HQ when half is left
# (a retired store's renewal is refused; its account also revokes it at once, hq_server.broker).
STORE_CREDENTIAL_S = 24 * 3600
USER_NKEY_PATTERN = r"^U[A-Z2-7]{55}$"  # a user nkey's text, as an API field checks it


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


def _store_imports(store_id: str) -> list[tuple[str, str]]:
    """(subject in the chain's account, subject in the store's) for everything a store's
    account imports: its own publishing subjects, and its consumers' API and acks."""
    if not STORE_ID.match(store_id):
        raise BrokerAuthError(f"unusable store id {store_id!r}")
    own = store_subject(store_id, ">")
    imports = [(own, own)]
    for durable, _subject in store_consumers(store_id):
        for call in ("CONSUMER.INFO", "CONSUMER.MSG.NEXT"):
            imports.append(
                (
                    f"$JS.API.{call}.{HQ_STREAM}.{durable}",
                    f"{STORE_JS_API}.{call}.{HQ_STREAM}.{durable}",
                )
            )
        acks = f"$JS.ACK.{HQ_STREAM}.{durable}.>"
        imports.append((acks, acks))
    return imports


def store_permissions(store_id: str) -> dict[str, Any]:
    """What store ``store_id``'s user may do in its account: the subjects it imports and its
    own reply inbox (its account holds nothing else; this is the second wall)."""
    publish = [local for _chain, local in _store_imports(store_id)]
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
    account (signs HQ's user; its private bytes also derive each store account's key, so
    nothing per store is stored) and the broker's system account (pushes store accounts).
    Made once in HQ's data folder (0600) and kept: the broker trusts the operator's JWTs made
    from them."""

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
        """Account nkey -> JWT the broker starts with: the chain's (JetStream, and the exports
        store accounts import) and the system account."""
        chain = {
            "type": "account",
            "limits": {
                **_UNLIMITED_LIMITS,
                "wildcards": True,
                "mem_storage": UNLIMITED,
                "disk_storage": UNLIMITED,
                "streams": UNLIMITED,
                "consumer": UNLIMITED,
            },
            "exports": [
                {"name": name, "subject": subject, "type": "service", "response_type": kind}
                for name, subject, kind in _EXPORTS
            ],
        }
        system = {"type": "account", "limits": {**_UNLIMITED_LIMITS, "wildcards": True}}
        return {
            self.account_nkey: encode_jwt(
                self.operator, OPERATOR, self.account_nkey, "laneguard-chain", chain
            ),
            self.system_nkey: encode_jwt(
                self.operator, OPERATOR, self.system_nkey, "system", system
            ),
        }

    def store_account_key(self, store_id: str) -> Ed25519PrivateKey:
        """Store ``store_id``'s account key, derived from the chain account's: the same on
        every HQ process and after a restart, and nothing to keep per store."""
        secret = self.account.private_bytes_raw()
        seed = hmac.new(secret, f"laneguard-store-account:{store_id}".encode(), "sha256")
        return Ed25519PrivateKey.from_private_bytes(seed.digest())

    def store_account_nkey(self, store_id: str) -> str:
        return public_nkey(self.store_account_key(store_id).public_key(), ACCOUNT)

    def store_account_jwt(self, store_id: str, revoked_before: int | None = None) -> str:
        """Store ``store_id``'s account: the chain's exports it may use and nothing else (no
        JetStream of its own). ``revoked_before`` (seconds since 1970): users issued until
        then are refused (a retired store's: now; an enrolled one's: its latest enrolment)."""
        imports = [
            {
                "name": local,
                "subject": chain,
                "local_subject": local,
                "account": self.account_nkey,
                "type": "service",
            }
            for chain, local in _store_imports(store_id)
        ]
        claims: dict[str, Any] = {
            "type": "account",
            "limits": {**_UNLIMITED_LIMITS, "wildcards": True},
            "imports": imports,
        }
        if revoked_before is not None:
            claims["revocations"] = {"*": revoked_before}
        nkey = self.store_account_nkey(store_id)
        return encode_jwt(self.operator, OPERATOR, nkey, f"store-{store_id}", claims)

    def _user_jwt(
        self,
        issuer: Ed25519PrivateKey,
        user: str,
        name: str,
        permissions: dict[str, Any],
        lifetime_s: float | None = None,
    ) -> str:
        public_key_of_nkey(user, USER)
        claims = {"type": "user", **permissions, "subs": -1, "data": -1, "payload": -1}
        return encode_jwt(issuer, ACCOUNT, user, name, claims, lifetime_s)

    def store_user(
        self, store_id: str, user_nkey: str, lifetime_s: float = STORE_CREDENTIAL_S
    ) -> str:
        """Store ``store_id``'s user JWT, in its own account: for a day."""
        return self._user_jwt(
            self.store_account_key(store_id),
            user_nkey,
            f"store-{store_id}",
            store_permissions(store_id),
            lifetime_s,
        )

    def hq_user(self, key: Ed25519PrivateKey) -> BrokerUser:
        """HQ's own user: everything in the chain's account (it owns the streams)."""
        everything = {"pub": {"allow": [">"]}, "sub": {"allow": [">"]}}
        jwt = self._user_jwt(self.account, user_nkey(key), "hq", everything)
        return BrokerUser(jwt, key, "_INBOX_lg_hq")

    def system_user(self, key: Ed25519PrivateKey) -> BrokerUser:
        """HQ's user in the system account: pushes store accounts to the broker."""
        return BrokerUser(self._user_jwt(self.system, user_nkey(key), "hq-system", {}), key)

    def server_config(
        self,
        port: int,
        store_dir: Path,
        host: str = "127.0.0.1",
        tls: tuple[Path, Path] | None = None,
    ) -> str:
        """A ``nats-server -c`` configuration for this chain: JetStream, the chain's and the
        system account (store accounts are pushed by HQ and kept in ``store_dir/accounts``),
        no anonymous clients, and TLS with ``tls`` (certificate, key) when given."""
        preload = "\n".join(f"  {nkey}: {jwt}" for nkey, jwt in self.account_jwts().items())
        accounts = json.dumps(str(store_dir / "accounts"))
        lines = [
            f"host: {json.dumps(host)}",
            f"port: {port}",
            f"jetstream: {{store_dir: {json.dumps(str(store_dir))}}}",
            f"operator: {self.operator_jwt()}",
            f"system_account: {self.system_nkey}",
            f"resolver: {{type: full, dir: {accounts}, allow_delete: false}}",
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
