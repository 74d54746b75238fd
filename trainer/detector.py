"""The class-agnostic checkout detector: product / hand / non_merchandise, YOLO11 from yaml.

Two architectures: YOLO11 trained from scratch (trainer/models/laneguard-det.yaml; no
pretrained YOLO weights exist here), or YOLO11's neck and head over an ImageNet-pretrained
EfficientNet-Lite (trainer/models/laneguard-det-lite.yaml, trainer.pretrained_detector). Both
learn from simulator images, export the same ONNX layout and are decoded alike on the lane. The
same call uses a GPU when torch sees one.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainer.offline import configure_offline

MODEL_YAML = Path(__file__).parent / "models" / "laneguard-det.yaml"
PRETRAINED_MODEL_YAML = Path(__file__).parent / "models" / "laneguard-det-lite.yaml"
PRETRAINED_BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
CLASS_NAMES = ("product", "hand", "non_merchandise")
# A fine-tune's rate (AdamW, no warm-up): half an epoch of a camera's frames and rehearsal at it
# kept a trained detector's simulator mAP50 (0.789 against 0.796).
FINE_TUNE_LR = 5e-4


@dataclass(frozen=True, slots=True)
class DetectorRun:
    weights: Path  # best.pt
    run_dir: Path
    metrics: dict[str, Any]


def model_yaml_for(scale: str, out_dir: Path, backbone: str | None = None) -> Path:
    """Our architecture file with the chosen width/depth scale written in, and for a
    pretrained ``backbone`` its variant and feature widths."""
    source = MODEL_YAML if backbone is None else PRETRAINED_MODEL_YAML
    spec = yaml.safe_load(source.read_text("utf-8"))
    if scale not in spec["scales"]:
        raise ValueError(f"unknown detector scale {scale!r}; choose from {sorted(spec['scales'])}")
    # ultralytics reads the scale from the file name (yolo11n.yaml) and otherwise takes the
    # first entry of `scales`, so the chosen scale goes first.
    spec["scales"] = {scale: spec["scales"][scale]}
    name = f"laneguard-det-{scale}"
    if backbone is not None:
        if backbone not in PRETRAINED_BACKBONES:
            raise ValueError(
                f"unknown detector backbone {backbone!r}; choose from {PRETRAINED_BACKBONES}"
            )
        from trainer.pretrained_detector import pyramid_channels

        variant = backbone.removeprefix("efficientnet-")
        widths = pyramid_channels(variant)
        layers = spec["backbone"]
        layers[0][3] = [widths[-1], variant]
        for index, width in enumerate(widths):
            layers[1 + index][3] = [width, index]
        name = f"laneguard-det-{variant}-{scale}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), "utf-8")
    return path


def pick_device() -> str:
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def train_detector(
    data_yaml: Path,
    out_dir: Path,
    *,
    epochs: int,
    imgsz: int = 320,
    batch: int = 16,
    scale: str = "n",
    seed: int = 0,
    workers: int = 2,
    parent_weights: Path | None = None,
    backbone: str | None = None,
    freeze_backbone: bool = False,
    resume: bool = False,
    feature_views: int = 0,
    lr: float | None = None,
    top_stages_lr_share: float = 0.0,
    feature_jitter: float = 0.0,
) -> DetectorRun:
    """Train (or fine-tune from ``parent_weights``) and validate; returns best weights.

    ``backbone`` (one of ``PRETRAINED_BACKBONES``) starts from ImageNet features instead of
    from scratch; a fine-tune keeps whatever architecture its parent has. ``freeze_backbone``
    trains only the neck and head: no backward pass runs through the backbone (about five
    times cheaper a step on a CPU) and its batch-norm statistics stay ImageNet's. ``resume``
    continues from the ``last.pt`` an interrupted run of the same call left in ``out_dir``.
    ``feature_views`` > 0 (with a frozen pretrained backbone, from its yaml) trains the neck and
    head over that many augmented views' cached backbone features instead
    (trainer.feature_cache); ``epochs`` then counts passes over all views, ``parent_weights``
    (a detector of the same architecture) starts the neck and head instead of anew, and ``lr``
    sets their learning rate (None: the cached recipe's; ultralytics' own trainer picks its own,
    so ``lr`` is refused without ``feature_views``). ``top_stages_lr_share`` > 0 (over cached
    features only) also trains the backbone's stride-32 stages at that share of the rate;
    ``feature_jitter`` > 0 (likewise) redraws the channel statistics of that share of batches.
    """
    configure_offline()
    from ultralytics import YOLO

    from trainer.pretrained_detector import backbone_slot

    out_dir = out_dir.resolve()
    run_dir = out_dir / "detector"
    last = run_dir / "weights" / "last.pt"
    if lr is not None and feature_views <= 0:
        raise ValueError("a learning rate is set only for training over cached features")
    if top_stages_lr_share > 0 and feature_views <= 0:
        raise ValueError("the backbone's top stages are tuned only over cached features")
    if feature_jitter > 0 and feature_views <= 0:
        raise ValueError("feature statistics are redrawn only over cached features")
    if feature_views > 0:
        if not (freeze_backbone and backbone is not None):
            raise ValueError("cached features need a frozen pretrained backbone")
        from trainer.feature_cache import CachedRecipe, forget_cache, train_over_cached_features

        if not resume:
            forget_cache(out_dir)
        recipe = CachedRecipe(
            views=feature_views,
            epochs=epochs,
            batch=batch,
            workers=workers,
            top_stages_lr_share=top_stages_lr_share,
            feature_jitter=feature_jitter,
        )
        if lr is not None:
            recipe = dataclasses.replace(recipe, lr=lr)
        model_yaml = model_yaml_for(scale, out_dir, backbone)
        train_over_cached_features(
            model_yaml, data_yaml, out_dir, recipe, imgsz, seed, start_weights=parent_weights
        )
    elif resume and last.exists():
        if not _finished(last):  # a finished run's last.pt has nothing left to resume
            with backbone_slot():
                YOLO(str(last), task="detect").train(resume=True)
    else:
        source = (
            str(parent_weights) if parent_weights else str(model_yaml_for(scale, out_dir, backbone))
        )
        with backbone_slot():
            model = YOLO(source, task="detect")
            _fit(
                model,
                data_yaml,
                out_dir,
                epochs,
                imgsz,
                batch,
                seed,
                workers,
                freeze_backbone,
                fine_tune=parent_weights is not None,
            )
    weights = run_dir / "weights" / "best.pt"
    if not weights.exists():
        weights = run_dir / "weights" / "last.pt"
    metrics = evaluate_detector(weights, data_yaml, imgsz)
    return DetectorRun(weights=weights, run_dir=run_dir, metrics=metrics)


def _finished(last: Path) -> bool:
    """Whether ultralytics ended the run that wrote ``last`` (it marks the epoch -1)."""
    import torch

    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    return int(checkpoint.get("epoch", -1)) == -1


def _fit(
    model: Any,
    data_yaml: Path,
    out_dir: Path,
    epochs: int,
    imgsz: int,
    batch: int,
    seed: int,
    workers: int,
    freeze_backbone: bool = False,
    fine_tune: bool = False,
) -> None:
    """Ultralytics' training with the settings that keep it offline and suit a lane camera.

    ``fine_tune``: ``model`` holds trained weights to continue from. Ultralytics then needs
    ``pretrained=True`` (with False it builds the model anew from its yaml and the weights are
    silently dropped), and a trained head wants no warm-up (its bias warm-up rate, 0.1, wrecks
    it in the first steps) and a small fixed rate."""
    schedule: dict[str, Any] = (
        {"pretrained": True, "warmup_epochs": 0.0, "optimizer": "AdamW", "lr0": FINE_TUNE_LR}
        if fine_tune
        else {"pretrained": False}
    )
    model.train(
        freeze=[0] if freeze_backbone else None,  # layer 0 is the backbone (the yaml's slot)
        data=str(data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device=pick_device(),
        workers=workers,
        seed=seed,
        deterministic=True,
        project=str(out_dir),
        name="detector",
        exist_ok=True,
        plots=False,  # plots fetch a font from the internet
        amp=False,  # the AMP check downloads yolo11n.pt
        val=True,
        verbose=True,
        # The lane camera looks straight down: flips and rotations are real, colour shifts too.
        fliplr=0.5,
        flipud=0.5,
        degrees=10.0,
        mosaic=1.0,
        close_mosaic=max(1, epochs // 5),
        **schedule,
    )


def evaluate_detector(
    model_path: Path, data_yaml: Path, imgsz: int, split: str = "val"
) -> dict[str, Any]:
    """mAP50 and mAP50-95, overall and per class, for a .pt or .onnx model."""
    configure_offline()
    from ultralytics import YOLO

    model = YOLO(str(model_path), task="detect")
    result = model.val(
        data=str(data_yaml),
        imgsz=imgsz,
        batch=1 if str(model_path).endswith(".onnx") else 16,
        split=split,
        plots=False,
        device="cpu" if str(model_path).endswith(".onnx") else pick_device(),
        verbose=False,
    )
    per_class: dict[str, dict[str, float]] = {}
    box = result.box
    for index, class_id in enumerate(box.ap_class_index):
        name = CLASS_NAMES[int(class_id)]
        per_class[name] = {
            "mAP50": round(float(box.ap50[index]), 4),
            "mAP50_95": round(float(box.ap[index]), 4),
        }
    return {
        "mAP50": round(float(box.map50), 4),
        "mAP50_95": round(float(box.map), 4),
        "per_class": per_class,
        "imgsz": imgsz,
        "split": split,
    }


def export_detector_onnx(weights: Path, out_path: Path, imgsz: int) -> Path:
    """Fixed-size ONNX (batch 1, 3 x imgsz x imgsz) without NMS: the lane does NMS itself."""
    configure_offline()
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    exported = model.export(
        format="onnx", imgsz=imgsz, dynamic=False, simplify=False, opset=17, nms=False, device="cpu"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported, out_path)
    return out_path
