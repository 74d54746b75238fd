"""Training the pretrained detector's neck and head over its frozen backbone's features,
computed once per augmented view of the data and reused by every epoch.

With the backbone frozen, ultralytics' trainer still runs the backbone forward on every image
of every epoch: measured with py-spy on this 2-core CPU, 82% of a training step went to
EfficientNet-Lite's forward pass, whose result for the same augmented image never changes.
So the data is augmented here as ultralytics augments it (its dataset, mosaic and all), each
augmented batch goes through the backbone once, and its three feature maps (fp16, about 0.3 MB
an image at 320) are kept; the neck and head then train for as many epochs as they need over
those views at about a sixth of the cost per image. Mosaic is closed for the last view.

The last epoch goes over the last view alone, whose images are whole (mosaic closed), as
ultralytics ends its runs. A cut-short run resumes: each finished view is saved in
``out_dir/features``, and the neck and head, their moving average and the optimiser after
every epoch in ``out_dir/cached-last.pt``.
The result is an ordinary ultralytics checkpoint (``out_dir/detector/weights/best.pt``), so
evaluation, export and the lane see the same model they would after ultralytics' trainer.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.offline import configure_offline

CACHED_STATE = "cached-last.pt"  # the neck, head, moving average and optimiser after an epoch
GRAD_CLIP = 10.0  # as ultralytics clips
WARMUP_SHARE = 0.05  # of all steps, linear from a tenth of the rate


@dataclass(frozen=True, slots=True)
class CachedRecipe:
    """How the neck and head train over cached features."""

    views: int = 4  # augmented passes over the data, each through the backbone once
    epochs: int = 6  # passes over all views
    lr: float = 2e-3
    weight_decay: float = 5e-4
    batch: int = 16
    workers: int = 2
    # Also train the backbone's top stages (stride 16 to 32) from the cached stride-16 map, at
    # this share of the rate; their batch-norm statistics stay ImageNet's. 0: the backbone stays
    # frozen whole.
    top_stages_lr_share: float = 0.0
    # Share of batches whose feature maps' per-image channel statistics are redrawn around
    # the batch's own (jitter_feature_statistics): a head that has only seen rendered images'
    # features learns not to rely on their exact means and spreads. 0: features as cached.
    feature_jitter: float = 0.0


@dataclass(slots=True)
class FeatureBatch:
    """One augmented batch as the backbone saw it: its feature maps and its labels."""

    features: list[Any]  # three fp16 tensors (B, C, H, W), strides 8, 16, 32
    cls: Any
    bboxes: Any
    batch_idx: Any

    def labels(self) -> dict[str, Any]:
        return {"cls": self.cls, "bboxes": self.bboxes, "batch_idx": self.batch_idx}


def forward_from_features(model: Any, features: list[Any]) -> Any:
    """Run an ultralytics DetectionModel from the output of its layer 0 (the backbone slot),
    as its own forward pass would from there on."""
    saved: list[Any] = [features]
    x: Any = features
    for layer in model.model[1:]:
        if layer.f != -1:
            x = (
                saved[layer.f]
                if isinstance(layer.f, int)
                else [x if j == -1 else saved[j] for j in layer.f]
            )
        x = layer(x)
        saved.append(x if layer.i in model.save else None)
    return x


def _augmentation_args(imgsz: int, batch: int, seed: int) -> Any:
    """Ultralytics' hyperparameters with the lane camera's augmentations (as trainer.detector)."""
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG

    return get_cfg(
        DEFAULT_CFG,
        {
            "imgsz": imgsz,
            "batch": batch,
            "seed": seed,
            "fliplr": 0.5,
            "flipud": 0.5,
            "degrees": 10.0,
            "mosaic": 1.0,
            "plots": False,
        },
    )


def cache_views(
    model: Any,
    data_yaml: Path,
    cache_dir: Path,
    recipe: CachedRecipe,
    imgsz: int,
    seed: int,
    progress: Callable[[str], None],
) -> list[FeatureBatch]:
    """Every view's feature batches: read from ``cache_dir`` where a view was finished
    earlier, else augmented, run through the backbone once and saved."""
    import torch
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    args = _augmentation_args(imgsz, recipe.batch, seed)
    data = check_det_dataset(str(data_yaml), autodownload=False)
    dataset: Any = build_yolo_dataset(args, data["train"], recipe.batch, data, mode="train")
    backbone = model.model[0].eval()
    device = next(backbone.parameters()).device
    cache_dir.mkdir(parents=True, exist_ok=True)
    batches: list[FeatureBatch] = []
    for view in range(recipe.views):
        path = cache_dir / f"view-{view}.pt"
        if view == recipe.views - 1 and recipe.views > 1:
            dataset.close_mosaic(args)
        if path.exists():
            stored = torch.load(path, weights_only=False)
            batches.extend(FeatureBatch(**item) for item in stored)
            progress(f"features of view {view + 1}/{recipe.views} read from {path}")
            continue
        torch.manual_seed(seed * 1000 + view)
        random.seed(seed * 1000 + view)
        loader = build_dataloader(dataset, recipe.batch, recipe.workers, shuffle=True)
        start, stored = time.perf_counter(), []
        with torch.no_grad():
            for batch in loader:
                features = backbone(batch["img"].to(device).float() / 255)
                stored.append(
                    {
                        "features": [f.half().cpu() for f in features],
                        "cls": batch["cls"],
                        "bboxes": batch["bboxes"],
                        "batch_idx": batch["batch_idx"],
                    }
                )
        partial = path.with_suffix(".part")
        torch.save(stored, partial)
        partial.replace(path)
        batches.extend(FeatureBatch(**item) for item in stored)
        progress(
            f"features of view {view + 1}/{recipe.views}: {len(dataset)} images in "
            f"{time.perf_counter() - start:.0f} s"
        )
    return batches


def jitter_feature_statistics(features: Any, generator: Any) -> Any:
    """One feature map (B, C, H, W) with each image's channel means and standard deviations
    moved by a normal draw scaled by how much those statistics vary across the batch.

    Why: the neck and head learn over a frozen ImageNet backbone, so what separates a real
    photo from a rendered one reaches them as shifted channel statistics (light, texture,
    sensor). Redrawing them within the spread the batch itself shows ("uncertainty modelling",
    Li et al., ICLR 2022) teaches the head products whose features sit off the rendered
    images' exact statistics, at no cost to the cached views.
    """
    import torch

    if features.shape[0] < 2:
        return features  # one image shows no spread to draw from
    eps = 1e-6
    mean = features.mean(dim=(2, 3), keepdim=True)
    std = (features.var(dim=(2, 3), keepdim=True) + eps).sqrt()
    mean_spread = (mean.var(dim=0, keepdim=True) + eps).sqrt()
    std_spread = (std.var(dim=0, keepdim=True) + eps).sqrt()
    new_mean = mean + torch.randn(mean.shape, generator=generator).to(mean) * mean_spread
    new_std = std + torch.randn(std.shape, generator=generator).to(std) * std_spread
    return (features - mean) / std * new_std + new_mean


def epoch_batches(batches: int, views: int, epochs: int) -> list[list[int]]:
    """The cached batches each epoch trains on: all of them, but for the last epoch of a
    multi-view run, which takes the last view's alone (whole images, mosaic closed), as
    ultralytics' trainer ends its run with mosaic closed."""
    every = list(range(batches))
    plan = [every for _ in range(epochs)]
    if views > 1 and epochs > 1:
        plan[-1] = every[-(batches // views) :]
    return plan


def _trainable_groups(
    model: Any, recipe: CachedRecipe, progress: Callable[[str], None]
) -> tuple[list[dict[str, Any]], Any | None]:
    """The optimiser's groups: the neck and head, and with ``top_stages_lr_share`` the
    backbone's top stages (returned too, to be run from the cached stride-16 map); every other
    backbone weight is frozen."""
    backbone = model.model[0]
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    groups = _parameter_groups(
        [p for p in model.model[1:].parameters() if p.requires_grad], recipe.weight_decay, 1.0
    )
    if recipe.top_stages_lr_share <= 0:
        return groups, None
    top_stages = backbone.network.top_stages()
    for parameter in top_stages.parameters():
        parameter.requires_grad_(True)
    groups += _parameter_groups(
        list(top_stages.parameters()), recipe.weight_decay, recipe.top_stages_lr_share
    )
    progress(f"the backbone's top stages train at {recipe.top_stages_lr_share} of the rate")
    return groups, top_stages


def _parameter_groups(
    parameters: list[Any], weight_decay: float, share: float
) -> list[dict[str, Any]]:
    """AdamW groups as ultralytics makes them (no decay on biases and norms), each with the
    share of the schedule's rate it trains at."""
    return [
        {
            "params": [p for p in parameters if p.ndim > 1],
            "weight_decay": weight_decay,
            "share": share,
        },
        {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0, "share": share},
    ]


def forget_cache(out_dir: Path) -> None:
    """Drop the features and training state an earlier run left in ``out_dir``: a new run
    (another recipe or other data) must not resume from them."""
    import shutil

    shutil.rmtree(out_dir / "features", ignore_errors=True)
    (out_dir / CACHED_STATE).unlink(missing_ok=True)


def train_over_cached_features(
    model_yaml: Path,
    data_yaml: Path,
    out_dir: Path,
    recipe: CachedRecipe,
    imgsz: int,
    seed: int = 0,
    progress: Callable[[str], None] = print,
    start_weights: Path | None = None,
) -> Path:
    """Train the neck and head of the detector ``model_yaml`` describes over its frozen
    backbone, from ``start_weights`` (an ultralytics checkpoint of the same architecture) when
    given; returns the ultralytics checkpoint written (``detector/weights/best.pt``)."""
    configure_offline()
    import torch
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import ModelEMA

    from trainer.pretrained_detector import backbone_slot

    torch.manual_seed(seed)
    with backbone_slot():
        detector = YOLO(str(model_yaml), task="detect")
    model: Any = detector.model
    model.args = _augmentation_args(imgsz, recipe.batch, seed)
    from ultralytics.data.utils import check_det_dataset

    names = check_det_dataset(str(data_yaml), autodownload=False)["names"]
    model.names, model.nc = names, len(names)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if start_weights is not None:
        # Strict: a checkpoint of another architecture is refused, not partly loaded.
        parent = torch.load(start_weights, map_location="cpu", weights_only=False)
        model.load_state_dict((parent.get("ema") or parent["model"]).float().state_dict())
        progress(f"neck and head start from {start_weights}")
    model.to(device)
    backbone = model.model[0]
    groups, top_stages = _trainable_groups(model, recipe, progress)
    trainable = [p for group in groups for p in group["params"]]
    batches = cache_views(model, data_yaml, out_dir / "features", recipe, imgsz, seed, progress)

    optimiser = torch.optim.AdamW(
        groups,
        lr=recipe.lr,
        betas=(0.937, 0.999),
    )
    ema = ModelEMA(model)
    schedule = epoch_batches(len(batches), recipe.views, recipe.epochs)
    total_steps = sum(len(indices) for indices in schedule)
    warmup = max(1, int(total_steps * WARMUP_SHARE))

    def rate(step: int) -> float:
        if step < warmup:
            return recipe.lr * (0.1 + 0.9 * step / warmup)
        progress_share = (step - warmup) / max(1, total_steps - warmup)
        return recipe.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress_share)))

    state_path = out_dir / CACHED_STATE
    first_epoch = 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        ema.ema.load_state_dict(state["ema"])
        ema.updates = state["ema_updates"]
        optimiser.load_state_dict(state["optimiser"])
        first_epoch = state["epoch"] + 1
        progress(f"resuming the neck and head after epoch {first_epoch}/{recipe.epochs}")

    order = random.Random(seed)
    # Drawn afresh per epoch from the seed, so a resumed run jitters as an uncut one would.
    jitter_draw, jitter_noise = random.Random(seed), torch.Generator()
    for epoch in range(first_epoch, recipe.epochs):
        model.train()
        backbone.eval()  # its batch-norm statistics stay ImageNet's
        indices = list(schedule[epoch])
        order.seed(seed * 7919 + epoch)
        order.shuffle(indices)
        jitter_draw.seed(seed * 104729 + epoch)
        jitter_noise.manual_seed(seed * 104729 + epoch)
        first_step = sum(len(done) for done in schedule[:epoch])
        start, totals = time.perf_counter(), torch.zeros(3)
        for position, index in enumerate(indices):
            step = first_step + position
            for group in optimiser.param_groups:
                group["lr"] = rate(step) * group["share"]
            item = batches[index]
            features = [f.to(device).float() for f in item.features]
            if top_stages is not None:
                features[2] = backbone.network.stride32_from_stride16(features[1])
            if recipe.feature_jitter and jitter_draw.random() < recipe.feature_jitter:
                features = [jitter_feature_statistics(f, jitter_noise) for f in features]
            labels = {key: value.to(device) for key, value in item.labels().items()}
            loss, items = model.loss(labels, forward_from_features(model, features))
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            torch.nn.utils.clip_grad_norm_(trainable, GRAD_CLIP)
            optimiser.step()
            ema.update(model)
            totals += torch.stack([v.detach().float().sum().cpu() for v in items.values()])[:3]
        mean = (totals / len(indices)).tolist()
        progress(
            f"epoch {epoch + 1}/{recipe.epochs}: box {mean[0]:.3f} cls {mean[1]:.3f} "
            f"dfl {mean[2]:.3f}, {time.perf_counter() - start:.0f} s"
        )
        partial = state_path.with_suffix(".part")
        torch.save(
            {
                "model": model.state_dict(),
                "ema": ema.ema.state_dict(),
                "ema_updates": ema.updates,
                "optimiser": optimiser.state_dict(),
                "epoch": epoch,
            },
            partial,
        )
        partial.replace(state_path)

    weights = out_dir / "detector" / "weights" / "best.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    averaged: Any = ema.ema.cpu()
    averaged.names, averaged.nc = names, len(names)
    detector.model = averaged
    # As ultralytics' trainer records them, so YOLO(weights) knows the size it was trained at.
    detector.ckpt = {"train_args": dict(vars(model.args))}
    detector.save(str(weights))
    return weights
