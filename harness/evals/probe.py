"""`laneguard eval probe`: how far an embedder's vectors can take recognition at all.

The lane names an item by its nearest gallery reference (`eval recognition`). A linear
classifier trained on every labelled training vector is close to the best any rule on those
vectors can do with that data, so its top-1 is a ceiling for gallery rules: where even the probe
falls short of a target, no change to the gallery, its thinning or its thresholds reaches it,
and only a better embedder will. Reported beside it: the plain nearest neighbour over every
training vector (no thinning to k-means centres, unlike the gallery).

The probe is multinomial logistic regression on the L2-normalised vectors, fitted by full-batch
gradient descent in numpy (no torch: it runs wherever the lane's models run). Its weight decay
is chosen on a validation folder when one is given, else on every fifth training image of each
class held out, and the probe is then refitted on all the training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laneguard.embedding import Embedder
from product_db.errors import LaneGuardError
from trainer.embedder import embed_paths, image_folder

WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)
# Cosine similarities lie in [-1, 1]; the probe's logits are this many times the vectors'
# products so that a confident softmax is reachable without huge weights.
LOGIT_SCALE = 10.0
STEPS = 600
LEARNING_RATE = 0.5


class ProbeError(LaneGuardError, ValueError):
    """Folders the probe cannot be trained or scored on; the message names what is missing."""


@dataclass(frozen=True)
class LabelledVectors:
    vectors: np.ndarray  # (N, D) L2-normalised
    labels: np.ndarray  # (N,) index into the class list


def _with_bias(vectors: np.ndarray) -> np.ndarray:
    """The probe's inputs: scaled vectors and a constant column for the bias."""
    return np.hstack([LOGIT_SCALE * vectors, np.ones((len(vectors), 1))])


def fit_probe(data: LabelledVectors, classes: int, weight_decay: float) -> np.ndarray:
    """Weights (D + 1, C) of the softmax classifier minimising cross-entropy plus
    ``weight_decay`` times the squared weights (not the bias)."""
    x = _with_bias(data.vectors)
    onehot = np.eye(classes)[data.labels]
    weights = np.zeros((x.shape[1], classes))
    velocity = np.zeros_like(weights)
    decay_mask = np.ones_like(weights)
    decay_mask[-1] = 0.0
    for _ in range(STEPS):
        logits = x @ weights
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        gradient = x.T @ (probs - onehot) / len(x) + 2 * weight_decay * weights * decay_mask
        velocity = 0.9 * velocity - LEARNING_RATE / LOGIT_SCALE**2 * gradient
        weights += velocity
    return weights


def probe_top1(weights: np.ndarray, data: LabelledVectors) -> float:
    return float(np.mean((_with_bias(data.vectors) @ weights).argmax(axis=1) == data.labels))


def nearest_neighbour_top1(train: LabelledVectors, query: LabelledVectors) -> float:
    nearest = (query.vectors @ train.vectors.T).argmax(axis=1)
    return float(np.mean(train.labels[nearest] == query.labels))


@dataclass(frozen=True)
class _Embedded(LabelledVectors):
    positions: np.ndarray  # (N,) each image's place in its class folder's sorted listing

    def where(self, keep: np.ndarray) -> LabelledVectors:
        return LabelledVectors(self.vectors[keep], self.labels[keep])


def _embed(embedder: Embedder, folders: dict[str, list[Path]], classes: list[str]) -> _Embedded:
    paths = {c: folders.get(c, []) for c in classes}
    parts = [embed_paths(embedder, paths[c]) for c in classes if paths[c]]
    labels = [i for i, c in enumerate(classes) for _ in paths[c]]
    positions = [k for c in classes for k in range(len(paths[c]))]
    vectors = np.concatenate(parts) if parts else np.zeros((0, 1))
    return _Embedded(vectors, np.array(labels, np.int64), np.array(positions, np.int64))


def evaluate_probe(
    model: Path, train: Path, query: Path, val: Path | None = None
) -> dict[str, Any]:
    """Train a linear probe on ``train/<class>/*`` vectors, score ``query/<class>/*``."""
    train_folders = image_folder(train)
    query_folders = image_folder(query)
    classes = sorted(c for c, paths in train_folders.items() if paths)
    if not classes:
        raise ProbeError(f"{train}: no class sub-folder with images to train the probe on")
    unseen = sorted(c for c, paths in query_folders.items() if paths and c not in classes)
    if unseen:
        raise ProbeError(
            f"query classes with no training images (a probe cannot name them): {', '.join(unseen)}"
        )
    embedder = Embedder(model)
    train_data = _embed(embedder, train_folders, classes)
    if val is not None:
        fit_data: LabelledVectors = train_data
        held_data: LabelledVectors = _embed(embedder, image_folder(val), classes)
        chosen_on = "val"
    else:
        held_out = train_data.positions % 5 == 4
        fit_data, held_data = train_data.where(~held_out), train_data.where(held_out)
        chosen_on = "every fifth training image"
    if len(held_data.labels) == 0:
        raise ProbeError("no images to choose the weight decay on (give --val, or more images)")
    by_decay = {
        decay: probe_top1(fit_probe(fit_data, len(classes), decay), held_data)
        for decay in WEIGHT_DECAYS
    }
    decay = max(WEIGHT_DECAYS, key=lambda d: (by_decay[d], -d))
    query_data = _embed(embedder, query_folders, classes)
    if len(query_data.labels) == 0:
        raise ProbeError(f"{query}: no images to score")
    weights = fit_probe(train_data, len(classes), decay)
    return {
        "probe_top1": round(probe_top1(weights, query_data), 4),
        "nearest_neighbour_top1": round(nearest_neighbour_top1(train_data, query_data), 4),
        "weight_decay": decay,
        "weight_decay_chosen_on": chosen_on,
        "held_out_top1_by_weight_decay": {str(d): round(v, 4) for d, v in by_decay.items()},
        "n_train": len(train_data.labels),
        "n_query": len(query_data.labels),
        "n_classes": len(classes),
        "embedder": str(model),
    }
