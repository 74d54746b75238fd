"""A store's link to its chain's HQ: enrolment, and the JetStream link that carries the
exporter's messages up and HQ's down.

A store enrols once, as a lane does with its store: an IT admin at HQ makes a one-time token
for the store (`laneguard hq store add`), and the store's IT runs `laneguard server hq-enrol
--hq URL --token T`. The store sends the public half of its own signing key (the one it signs
gallery updates with); HQ answers with the store's id, a credential for HQ's HTTP API (bundle
files), the NATS address and HQ's public key. All of it is kept in ``data_dir/hq/`` (0600).

The store depends on HQ for nothing it does alone: while HQ or the broker is unreachable the
link retries, the store's tables keep what HQ has not yet acknowledged, and the link catches
up, oldest first, when it can.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from laneguard.bearer import is_loopback
from laneguard.chain import HQ_STREAM, STORE_ID
from laneguard.files import private_dir, write_bytes_atomic, write_json_atomic
from laneguard.jetstream import Consumer, JetStreamLink, broker_tls
from laneguard.nats_auth import (
    STORE_CREDENTIAL_S,
    STORE_JS_API,
    BrokerUser,
    jwt_claims,
    store_consumers,
    store_inbox,
    user_nkey,
)
from laneguard.signing import load_or_make_key, public_key_from_pem, public_pem
from product_db.errors import LaneGuardError
from store_server.chain_apply import ChainApplier, fetch_from_hq
from store_server.chain_export import ChainExporter
from store_server.learning import store_signing_key
from store_server.media import MediaStore
from store_server.settings import StoreSettings

log = logging.getLogger("laneguard.server.chain")


class HqEnrolmentError(LaneGuardError, ValueError):
    """HQ refused the enrolment, or answered with something that is not an enrolment."""


@dataclass(frozen=True)
class HqEnrolment:
    store_id: str
    hq_url: str
    nats_url: str
    credential: str
    hq_public_key: str  # PEM
    # The store's broker credential (a NATS user JWT HQ signed for this store's own user key)
    # and the CA the broker's certificate is checked against; None from an HQ without them.
    nats_jwt: str | None = None
    nats_ca: str | None = None  # PEM

    @staticmethod
    def folder(data_dir: Path) -> Path:
        return data_dir / "hq"

    @classmethod
    def load(cls, data_dir: Path) -> HqEnrolment | None:
        path = cls.folder(data_dir) / "enrolment.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, data_dir: Path) -> Path:
        folder = private_dir(self.folder(data_dir))
        (folder / "hq.pub").write_text(self.hq_public_key)
        (folder / "hq.pub").chmod(0o600)
        if self.nats_ca is not None:
            write_bytes_atomic(folder / "broker-ca.pem", self.nats_ca.encode(), mode=0o600)
        return write_json_atomic(folder / "enrolment.json", asdict(self), mode=0o600)

    def key_file(self, data_dir: Path) -> Path:
        return self.folder(data_dir) / "hq.pub"


def store_broker_key(settings: StoreSettings) -> Ed25519PrivateKey:
    """The store's own key for the chain's broker (made once, 0600): it signs the broker's
    nonces, so it is never the store's signing key (a broker could choose a message as nonce)."""
    return load_or_make_key(HqEnrolment.folder(settings.data_dir) / "nats-user.key")


class BrokerCredential:
    """The store's broker credential: the user JWT HQ signed for it, good for a day
    (laneguard.nats_auth.STORE_CREDENTIAL_S), renewed from HQ's API with the store's HQ
    credential once half of it is gone and kept with the enrolment. A retired store's renewal
    is refused, so it is off the broker within a day. A store that enrolled before HQ issued
    broker credentials has none: it asks for one the same way before it first connects."""

    def __init__(self, settings: StoreSettings, enrolment: HqEnrolment) -> None:
        self.settings, self.enrolment = settings, enrolment
        self._jwt: str | None = enrolment.nats_jwt
        self._lock = threading.Lock()

    def jwt(self) -> str:
        return self._jwt or ""  # none yet: the broker refuses, and the link asks again

    def user(self) -> BrokerUser:
        inbox = store_inbox(self.enrolment.store_id)
        return BrokerUser(self.jwt, store_broker_key(self.settings), inbox)

    def renew_if_due(self, now: float | None = None) -> bool:
        """Ask HQ for a fresh credential when less than half of this one's day is left;
        whether it was renewed (a failure is logged and tried again at the next chance)."""
        with self._lock:
            if self._jwt is None:
                left = 0.0
            else:
                expires = jwt_claims(self._jwt).get("exp")
                if not expires:
                    return False
                left = float(expires) - (time.time() if now is None else now)
            if left > STORE_CREDENTIAL_S / 2:
                return False
            nats_user = user_nkey(store_broker_key(self.settings))
            try:
                reply = httpx.post(
                    f"{self.enrolment.hq_url}/api/v1/hq/broker-credential",
                    json={"nats_user": nats_user},
                    headers={"Authorization": f"Bearer {self.enrolment.credential}"},
                    timeout=10.0,
                    verify=hq_verify(self.settings),
                )
                reply.raise_for_status()
                fresh = str(reply.json()["nats_jwt"])
            except (httpx.HTTPError, ValueError, KeyError) as error:
                log.warning("renewing the broker credential at HQ failed: %s", error)
                return False
            self._jwt = fresh
            self.enrolment = dataclasses.replace(self.enrolment, nats_jwt=fresh)
            self.enrolment.save(self.settings.data_dir)
            log.info("broker credential from HQ (%.0f h were left of the last)", left / 3600)
            return True


def _broker_ca(settings: StoreSettings) -> Path | None:
    """The CA the broker's certificate must chain to: the store's setting, or the one HQ gave
    at enrolment."""
    if settings.hq_nats_ca_file is not None:
        return settings.hq_nats_ca_file
    given = HqEnrolment.folder(settings.data_dir) / "broker-ca.pem"
    return given if given.is_file() else None


def hq_verify(settings: StoreSettings) -> ssl.SSLContext | bool:
    """How HQ's HTTPS certificate is checked: against the store's ``hq_ca_file`` (a chain's
    own CA), else the system's CAs."""
    if settings.hq_ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(settings.hq_ca_file))


def check_hq_url(hq_url: str) -> None:
    """HQ is reached across networks: HTTPS, unless it is on this very computer (a demo)."""
    parts = urlsplit(hq_url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return
    raise HqEnrolmentError(
        f"HQ's address {hq_url!r} must be https:// (the store's credential and its broker "
        "credential cross the network with every request)"
    )


def enrol_with_hq(settings: StoreSettings, hq_url: str, token: str) -> HqEnrolment:
    """Spend ``token`` at HQ and keep what it answers."""
    check_hq_url(hq_url)
    key = store_signing_key(settings)
    request = {
        "token": token,
        "store_name": settings.store_name,
        "public_key": public_pem(key),
        "nats_user": user_nkey(store_broker_key(settings)),
    }
    try:
        response = httpx.post(
            f"{hq_url.rstrip('/')}/api/v1/hq/enrol",
            json=request,
            timeout=10.0,
            verify=hq_verify(settings),
        )
    except httpx.HTTPError as error:
        raise HqEnrolmentError(f"HQ at {hq_url} could not be reached: {error}") from None
    if response.status_code != 200:
        raise HqEnrolmentError(f"HQ refused the enrolment: {_detail(response)}")
    body = response.json()
    try:
        enrolment = HqEnrolment(
            store_id=str(body["store_id"]),
            hq_url=hq_url.rstrip("/"),
            nats_url=str(body["nats_url"]),
            credential=str(body["credential"]),
            hq_public_key=str(body["hq_public_key"]),
            nats_jwt=_text_or_none(body.get("nats_jwt")),
            nats_ca=_text_or_none(body.get("nats_ca")),
        )
        public_key_from_pem(enrolment.hq_public_key, "HQ's key")
        if enrolment.nats_ca is not None:
            ssl.PEM_cert_to_DER_cert(enrolment.nats_ca)
    except (KeyError, TypeError, ValueError) as error:
        raise HqEnrolmentError(f"HQ's answer is not an enrolment: {error}") from None
    if not STORE_ID.match(enrolment.store_id):
        raise HqEnrolmentError(f"HQ gave an unusable store id {enrolment.store_id!r}")
    enrolment.save(settings.data_dir)
    return enrolment


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:200]


@dataclass
class ChainLink:
    """The exporter, the applier and the JetStream link between them and HQ."""

    enrolment: HqEnrolment
    exporter: ChainExporter
    applier: ChainApplier
    link: JetStreamLink

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    def state(self) -> dict[str, Any]:
        stats = self.link.stats
        return {
            "store_id": self.enrolment.store_id,
            "connected": stats.connected,
            "published": stats.published,
            "received": stats.received,
            "refused": stats.refused,
            "last_error": stats.last_error,
            "backlog": self.exporter.backlog(),
        }


def chain_link(settings: StoreSettings, engine: Engine, media: MediaStore) -> ChainLink | None:
    """The link, when this store has enrolled with an HQ (``laneguard server hq-enrol``)."""
    enrolment = HqEnrolment.load(settings.data_dir)
    if enrolment is None:
        return None
    folder = HqEnrolment.folder(settings.data_dir)
    exporter = ChainExporter(
        engine,
        media,
        folder,
        enrolment.store_id,
        settings.store_name,
        settings.currency,
        store_signing_key(settings),
        status_every_s=settings.hq_status_s,
        summary_every_s=settings.hq_summary_s,
    )
    applier = ChainApplier(
        engine,
        settings.data_dir,
        enrolment.store_id,
        public_key_from_pem(enrolment.hq_public_key, "HQ's key"),
        enrolment.key_file(settings.data_dir),
        fetch_from_hq(enrolment.hq_url, enrolment.credential, hq_verify(settings)),
    )
    store_id = enrolment.store_id
    credential = BrokerCredential(settings, enrolment)

    async def renew(_js: Any) -> None:
        await asyncio.to_thread(credential.renew_if_due)

    link = JetStreamLink(
        enrolment.nats_url,
        f"store-{store_id}",
        exporter.pending,
        exporter.published,
        consumers=[
            Consumer(durable, HQ_STREAM, subject, applier.handle)
            for durable, subject in store_consumers(store_id)
        ],
        user=credential.user(),
        tls=broker_tls(enrolment.nats_url, _broker_ca(settings)),
        api_prefix=STORE_JS_API,  # its account imports its consumers' calls there
        maintain=renew,
        maintain_s=600.0,
        prepare=credential.renew_if_due,
    )
    return ChainLink(enrolment, exporter, applier, link)
