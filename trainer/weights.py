"""The PyTorch weights a bundle carries so the next model can start from it.

Lanes run the ONNX files and never read these; the trainer fine-tunes from them (transfer
learning from production instead of from nothing). Their names are in the manifest's
``training_data["weights"]`` and their hashes in its file list like every other member.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laneguard.bundle import BundleError, Manifest
from trainer.embedder import EmbedderRun, build_model

TRAINING_WEIGHTS = {"detector": "detector-weights.pt", "embedder": "embedder-weights.pt"}


@dataclass(frozen=True, slots=True)
class ParentWeights:
    """Where a bundle's training weights were extracted to."""

    detector: Path  # an ultralytics checkpoint
    embedder: Path  # architecture, input size, classes and state dict


def save_embedder(run: EmbedderRun, path: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "arch": run.arch,
            "input_size": run.input_size,
            "classes": list(run.classes),
            "state_dict": run.model.state_dict(),
        },
        path,
    )
    return path


def load_embedder(path: Path) -> tuple[Any, dict[str, Any]]:
    """The embedding network saved by ``save_embedder`` and its description.

    Loaded with ``weights_only`` so a file from elsewhere cannot run code."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(saved["arch"], len(saved["classes"]))
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model, {k: saved[k] for k in ("arch", "input_size", "classes")}


def training_weights(detector_pt: Path, embedder: EmbedderRun, folder: Path) -> dict[str, Path]:
    """Bundle members for the weights of a training run, written into ``folder``."""
    detector = folder / TRAINING_WEIGHTS["detector"]
    shutil.copyfile(detector_pt, detector)
    return {
        detector.name: detector,
        TRAINING_WEIGHTS["embedder"]: save_embedder(
            embedder, folder / TRAINING_WEIGHTS["embedder"]
        ),
    }


def parent_weights(folder: Path, manifest: Manifest) -> ParentWeights:
    """The training weights of an extracted bundle, or an error saying the bundle has none."""
    named = manifest.training_data.get("weights") or {}
    paths = {role: folder / str(named.get(role, "")) for role in TRAINING_WEIGHTS}
    missing = [role for role, path in paths.items() if not named.get(role) or not path.is_file()]
    if missing:
        raise BundleError(
            f"bundle {manifest.version} carries no training weights for {', '.join(missing)} "
            "(bundles made before bootstrap-4 hold ONNX only); make one with "
            "`laneguard train bootstrap` to fine-tune from"
        )
    return ParentWeights(detector=paths["detector"], embedder=paths["embedder"])
