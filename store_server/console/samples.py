"""Console: the training-sample browser, where a manager confirms, relabels or rejects the
crops harvested from honest transactions, and picks the product of an "of interest" crop from
the teacher's proposals with one tap; above them, the camera frames whose unsure boxes wait for
a person's Yes or No (store_server.console.frames)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from product_db.codes import InvalidCodeError, parse_code
from store_server.auth import audit
from store_server.console.frames import frames_waiting
from store_server.console.templating import DATABASE_INT_MAX, error_page, render
from store_server.deps import CurrentUser, EngineDep, FormUser
from store_server.learning import audit_sample
from store_server.models import SampleRecord
from store_server.products import describe

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
SAMPLE_REVIEWS = ("pending", "confirmed", "relabelled", "rejected")


@router.get("/samples", response_class=HTMLResponse)
def samples_page(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    review: Annotated[str, Query(max_length=12)] = "pending",
    code: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    frames_page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    query = select(SampleRecord).order_by(col(SampleRecord.id).desc())
    if review:
        query = query.where(SampleRecord.review == review)
    if code:
        query = query.where(SampleRecord.code == code.strip())
    learned = audit_sample(engine)
    with Session(engine) as session:
        rows = list(session.exec(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)))
        proposed = [str(p["code"]) for r in rows[:PAGE_SIZE] for p in r.proposals or []]
        shown = [c for r in rows[:PAGE_SIZE] for c in (r.code, r.label, r.vision_code)]
        products = describe(session, [*proposed, *shown, *(str(e["code"]) for e in learned)])
        frames = frames_waiting(session, frames_page)
    return render(
        request,
        "samples.html",
        user,
        learned=learned,
        samples=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        page=page,
        review=review,
        code=code,
        reviews=SAMPLE_REVIEWS,
        products=products,
        frames=frames,
    )


@router.post("/samples/{sample_id}/review", response_class=HTMLResponse)
def review_sample(
    sample_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    request: Request,
    user: FormUser,
    engine: EngineDep,
    action: Annotated[str, Form(max_length=12)],
    label: Annotated[str, Form(max_length=64)] = "",
    back: Annotated[str, Form(max_length=300)] = "/samples",
) -> Response:
    """Confirm the sample's label, give it another product code, or reject it."""
    if action not in ("confirm", "relabel", "reject"):
        return error_page(request, user, 422, "action must be confirm, relabel or reject")
    with Session(engine) as session:
        sample = session.get(SampleRecord, sample_id)
        if sample is None:
            return error_page(request, user, 404, f"no sample {sample_id}")
        if action == "relabel":
            try:
                sample.label = parse_code(label.strip()).key
            except InvalidCodeError as error:
                return error_page(request, user, 422, f"relabel: {error}")
            sample.review = "relabelled"
        else:
            sample.review = "confirmed" if action == "confirm" else "rejected"
            sample.label = sample.code if action == "confirm" else None
        sample.reviewed_by = user.username
        session.add(sample)
        audit(session, user.username, f"sample.{action}", str(sample_id), label=sample.label)
        session.commit()
    target = back if back.startswith("/samples") else "/samples"
    return RedirectResponse(target, status_code=303)
