"""Console: withdrawing a gallery entry the fast path of learning made (audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from store_server.auth import audit
from store_server.console.templating import DATABASE_INT_MAX, error_page
from store_server.deps import EngineDep, FormUser
from store_server.learning import withdraw

router = APIRouter(include_in_schema=False)


@router.post("/gallery/{entry_id}/withdraw")
def withdraw_entry(
    entry_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    request: Request,
    user: FormUser,
    engine: EngineDep,
) -> Response:
    """Take a learned gallery entry back; the lanes drop it at their next update."""
    try:
        with Session(engine) as session:
            entry = withdraw(session, entry_id)
            audit(session, user.username, "gallery.withdraw", str(entry_id), code=entry.code)
            session.commit()
    except ValueError as error:
        return error_page(request, user, 404, str(error))
    return RedirectResponse("/samples", status_code=303)
