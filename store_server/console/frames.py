"""Console: the camera frames the frame teacher left to a person (store_server.frame_teacher),
on the Samples page: each frame with its undecided "of interest" boxes drawn over it, and a
one-tap Yes / No per box (audited). The rules of a decision are store_server.frame_review's.

Any signed-in user decides, as on the rest of the Samples page (managers and IT admins: the
console has no other roles)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from laneguard.wire import MAX_FRAME_BOXES
from store_server.auth import audit
from store_server.console.templating import DATABASE_INT_MAX, error_page
from store_server.deps import EngineDep, FormUser
from store_server.frame_review import NEEDS_REVIEW, FrameReviewError, decide_box, of_interest
from store_server.models import DetectionFrame

router = APIRouter(include_in_schema=False)
FRAMES_PER_PAGE = 20  # a frame is a whole picture with its forms: fewer than the crops' 50
# How a manager reads a box's label in the question "is there a ... in box 2?".
LABEL_WORDS = {
    "product": "product",
    "non_merchandise": "bag, phone or other non-merchandise",
    "hand": "hand",
}


@dataclass(frozen=True)
class BoxView:
    """An "of interest" box as the page draws it: in the frame's pixels (the picture's SVG
    overlay has the frame's size as its viewBox, so it scales with the picture)."""

    index: int  # in the frame's boxes: what the form posts
    number: int  # 1, 2, ... among the frame's "of interest" boxes: what the person reads
    label: str
    words: str
    x: float
    y: float
    width: float
    height: float
    lane_score: float
    teacher_score: float | None
    verdict: str | None
    by: str | None


@dataclass(frozen=True)
class FrameView:
    id: int
    lane_id: str
    transaction_id: str
    captured_at: datetime
    image: str
    width: int
    height: int
    boxes: list[BoxView]

    @property
    def undecided(self) -> list[BoxView]:
        return [b for b in self.boxes if b.verdict is None]

    @property
    def decided(self) -> list[BoxView]:
        return [b for b in self.boxes if b.verdict is not None]


def _box_view(index: int, number: int, box: dict[str, Any]) -> BoxView:
    x1, y1, x2, y2 = (float(v) for v in box["box"])
    label = str(box.get("label"))
    verdict = box.get("verdict")
    teacher = box.get("teacher_score")
    return BoxView(
        index=index,
        number=number,
        label=label,
        words=LABEL_WORDS.get(label, label.replace("_", " ")),
        x=x1,
        y=y1,
        width=max(x2 - x1, 0.0),
        height=max(y2 - y1, 0.0),
        lane_score=float(box.get("score") or 0.0),
        teacher_score=float(teacher) if isinstance(teacher, int | float) else None,
        verdict=str(verdict) if verdict in ("yes", "no") else None,
        by=str(box["by"]) if box.get("by") else None,
    )


def frame_view(frame: DetectionFrame) -> FrameView:
    assert frame.id is not None
    boxes = [
        _box_view(index, number, frame.boxes[index])
        for number, index in enumerate(of_interest(frame.boxes), start=1)
    ]
    return FrameView(
        frame.id,
        frame.lane_id,
        frame.transaction_id,
        frame.captured_at,
        frame.image,
        frame.width,
        frame.height,
        boxes,
    )


@dataclass(frozen=True)
class FramesPage:
    frames: list[FrameView]
    waiting: int  # frames waiting for a person, all pages
    page: int
    has_next: bool


def frames_waiting(session: Session, page: int) -> FramesPage:
    """One page of the frames waiting for a person, newest first."""
    rows = list(
        session.exec(
            select(DetectionFrame)
            .where(DetectionFrame.review == NEEDS_REVIEW)
            .order_by(col(DetectionFrame.id).desc())
            .offset((page - 1) * FRAMES_PER_PAGE)
            .limit(FRAMES_PER_PAGE + 1)
        )
    )
    waiting = session.exec(
        select(func.count())
        .select_from(DetectionFrame)
        .where(DetectionFrame.review == NEEDS_REVIEW)
    ).one()
    return FramesPage(
        [frame_view(f) for f in rows[:FRAMES_PER_PAGE]],
        int(waiting),
        page,
        len(rows) > FRAMES_PER_PAGE,
    )


@router.post("/samples/frames/{frame_id}/boxes/{index}")
def decide_frame_box(
    frame_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    index: Annotated[int, PathParam(ge=0, le=MAX_FRAME_BOXES)],
    request: Request,
    user: FormUser,
    engine: EngineDep,
    verdict: Annotated[str, Form(max_length=12)],
    back: Annotated[str, Form(max_length=300)] = "/samples",
) -> Response:
    """A person's Yes (an object of the box's label is there) or No (nothing is) on one box
    the frame teacher left undecided."""
    with Session(engine) as session:
        frame = session.get(DetectionFrame, frame_id, with_for_update=True)
        if frame is None:
            return error_page(request, user, 404, f"no camera frame {frame_id}")
        try:
            decide_box(frame, index, verdict, user.username)
        except FrameReviewError as error:
            return error_page(request, user, error.status, str(error))
        label = frame.boxes[index].get("label")
        session.add(frame)
        audit(
            session,
            user.username,
            "frame.box_decided",
            f"frame {frame_id} box {index}",
            verdict=verdict,
            label=label,
            lane=frame.lane_id,
            reviewed=frame.review == "reviewed",
        )
        session.commit()
    target = back if back.startswith("/samples") else "/samples"
    return RedirectResponse(target, status_code=303)
