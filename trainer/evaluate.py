"""Recognition evaluation with the ONNX embedder: closed set, new products, open set.

No torch here: `laneguard eval recognition` runs with onnxruntime alone, on any folders of
class sub-folders (for example the real produce photos split into reference and query).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from laneguard.embedding import Embedder
from laneguard.gallery import Gallery
from trainer.embedder import embed_paths, image_folder


def _embed_folders(embedder: Embedder, folders: dict[str, list[Path]]) -> dict[str, np.ndarray]:
    return {code: embed_paths(embedder, paths) for code, paths in folders.items()}


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


def evaluate_recognition(model: Path, reference: Path, query: Path) -> dict[str, Any]:
    """Gallery from ``reference/<class>/*``, classify ``query/<class>/*``; JSON-able result."""
    embedder = Embedder(model)
    from laneguard.bundle import sha256_file

    refs = image_folder(reference)
    qs = image_folder(query)
    reference_vectors = _embed_folders(embedder, refs)
    start = time.perf_counter()
    query_vectors = _embed_folders(embedder, qs)
    n_query = sum(len(v) for v in query_vectors.values())
    gallery = Gallery.build(reference_vectors, sha256_file(model))
    result = recognition_metrics(gallery, query_vectors)
    elapsed = time.perf_counter() - start
    unknown = sorted(set(qs) - set(refs))
    return {
        "top1": result["top1"],
        "top5": result["top5"],
        "per_class": result["per_class"],
        "n_reference": sum(len(v) for v in refs.values()),
        "n_query": result["n_query"],
        "n_classes": len(refs),
        "query_classes_without_reference": unknown,
        "ms_per_image": round(1000 * elapsed / max(n_query, 1), 2),
        "embedder": str(model),
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
