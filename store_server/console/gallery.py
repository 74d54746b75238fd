"""Console: withdrawing a gallery entry the fast path of learning made (audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session

from store_server.auth import SignedIn, audit, check_csrf, current_user
from store_server.console.templating import DATABASE_INT_MAX
from store_server.deps import get_engine
from store_server.learning import withdraw

router = APIRouter(include_in_schema=False)


@router.post("/gallery/{entry_id}/withdraw")
def withdraw_entry(
    entry_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Take a learned gallery entry back; the lanes drop it at their next update."""
    check_csrf(user, csrf_token)
    try:
        with Session(engine) as session:
            entry = withdraw(session, entry_id)
            audit(session, user.username, "gallery.withdraw", str(entry_id), code=entry.code)
            session.commit()
    except ValueError as error:
        return Response(str(error), status_code=404)
    return RedirectResponse("/samples", status_code=303)
