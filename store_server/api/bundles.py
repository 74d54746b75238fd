"""Model bundles for lanes: which one each lane should run (its rollout stage decides), and
the file itself, with HTTP range requests so an interrupted download resumes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from store_server.deps import CurrentLane, EngineDep, SettingsDep
from store_server.models import BundleRelease
from store_server.rollouts import bundle_path, desired_bundle

router = APIRouter(prefix="/api/v1", tags=["bundles"])


class DesiredBundleOut(BaseModel):
    sha256: str | None = Field(description="None: the bundle the lane shipped with")
    version: str | None
    release: int | None
    size: int | None
    url: str | None = Field(description="GET it with the lane credential; ranges supported")
    rollout_id: int | None
    final: bool = Field(description="production: the lane may raise its minimum release")


@router.get("/lane/bundle", response_model=DesiredBundleOut)
def my_bundle(
    lane_id: CurrentLane,
    engine: EngineDep,
) -> DesiredBundleOut:
    """The bundle the calling lane should run now."""
    with Session(engine) as session:
        desired = desired_bundle(session, lane_id)
        release = desired.release
        if release is None:
            return DesiredBundleOut(
                sha256=None,
                version=None,
                release=None,
                size=None,
                url=None,
                rollout_id=desired.rollout_id,
                final=desired.final,
            )
        return DesiredBundleOut(
            sha256=release.sha256,
            version=release.version,
            release=release.release,
            size=release.size,
            url=f"/api/v1/bundles/{release.sha256}",
            rollout_id=desired.rollout_id,
            final=desired.final,
        )


@router.get(
    "/bundles/{sha256}",
    response_class=FileResponse,
    responses={404: {"description": "no such bundle"}},
)
def bundle_file(
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    _lane: CurrentLane,
    engine: EngineDep,
    settings: SettingsDep,
) -> FileResponse:
    with Session(engine) as session:
        release = session.exec(select(BundleRelease).where(BundleRelease.sha256 == sha256)).first()
    if release is None or not bundle_path(settings.data_dir, release).is_file():
        raise HTTPException(404, f"no published bundle {sha256}")
    return FileResponse(
        bundle_path(settings.data_dir, release),
        media_type="application/gzip",
        filename=f"{release.version}.tar.gz",
    )
