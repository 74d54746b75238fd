"""Drawing what the lane saw: zones, tracks with ids, counted items with their codes."""

from __future__ import annotations

import cv2
import numpy as np

from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import HAND, NON_MERCHANDISE, CountedItem, FrameResult

COLOURS = {"product": (60, 220, 60), HAND: (230, 160, 40), NON_MERCHANDISE: (40, 40, 230)}
BAND_COLOURS = {"trusted": (60, 220, 60), "of_interest": (0, 200, 255), "unknown": (0, 0, 255)}


def annotate(
    frame: np.ndarray,
    result: FrameResult,
    zones: LaneZones,
    counted: dict[int, CountedItem],
    total: int,
) -> np.ndarray:
    out = frame.copy()
    for polygon, colour, name in (
        (zones.scan_area, (255, 200, 0), "scan"),
        (zones.bagging_area, (200, 0, 255), "bagging"),
    ):
        points = np.asarray(polygon, np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [points], True, colour, 1, cv2.LINE_AA)
        cv2.putText(out, name, tuple(points[0, 0] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    for cls, tracks in result.others.items():
        for track in tracks:
            x1, y1, x2, y2 = track.box.astype(int)
            cv2.rectangle(out, (x1, y1), (x2, y2), COLOURS[cls], 1)
    for track in result.products:
        x1, y1, x2, y2 = track.box.astype(int)
        item = counted.get(track.track_id)
        colour = BAND_COLOURS[item.band] if item else COLOURS["product"]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        label = f"#{track.track_id}"
        if item is not None:
            label += f" {item.code or 'unknown'}"
        cv2.putText(
            out,
            label,
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            colour,
            1,
            cv2.LINE_AA,
        )
    cv2.putText(
        out,
        f"items: {total}",
        (10, 22),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.7,
        (255, 255, 255),
        2,
        cv2.LINE_AA,
    )
    return out
