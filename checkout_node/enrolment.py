"""Zero-touch enrolment: a new lane trades its one-time token for its own credential.

The credential is kept in the lane's data folder (``credential.json``, readable by the lane's
user only), so a restart never needs the token again. Enrolment happens when the uploader first
needs a credential: a lane that boots while its store server is away keeps working and enrols
as soon as the server answers.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import httpx

from laneguard.discovery import enrolment_key_id
from laneguard.files import write_json_atomic
from laneguard.signing import SigningKeyError, key_id, public_key_from_pem
from product_db.errors import LaneGuardError

CREDENTIAL_FILE = "credential.json"


class LaneEnrolmentError(LaneGuardError, RuntimeError):
    """The server refused the token, or gave a lane id other than the one configured."""


@dataclass(frozen=True)
class LaneCredential:
    lane_id: str
    credential: str
    gallery_key: str | None = None  # PEM: the store's key for signed gallery updates


def load_credential(data_dir: Path) -> LaneCredential | None:
    path = Path(data_dir) / CREDENTIAL_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return LaneCredential(data["lane_id"], data["credential"], data.get("gallery_key"))


def save_credential(data_dir: Path, credential: LaneCredential) -> Path:
    body = {
        "lane_id": credential.lane_id,
        "credential": credential.credential,
        "gallery_key": credential.gallery_key,
    }
    return write_json_atomic(Path(data_dir) / CREDENTIAL_FILE, body, mode=0o600)


def hardware_facts() -> dict[str, str | int]:
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "cpus": os.cpu_count() or 0,
        "hostname": platform.node(),
    }


def enrol(
    client: httpx.Client, token: str, data_dir: Path, expected_lane_id: str
) -> LaneCredential:
    """Present ``token``; keep and return the credential. Raises httpx errors when the server
    cannot be reached (the caller retries) and LaneEnrolmentError when it says no."""
    response = client.post("/api/v1/enrol", json={"token": token, "hardware": hardware_facts()})
    if response.status_code in (401, 403, 404, 422):
        raise LaneEnrolmentError(f"store server refused enrolment: {response.text[:300]}")
    response.raise_for_status()
    body = response.json()
    if body["lane_id"] != expected_lane_id:
        raise LaneEnrolmentError(
            f"the enrolment token is for lane {body['lane_id']!r} but this lane is configured "
            f"as {expected_lane_id!r}: set lane_id: {body['lane_id']} in its config"
        )
    gallery_key = body.get("config", {}).get("gallery_key")
    if gallery_key is not None and _key_id_of(gallery_key) is None:
        raise LaneEnrolmentError("the store's enrolment answer carries a key that is not a key")
    expected = enrolment_key_id(token)
    if expected is not None and _key_id_of(gallery_key) != expected:
        raise LaneEnrolmentError(
            f"the server at {client.base_url} is not the store that issued this token "
            f"(its key is {_key_id_of(gallery_key)}, the token names {expected})"
        )
    credential = LaneCredential(body["lane_id"], body["credential"], gallery_key)
    save_credential(data_dir, credential)
    return credential


def _key_id_of(pem: str | None) -> str | None:
    if not pem:
        return None
    try:
        return key_id(public_key_from_pem(pem, "the store's gallery key"))
    except SigningKeyError:
        return None
