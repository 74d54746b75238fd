"""`laneguard eval recognition`: the ONNX embedder on folders of class sub-folders (for example
the real produce photos split into reference and query): a gallery from one, top-1 and top-5
over the other. Its command line and JSON are a contract: outside scorers run it on their own
photos.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from laneguard.bundle import sha256_file
from laneguard.embedding import Embedder
from laneguard.gallery import Gallery
from trainer.embedder import embed_paths, image_folder
from trainer.evaluate import recognition_metrics


def _embed_folders(embedder: Embedder, folders: dict[str, list[Path]]) -> dict[str, np.ndarray]:
    return {code: embed_paths(embedder, paths) for code, paths in folders.items()}


def evaluate_recognition(model: Path, reference: Path, query: Path) -> dict[str, Any]:
    """Gallery from ``reference/<class>/*``, classify ``query/<class>/*``; JSON-able result."""
    embedder = Embedder(model)
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
