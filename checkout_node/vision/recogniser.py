"""Recognition per track: keep the sharpest few crops, embed them once, vote, identify.

The detector runs on every frame; the embedder does not. While an item crosses the lane the
recogniser keeps its K sharpest crops (variance of the Laplacian, a cheap focus measure), and
when the item counts it embeds those K crops, averages the vectors and looks the result up in
the gallery. Confidence bands: at or above T1 the identity is trusted; between T2 and T1 the
item is counted but its identity is "of interest" (its crop goes to the store server for a
second opinion); below T2 it is an unknown product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from laneguard.embedding import Embedder, l2_normalise
from laneguard.gallery import Gallery

Band = Literal["trusted", "of_interest", "unknown"]
CANDIDATES = 10  # gallery codes kept per identified track


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian on a small grey copy: higher is sharper."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    if max(grey.shape) > 96:
        factor = 96 / max(grey.shape)
        grey = cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


@dataclass
class _Candidates:
    crops: list[tuple[float, np.ndarray, np.ndarray]] = field(default_factory=list)
    frames_seen: int = 0


@dataclass(frozen=True, slots=True)
class Identity:
    code: str | None  # None: unknown product
    score: float
    band: Band
    runner_up: str | None
    crop: np.ndarray  # the sharpest crop (evidence)
    box: np.ndarray  # its box in the frame where it was cut
    # The nearest gallery codes with their similarity, best first: reconciliation asks how
    # plausible the scanned code is, not only whether it is the best guess.
    candidates: tuple[tuple[str, float], ...] = ()


class TrackRecogniser:
    """Collects crops per track while it is visible, identifies a track on demand."""

    def __init__(
        self,
        embedder: Embedder,
        gallery: Gallery,
        t1: float,
        t2: float,
        keep: int = 3,
        every: int = 2,
        min_side: int = 24,
    ) -> None:
        self.embedder = embedder
        self.gallery = gallery
        self.t1, self.t2 = t1, t2
        self.keep = keep
        self.every = every  # look at a track's crop every n-th frame it is detected
        self.min_side = min_side
        self.candidates: dict[int, _Candidates] = {}
        self.embeds = 0

    def observe(self, frame: np.ndarray, track_id: int, box: np.ndarray) -> None:
        """Offer this frame's crop of a track; kept if it is among the sharpest."""
        entry = self.candidates.setdefault(track_id, _Candidates())
        entry.frames_seen += 1
        if entry.frames_seen % self.every != 1 and self.every > 1 and entry.crops:
            return
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        if min(x2 - x1, y2 - y1) < self.min_side:
            return
        crop = frame[max(0, y1) : y2, max(0, x1) : x2]
        if crop.size == 0:
            return
        score = sharpness(crop)
        crops = entry.crops
        if len(crops) < self.keep or score > crops[-1][0]:
            # A new list assigned whole: a pick list asked for from another thread copies the
            # old one or the new one, never one being sorted (which reads as empty meanwhile).
            entry.crops = sorted([*crops, (score, crop.copy(), box.copy())], key=lambda c: -c[0])[
                : self.keep
            ]

    def kept(self, track_id: int) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """A copy of the track's kept (sharpness, crop, box), sharpest first: what identifying
        it needs, safe to hand to another thread while this one keeps observing."""
        entry = self.candidates.get(track_id)
        return list(entry.crops) if entry is not None else []

    def identify(self, kept: list[tuple[float, np.ndarray, np.ndarray]]) -> Identity | None:
        """Embed crops taken with ``kept``, average, and look up; touches no per-track state.
        None when no usable crop was seen."""
        if not kept:
            return None
        vectors = self.embedder.embed([c for _, c, _ in kept])
        self.embeds += len(vectors)
        mean = l2_normalise(vectors.mean(axis=0, keepdims=True))
        matches = self.gallery.identify(mean, k=CANDIDATES)[0]
        best = matches[0]
        band: Band = (
            "trusted"
            if best.score >= self.t1
            else ("of_interest" if best.score >= self.t2 else "unknown")
        )
        _, crop, box = kept[0]
        return Identity(
            code=best.code if band != "unknown" else None,
            score=best.score,
            band=band,
            runner_up=matches[1].code if len(matches) > 1 else None,
            crop=crop,
            box=box,
            candidates=tuple((m.code, round(float(m.score), 4)) for m in matches),
        )

    def forget(self, track_id: int) -> None:
        self.candidates.pop(track_id, None)
