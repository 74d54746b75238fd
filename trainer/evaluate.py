"""Recognition metrics over embedded crops: closed-set top-1/top-5 and open-set thresholds.

The bootstrap recipe and the slow path's gate score models with these; the folder-based
`laneguard eval recognition` (harness.evals.recognition) reports them too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from laneguard.gallery import Gallery


def recognition_metrics(gallery: Gallery, queries: dict[str, np.ndarray]) -> dict[str, Any]:
    """top-1 / top-5 over all queries, and top-1 per class (only classes in the gallery)."""
    per_class: dict[str, float] = {}
    hits1 = hits5 = total = 0
    for code, vectors in sorted(queries.items()):
        if len(vectors) == 0:
            continue
        matches = gallery.identify(vectors, k=5)
        top1 = sum(1 for m in matches if m[0].code == code)
        top5 = sum(1 for m in matches if code in {x.code for x in m})
        per_class[code] = round(top1 / len(vectors), 4)
        hits1, hits5, total = hits1 + top1, hits5 + top5, total + len(vectors)
    return {
        "top1": round(hits1 / total, 4) if total else 0.0,
        "top5": round(hits5 / total, 4) if total else 0.0,
        "per_class": per_class,
        "n_query": total,
    }


def open_set_thresholds(
    gallery: Gallery,
    known: dict[str, np.ndarray],
    unknown: list[np.ndarray],
    fars: tuple[float, ...] = (0.01, 0.05, 0.10),
) -> dict[str, Any]:
    """Thresholds on the best similarity that let through a chosen share of unknown items.

    For each false-accept rate: the threshold, and how known items fare at it (accepted share,
    and accepted-and-correct share).
    """
    unknown_vectors = (
        np.concatenate(unknown) if unknown else np.zeros((0, gallery.vectors.shape[1]))
    )
    unknown_best = (
        gallery.class_scores(unknown_vectors).max(axis=1) if len(unknown_vectors) else np.zeros(0)
    )
    known_best, known_correct = [], []
    for code, vectors in known.items():
        if len(vectors) == 0 or code not in gallery.codes:
            continue
        scores = gallery.class_scores(vectors)
        known_best.extend(scores.max(axis=1))
        known_correct.extend(np.array(gallery.codes)[scores.argmax(axis=1)] == code)
    kb, kc = np.array(known_best), np.array(known_correct, bool)
    out: dict[str, Any] = {"n_unknown": len(unknown_best), "n_known": len(kb)}
    for far in fars:
        threshold = float(np.quantile(unknown_best, 1 - far)) if len(unknown_best) else 0.5
        accepted = kb >= threshold
        out[f"far_{far:g}"] = {
            "threshold": round(threshold, 4),
            "known_accepted": round(float(accepted.mean()), 4) if len(kb) else 0.0,
            "known_accepted_correct": round(float((accepted & kc).mean()), 4) if len(kb) else 0.0,
        }
    return out
