"""The gallery: reference vectors per product code, and nearest-neighbour identification.

A product is recognised by comparing an item's embedding with references of every known code;
several references per code cover packaging versions and views. A new product or packaging
needs no retraining: embed a few crops, add them, and the lane recognises it. The gallery file
names the embedder (sha256 of its ONNX file) it belongs to, because vectors from another
embedder are meaningless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from product_db.errors import LaneGuardError


class GalleryError(LaneGuardError, ValueError):
    """A gallery file that is unreadable or belongs to another embedder."""


@dataclass(frozen=True, slots=True)
class Match:
    code: str
    score: float  # cosine similarity, -1..1


@dataclass
class Gallery:
    codes: list[str]  # one entry per class
    vectors: np.ndarray  # (M, D) L2-normalised
    labels: np.ndarray  # (M,) index into codes
    embedder_sha256: str
    version: str = "0"

    @classmethod
    def build(
        cls,
        references: dict[str, np.ndarray],
        embedder_sha256: str,
        max_per_code: int = 16,
        version: str = "0",
    ) -> Gallery:
        """References per code, thinned to at most ``max_per_code`` k-means centres each."""
        codes = sorted(references)
        vectors, labels = [], []
        for index, code in enumerate(codes):
            refs = references[code]
            if len(refs) == 0:
                continue
            kept = refs if len(refs) <= max_per_code else _kmeans_centres(refs, max_per_code)
            vectors.append(kept)
            labels.extend([index] * len(kept))
        if not vectors:
            raise GalleryError("a gallery needs at least one reference vector")
        stacked = np.concatenate(vectors).astype(np.float32)
        stacked /= np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)
        return cls(codes, stacked, np.asarray(labels, np.int32), embedder_sha256, version)

    def class_scores(self, queries: np.ndarray) -> np.ndarray:
        """(N, C): best cosine similarity of each query to each code's references."""
        sims = queries @ self.vectors.T
        scores = np.full((len(queries), len(self.codes)), -1.0, np.float32)
        for index in range(len(self.codes)):
            members = self.labels == index
            if members.any():
                scores[:, index] = sims[:, members].max(axis=1)
        return scores

    def identify(self, queries: np.ndarray, k: int = 5) -> list[list[Match]]:
        """Top-k codes per query, best first."""
        scores = self.class_scores(queries)
        k = min(k, len(self.codes))
        top = np.argsort(-scores, axis=1)[:, :k]
        return [
            [Match(self.codes[j], float(scores[i, j])) for j in row] for i, row in enumerate(top)
        ]

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "codes": self.codes,
            "embedder_sha256": self.embedder_sha256,
            "version": self.version,
            "dim": int(self.vectors.shape[1]),
        }
        with out.open("wb") as handle:
            np.savez_compressed(
                handle,
                vectors=self.vectors,
                labels=self.labels,
                meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
            )
        return out

    @classmethod
    def load(cls, path: str | Path, expect_embedder_sha256: str | None = None) -> Gallery:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                gallery = cls(
                    meta["codes"],
                    data["vectors"],
                    data["labels"],
                    meta["embedder_sha256"],
                    meta.get("version", "0"),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise GalleryError(f"{path}: not a LaneGuard gallery ({exc})") from None
        if expect_embedder_sha256 and gallery.embedder_sha256 != expect_embedder_sha256:
            raise GalleryError(
                f"{path}: built for embedder {gallery.embedder_sha256[:12]}, "
                f"not {expect_embedder_sha256[:12]}"
            )
        return gallery


def _kmeans_centres(vectors: np.ndarray, k: int, iterations: int = 15) -> np.ndarray:
    """Spherical k-means, deterministic initialisation (farthest-point)."""
    centres = [vectors[0]]
    for _ in range(1, k):
        sims = np.max(vectors @ np.stack(centres).T, axis=1)
        centres.append(vectors[int(np.argmin(sims))])
    c = np.stack(centres)
    for _ in range(iterations):
        assign = np.argmax(vectors @ c.T, axis=1)
        for j in range(k):
            members = vectors[assign == j]
            if len(members):
                mean = members.mean(axis=0)
                c[j] = mean / max(np.linalg.norm(mean), 1e-12)
    return c.astype(np.float32)
