"""HQ's JSON API for store servers: enrolment (a one-time token) and release files (the
store's credential). Everything else between a store and HQ travels over JetStream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hq_server.models import ChainRelease
from hq_server.releases import release_path
from hq_server.settings import HqSettings
from hq_server.stores import StoreEnrolmentError, current_store, enrol_store
from laneguard.nats_auth import USER_NKEY_PATTERN, BrokerAuthError, BrokerKeys
from laneguard.signing import public_pem
from product_db.models import utcnow
from store_server.auth import (
    audit_client,
    record_enrolment_failure,
    refuse_while_enrolment_throttled,
)
from store_server.deps import get_engine, get_settings

router = APIRouter(prefix="/api/v1/hq", tags=["hq"])


class EnrolIn(BaseModel):
    token: str = Field(min_length=8, max_length=200)
    store_name: str = Field(default="", max_length=120)
    public_key: str = Field(max_length=400, description="the store's Ed25519 key, PEM")
    nats_user: str | None = Field(
        default=None,
        pattern=USER_NKEY_PATTERN,
        description="the store's own NATS user key (an nkey): HQ signs its broker credential",
    )


class EnrolOut(BaseModel):
    store_id: str
    credential: str = Field(description="for HQ's HTTP API; shown this once")
    nats_url: str
    hq_public_key: str
    nats_jwt: str | None = Field(
        default=None, description="the store's broker credential: its own subjects only"
    )
    nats_ca: str | None = Field(default=None, description="the broker's CA certificate, PEM")


@router.post("/enrol", response_model=EnrolOut)
def enrol(
    body: EnrolIn,
    request: Request,
    engine: Annotated[Engine, Depends(get_engine)],
    settings: Annotated[HqSettings, Depends(get_settings)],
) -> EnrolOut:
    """Anyone holding a one-time store enrolment token (made by an HQ IT admin). Wrong
    tokens are audited and counted by address, as at a store (429 with Retry-After)."""
    address = audit_client.get()
    now = utcnow()
    with Session(engine) as session:
        refuse_while_enrolment_throttled(session, address, now)
        try:
            enrolled = enrol_store(session, body.token, body.store_name, body.public_key)
            broker: BrokerKeys = request.app.state.broker
            nats_jwt = (
                broker.store_user(enrolled.store_id, body.nats_user)
                if body.nats_user is not None
                else None
            )
        except (StoreEnrolmentError, BrokerAuthError) as error:
            session.rollback()
            record_enrolment_failure(session, "store:?", address, now)
            session.commit()
            raise HTTPException(403, str(error)) from None
        session.commit()
    request.app.state.link.maintain_now()  # the store's consumers, before it first connects
    return EnrolOut(
        store_id=enrolled.store_id,
        credential=enrolled.credential,
        nats_url=settings.nats_url_for_stores(),
        hq_public_key=public_pem(request.app.state.hq_key),
        nats_jwt=nats_jwt,
        nats_ca=settings.nats_ca_file.read_text("utf-8") if settings.nats_ca_file else None,
    )


class BrokerCredentialIn(BaseModel):
    nats_user: str = Field(pattern=USER_NKEY_PATTERN, description="the store's NATS user key")


class BrokerCredentialOut(BaseModel):
    nats_jwt: str = Field(description="a day's broker credential: the store's own subjects")


@router.post("/broker-credential", response_model=BrokerCredentialOut)
def broker_credential(
    body: BrokerCredentialIn,
    request: Request,
    store_id: Annotated[str, Depends(current_store)],
) -> BrokerCredentialOut:
    """An enrolled store (its credential): its broker credential renewed. A retired store's
    HQ credential is refused here, so its last one runs out within a day."""
    broker: BrokerKeys = request.app.state.broker
    try:
        return BrokerCredentialOut(nats_jwt=broker.store_user(store_id, body.nats_user))
    except BrokerAuthError as error:
        raise HTTPException(422, str(error)) from None


@router.get("/bundles/{sha256}", response_class=FileResponse)
def release_file(
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    _store: Annotated[str, Depends(current_store)],
    engine: Annotated[Engine, Depends(get_engine)],
    settings: Annotated[HqSettings, Depends(get_settings)],
) -> FileResponse:
    """An enrolled store (its credential): a released bundle's file, ranges supported."""
    with Session(engine) as session:
        release = session.exec(select(ChainRelease).where(ChainRelease.sha256 == sha256)).first()
    path = release_path(settings.data_dir, sha256)
    if release is None or not path.is_file():
        raise HTTPException(404, f"no release {sha256}")
    return FileResponse(path, media_type="application/gzip", filename=f"{release.version}.tar.gz")
