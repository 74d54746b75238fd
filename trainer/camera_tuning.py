"""A detector tuned to one camera from its frames alone, with no label from anyone (the seed
talk's T1/T2 tuning, for detection).

A store's camera frames, before any transaction has labelled them (a new store, a camera
moved), can still teach its detector: boxes the detector is sure of (at or above T1) are taken
as true, boxes between T2 and T1 are painted grey so they teach nothing, and the rest of the
frame is background. Sure boxes' crops are also pasted into simulator scenes (the rehearsal
that keeps what the detector knew), where nothing unlabelled can contradict them. The
candidate bundle is production's with the tuned detector in every size and precision it had.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2

from laneguard.bundle import Manifest, ModelFile, extracted, write_bundle
from laneguard.files import private_dir
from product_db.models import utcnow
from trainer.detector import CLASS_NAMES
from trainer.finetune import TrainingError, TrainRunConfig, fine_tune_detector
from trainer.harvest import HarvestDataset, HarvestedCrop
from trainer.store_frames import FrameSplit, StoreFrame
from trainer.weights import TRAINING_WEIGHTS, parent_weights

LABELS = dict(enumerate(CLASS_NAMES))


@dataclass(frozen=True)
class CameraTuningConfig:
    """Defaults measured on real photos (checkout_node/models/README.md)."""

    epochs: int = 3
    # Simulator scenes beside the camera's frames: few, as more rehearsal pulled the detector
    # towards the simulator's look (real-photo count error 0.221 with 30, 0.311 with 150).
    rehearsal_images: int = 30
    frame_repeats: int = 4  # each camera frame is this many training images
    pasted_share: float = 0.5  # rehearsal scenes that get sure crops pasted in
    t1: float = 0.5  # at or above: a true box (the tracker's new-track score)
    t2: float = 0.1  # between t2 and t1: unknown, painted grey (the tracker's low score)
    seed: int = 0


def self_labelled_frames(
    frames: Sequence[Path], detector: Path, config: CameraTuningConfig, threads: int = 2
) -> list[StoreFrame]:
    """Each frame (a camera image, as the lane sees it) with the detector's own boxes: sure
    ones as tracks, unsure ones as unknown."""
    from checkout_node.vision.detectors import make_detector
    from checkout_node.vision.pipeline import lane_detector_config

    run = make_detector(detector, lane_detector_config(threads, low_score=config.t2))
    out = []
    for n, path in enumerate(frames):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise TrainingError(f"{path}: not an image")
        found = run.detect(image)
        boxes = []
        for box, score, cls in zip(found.boxes, found.scores, found.classes, strict=True):
            if score < config.t2 or int(cls) not in LABELS:
                continue
            kind = "track" if score >= config.t1 else "of_interest"
            boxes.append(
                {
                    "box": [float(v) for v in box],
                    "label": LABELS[int(cls)],
                    "kind": kind,
                    "score": float(score),
                }
            )
        height, width = image.shape[:2]
        out.append(
            StoreFrame(n, "camera", path.stem, utcnow(), "self", path, width, height, tuple(boxes))
        )
    return out


def sure_crops(frames: Sequence[StoreFrame], folder: Path) -> list[HarvestedCrop]:
    """The sure product boxes cut out of their frames, as crops to paste into the rehearsal."""
    private_dir(folder)  # cut from camera frames: as private as the frames
    crops: list[HarvestedCrop] = []
    for frame in frames:
        image = cv2.imread(str(frame.image), cv2.IMREAD_COLOR)
        if image is None:
            continue
        for index, (cls, box) in enumerate(frame.labelled()):
            x1, y1, x2, y2 = (round(v) for v in box)
            if cls != 0 or x2 - x1 < 16 or y2 - y1 < 16:
                continue
            path = folder / f"{frame.frame_id:05d}_{index:02d}.jpg"
            cv2.imwrite(str(path), image[max(0, y1) : y2, max(0, x1) : x2])
            crops.append(
                HarvestedCrop(len(crops), "camera", path, "camera", frame.transaction_id, utcnow())
            )
    return crops


def tune_to_camera(
    bundle: Path,
    frames: Sequence[Path],
    work: Path,
    out: Path,
    config: CameraTuningConfig | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """``bundle``'s detector tuned to the camera that took ``frames``; writes the candidate
    bundle to ``out`` (the same members, the detector's replaced) and returns it."""
    config = config or CameraTuningConfig()
    if not frames:
        raise TrainingError("no camera frames to tune to")
    folder, manifest = extracted(bundle)
    primary = next(m for m in manifest.models if m.role == "detector" and m.precision == "fp32")
    labelled = self_labelled_frames(frames, folder / primary.file, config)
    return tune_on_frames(bundle, labelled, work, out, config, progress)


def tune_on_frames(
    bundle: Path,
    labelled: Sequence[StoreFrame],
    work: Path,
    out: Path,
    config: CameraTuningConfig,
    progress: Callable[[str], None] = print,
) -> Path:
    """``bundle``'s detector tuned on camera frames whose boxes are already labelled (by the
    detector itself, or by tracks); writes the candidate bundle to ``out``."""
    from simulator.world import World

    folder, manifest = extracted(bundle)
    weights = parent_weights(folder, manifest)
    if weights.detector is None:
        raise TrainingError(f"bundle {manifest.version} carries no detector training weights")
    if work.exists():
        shutil.rmtree(work)
    models_dir = work / "bundle"
    models_dir.mkdir(parents=True)
    sure = sum(len(f.labelled()) for f in labelled)
    unsure = sum(len(f.unknown()) for f in labelled)
    progress(f"{len(labelled)} camera frames: {sure} sure boxes, {unsure} unsure (painted grey)")
    crops = sure_crops(labelled, work / "crops")
    run_config = TrainRunConfig(
        detector_epochs=config.epochs,
        detector_images=config.rehearsal_images,
        pasted_share=config.pasted_share,
        store_frame_repeats=config.frame_repeats,
        seed=config.seed,
    )
    harvest = HarvestDataset({"camera": crops}, {})
    tuned = fine_tune_detector(
        World.from_catalog(),
        harvest,
        weights.detector,
        manifest,
        work,
        models_dir,
        run_config,
        progress,
        FrameSplit(list(labelled), {}),
    )
    members = {name: folder / name for name in manifest.files}
    members.update(tuned.members)
    detector_weights = models_dir / TRAINING_WEIGHTS["detector"]
    shutil.copyfile(tuned.weights, detector_weights)
    members[TRAINING_WEIGHTS["detector"]] = detector_weights
    write_bundle(_tuned_manifest(manifest, tuned.models, config, len(labelled), sure), members, out)
    progress(f"candidate written to {out}")
    return out


def _tuned_manifest(
    parent: Manifest, detectors: list[ModelFile], config: CameraTuningConfig, frames: int, sure: int
) -> Manifest:
    others = [m for m in parent.models if m.role != "detector"]
    return parent.model_copy(
        update={
            "version": f"{parent.version}-camera-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}",
            "release": parent.release + 1,
            "parent_version": parent.version,
            "models": detectors + others,
            "training_data": {
                **parent.training_data,
                "camera_tuning": {
                    "frames": frames,
                    "sure_boxes": sure,
                    "recipe": json.loads(json.dumps(asdict(config))),
                },
            },
        }
    )


def frame_paths(folder: Path) -> list[Path]:
    """The camera frames in ``folder`` (.jpg/.jpeg/.png), sorted."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        raise TrainingError(f"{folder}: no .jpg, .jpeg or .png camera frames in it")
    return paths
