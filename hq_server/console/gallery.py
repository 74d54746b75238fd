"""Console: gallery entries one store learned, held until a second store agrees or a person
confirms them here (hq_server.gallery_release), with the crop the store pooled for each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hq_server.gallery_release import GalleryReleaseError, confirm, held_entries
from hq_server.models import ChainGalleryEntry, PooledSample
from store_server.auth import SignedIn, check_csrf, current_user, require_admin
from store_server.console.templating import DATABASE_INT_MAX, render
from store_server.deps import get_engine

router = APIRouter(include_in_schema=False)


def _pooled_crop(session: Session, entry: ChainGalleryEntry) -> PooledSample | None:
    """The crop the store pooled from the transaction the entry was learned in."""
    return session.exec(
        select(PooledSample)
        .where(
            PooledSample.store_id == entry.store_id,
            PooledSample.transaction_id == entry.transaction_id,
            PooledSample.code == entry.code,
        )
        .order_by(col(PooledSample.id))
    ).first()


@router.get("/gallery", response_class=HTMLResponse)
def gallery_page(
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> Response:
    """Any signed-in HQ user sees what is held; IT admins confirm."""
    with Session(engine) as session:
        held = held_entries(session)
        pictured = {e.id: _pooled_crop(session, e) is not None for e in held}
        released = list(
            session.exec(
                select(ChainGalleryEntry)
                .where(col(ChainGalleryEntry.released_at).is_not(None))
                .where(col(ChainGalleryEntry.withdraws).is_(None))
                .order_by(col(ChainGalleryEntry.released_at).desc())
                .limit(50)
            )
        )
    return render(request, "gallery.html", user, held=held, pictured=pictured, released=released)


@router.get("/gallery/{entry_id}/picture")
def entry_picture(
    entry_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    request: Request,
    _user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> Response:
    """Any signed-in HQ user: the crop behind an entry, to judge it before confirming."""
    with Session(engine) as session:
        entry = session.get(ChainGalleryEntry, entry_id)
        sample = _pooled_crop(session, entry) if entry is not None else None
    if sample is None:
        return Response(f"no picture for entry {entry_id}", status_code=404)
    return FileResponse(request.app.state.media.path(sample.image), media_type="image/jpeg")


@router.post("/gallery/{entry_id}/confirm")
def confirm_entry(
    entry_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    request: Request,
    user: Annotated[SignedIn, Depends(require_admin)],
    engine: Annotated[Engine, Depends(get_engine)],
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """IT admins only: send a held entry to every store (audited)."""
    check_csrf(user, csrf_token)
    with Session(engine) as session:
        try:
            confirm(session, request.app.state.outbox, entry_id, user.username)
        except GalleryReleaseError as error:
            return Response(str(error), status_code=404)
        session.commit()
    request.app.state.link.wake()
    return RedirectResponse("/gallery", status_code=303)
