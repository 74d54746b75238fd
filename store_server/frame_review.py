"""What a detection frame's "of interest" boxes become: the rules the frame teacher and the
Samples page's one-tap Yes / No share, so a frame's review means the same whoever decided.

A lane sends boxes it was unsure of (between its T2 and T1, or a product track no scan
accounted for) as ``kind`` "of_interest": nobody knows yet whether an object is there. Each
such box gets a ``verdict``: "yes" (an object of the box's label is there: the detector may
learn it as a box) or "no" (nothing of that label: background), and ``by``, who said so
("teacher (<bundle version>)" or a console user's name). The frame's ``review`` follows:

    pending ──frame teacher──► teacher        every box decided by the teacher
                         └───► needs_review   some left to a person ──last one──► reviewed

Boxes are JSON on the row, so a decision writes a new list (the database sees a change only
when the column is assigned anew) and leaves every other key of every box as the lane sent it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from product_db.errors import LaneGuardError
from store_server.models import DetectionFrame

OF_INTEREST = "of_interest"
# A cashier's "not an item" is a claim, not a label: a box a till user could make the detector
# unlearn (and so miss what they let through) is decided by the teacher or a person first.
DECIDED_KINDS = (OF_INTEREST, "not_an_item")
Verdict = Literal["yes", "no"]
VERDICTS: tuple[Verdict, ...] = ("yes", "no")
NEEDS_REVIEW = "needs_review"


class FrameReviewError(LaneGuardError, ValueError):
    """A decision that cannot be taken as asked; ``status`` is the HTTP status a console
    answers with (404: no such box, 409: decided already or not waiting, 422: not a box one
    decides on, or not a verdict)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def of_interest(boxes: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of the boxes to decide: those the lane was unsure of, and those a cashier
    called "not an item"."""
    return [i for i, box in enumerate(boxes) if box.get("kind") in DECIDED_KINDS]


def undecided(boxes: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of the "of interest" boxes nobody has given a verdict yet."""
    return [i for i in of_interest(boxes) if boxes[i].get("verdict") not in VERDICTS]


def with_verdicts(
    boxes: Sequence[dict[str, Any]], verdicts: dict[int, tuple[Verdict, str]]
) -> list[dict[str, Any]]:
    """A copy of ``boxes`` with ``verdicts`` (index -> (verdict, by)) written in."""
    out = [dict(box) for box in boxes]
    for index, (verdict, by) in verdicts.items():
        out[index].update(verdict=verdict, by=by[:64])
    return out


def review_after_teacher(boxes: Sequence[dict[str, Any]]) -> str:
    return "teacher" if not undecided(boxes) else NEEDS_REVIEW


def decide_box(frame: DetectionFrame, index: int, verdict: str, by: str) -> None:
    """A person's Yes or No on box ``index`` of ``frame`` (the caller commits and audits);
    the frame becomes "reviewed" with its last undecided box. Refused, changing nothing, for a
    frame not waiting for a person, a box that is not there, not "of interest" or decided
    already, and a verdict that is neither yes nor no."""
    if verdict not in VERDICTS:
        raise FrameReviewError(422, f"verdict must be yes or no, not {verdict[:20]!r}")
    given: Verdict = "yes" if verdict == "yes" else "no"
    if frame.review != NEEDS_REVIEW:
        raise FrameReviewError(
            409, f"frame {frame.id} is not waiting for a person (its review is {frame.review})"
        )
    boxes = frame.boxes
    if not 0 <= index < len(boxes):
        raise FrameReviewError(
            404, f"frame {frame.id} has no box {index} (it has boxes 0 to {len(boxes) - 1})"
        )
    box = boxes[index]
    if box.get("kind") != OF_INTEREST:
        raise FrameReviewError(
            422,
            f"box {index} of frame {frame.id} is a {box.get('kind')} box, not one the lane "
            "was unsure of: only those are decided here",
        )
    if box.get("verdict") in VERDICTS:
        raise FrameReviewError(
            409,
            f"box {index} of frame {frame.id} is decided already: {box['verdict']} by "
            f"{box.get('by')}",
        )
    frame.boxes = with_verdicts(boxes, {index: (given, by)})
    if not undecided(frame.boxes):
        frame.review = "reviewed"
