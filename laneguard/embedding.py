"""Item crops to embedding vectors with an ONNX embedder: the same code on lane, server, trainer.

Preprocessing lives here, next to the session, so training (torch) and inference (onnxruntime)
can never drift apart: the trainer feeds its network through :func:`preprocess` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

DEFAULT_INPUT_SIZE = 112
MEAN = np.array([0.5, 0.5, 0.5], np.float32)
STD = np.array([0.25, 0.25, 0.25], np.float32)
PAD_VALUE = 114


def letterbox_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the longer side to ``size`` and pad to a square, keeping the item's proportions."""
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("empty crop")
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = resized
    return out


def preprocess(crops: Sequence[np.ndarray], size: int = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """BGR uint8 crops -> float32 NCHW batch, RGB, normalised."""
    batch = np.empty((len(crops), 3, size, size), np.float32)
    for i, crop in enumerate(crops):
        square = letterbox_square(crop, size)
        rgb = square[:, :, ::-1].astype(np.float32) / 255.0
        batch[i] = ((rgb - MEAN) / STD).transpose(2, 0, 1)
    return batch


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class Embedder:
    """An onnxruntime session over an embedder model with a fixed batch-1 input."""

    def __init__(
        self, model_path: str | Path, threads: int = 2, providers: Sequence[str] | None = None
    ) -> None:
        from laneguard.sessions import inference_session

        self.session = inference_session(model_path, threads, providers)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.size = int(model_input.shape[-1])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) L2-normalised vectors, one per crop."""
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        batch = preprocess(crops, self.size)
        out = [
            self.session.run(None, {self.input_name: batch[i : i + 1]})[0]
            for i in range(len(batch))
        ]
        return l2_normalise(np.concatenate(out, axis=0))
