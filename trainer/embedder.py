"""The embedding model: an item crop to an L2-normalised vector, trained with a CosFace head.

Classification with a cosine margin (CosFace) makes vectors of one product tight and of different
products far apart, which is what nearest-neighbour identification in the gallery needs; the
classifier head is dropped at export. The architectures, chosen by measurement: ``lanenet`` (a
plain 5-stage CNN, ~0.4 M parameters), ``mobilenet`` (torchvision's MobileNetV3-small, from
scratch) and ``efficientnet-lite0/1/2`` (ImageNet-pretrained, trainer.backbones), fine-tuned with
a tenth of the learning rate on the backbone than on the new layers.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from laneguard.embedding import DEFAULT_INPUT_SIZE, preprocess
from laneguard.files import private_dir
from product_db.errors import LaneGuardError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
EMBEDDING_DIM = 128
PRETRAINED_ARCHS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
BACKBONE_LR_SHARE = 0.1  # pretrained layers move ten times slower than the new ones


def image_folder(root: Path) -> dict[str, list[Path]]:
    """Class folder name -> its images (sorted); folders without images are left out."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder of class sub-folders")
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            classes[folder.name] = images
    if not classes:
        raise FileNotFoundError(f"{root}: no class sub-folders with images")
    return classes


class ImageFileError(LaneGuardError, ValueError):
    """A training or reference image that cannot be read (the message names the file)."""


def read_image(path: Path) -> np.ndarray:
    """A BGR image, or an ImageFileError naming the file that cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageFileError(f"cannot read image {path}")
    return image


def augment(image: np.ndarray, rng: random.Random) -> np.ndarray:
    """What changes between two sightings of the same product on a lane: framing, turn,
    lighting, focus and motion blur (items move while the shutter is open) and the cashier's
    hand over part of the item."""
    h, w = image.shape[:2]
    scale = rng.uniform(0.75, 1.0)
    ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
    y0, x0 = rng.randint(0, h - ch), rng.randint(0, w - cw)
    out = image[y0 : y0 + ch, x0 : x0 + cw]
    out = np.rot90(out, rng.randrange(4)).copy()
    if rng.random() < 0.5:
        out = out[:, ::-1].copy()
    if rng.random() < 0.4:
        out = rotate(out, rng.uniform(-30, 30))
    alpha, beta = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
    out = cv2.convertScaleAbs(out, alpha=alpha, beta=beta)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (5, 5), rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        out = motion_blur(out, rng.randint(3, 9), rng.uniform(0, 180))
    if rng.random() < 0.3:
        gains = np.array([rng.uniform(0.85, 1.15) for _ in range(3)], np.float32)
        out = np.clip(out.astype(np.float32) * gains, 0, 255).astype(np.uint8)
    if rng.random() < 0.25:
        out = hand_over(out, rng)
    return out


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def motion_blur(image: np.ndarray, length: int, degrees: float) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    matrix = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), degrees, 1.0)
    kernel = np.asarray(cv2.warpAffine(kernel, matrix, (length, length)), np.float32)
    return cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6))


SKIN_TONES_BGR = ((180, 200, 240), (140, 170, 215), (90, 130, 190), (60, 90, 140), (40, 60, 95))


def hand_over(image: np.ndarray, rng: random.Random) -> np.ndarray:
    """A skin-coloured palm and fingers reaching in from one edge, covering up to a third."""
    out = image.copy()
    h, w = out.shape[:2]
    tone = np.array(rng.choice(SKIN_TONES_BGR), np.float32) * rng.uniform(0.8, 1.1)
    colour = tuple(int(c) for c in np.clip(tone, 0, 255))
    depth = rng.uniform(0.15, 0.35)
    edge = rng.randrange(4)
    # Drawn as if entering from the left, then turned to the chosen edge.
    canvas = np.zeros((h, w) if edge % 2 == 0 else (w, h), np.uint8)
    ch, cw = canvas.shape
    reach = max(2, int(cw * depth))
    cy = rng.randint(ch // 4, max(ch // 4, 3 * ch // 4))
    cv2.ellipse(canvas, (0, cy), (reach, max(2, ch // 5)), 0, 0, 360, 255, -1)
    for finger in range(4):
        fy = cy + (finger - 1.5) * max(2, ch // 12)
        cv2.line(canvas, (0, int(fy)), (int(reach * 1.3), int(fy)), 255, max(2, ch // 14))
    turned = np.rot90(canvas, -edge) if edge else canvas
    mask = cv2.resize(np.ascontiguousarray(turned), (w, h), interpolation=cv2.INTER_NEAREST)
    out[mask > 0] = colour
    return out


def build_model(arch: str, classes: int, dim: int = EMBEDDING_DIM) -> Any:
    """Backbone + embedding layer + CosFace head; ``model.embed(x)`` gives normalised vectors."""
    import torch
    from torch import nn

    def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(True),
        )

    if arch == "lanenet":
        backbone: nn.Module = nn.Sequential(
            nn.Conv2d(3, 24, 3, 2, 1, bias=False),
            nn.BatchNorm2d(24),
            nn.ReLU(True),
            stage(24, 32, 2),
            stage(32, 64, 2),
            stage(64, 96, 2),
            stage(96, 128, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        features = 128
    elif arch == "mobilenet":
        from torchvision.models import mobilenet_v3_small

        net = mobilenet_v3_small(weights=None)
        backbone = nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        features = 576
    elif arch in PRETRAINED_ARCHS:
        from laneguard.embedding import MEAN, STD
        from trainer.backbones import PretrainedFeatures, load_backbone

        pretrained, _source = load_backbone(arch.removeprefix("efficientnet-"))
        backbone = PretrainedFeatures(pretrained, float(MEAN[0]), float(STD[0]))
        features = pretrained.feature_dim
    else:
        raise ValueError(
            f"unknown embedder architecture {arch!r}: lanenet, mobilenet or one of "
            f"{', '.join(PRETRAINED_ARCHS)}"
        )

    class EmbedNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.project = nn.Sequential(nn.Linear(features, dim), nn.BatchNorm1d(dim))
            self.head = nn.Parameter(torch.randn(classes, dim) * 0.01)

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.project(self.backbone(x)), dim=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embed(x)

        def cosines(self, vectors: torch.Tensor) -> torch.Tensor:
            return vectors @ nn.functional.normalize(self.head, dim=1).T

    return EmbedNet()


def round_to_half(model: Any) -> None:
    """Round every float weight and buffer of ``model`` to the nearest float16 value, in place.

    Why: a bundle stores the embedder's training weights at half precision
    (``trainer.weights``); rounding the trained network once, before anything is exported or
    measured from it, makes the ONNX the lanes run, the gallery and the weights the next
    training starts from the same numbers (the rounding is relative 5e-4, below what any
    measure here resolves)."""
    import itertools

    import torch

    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half())


@dataclass
class EmbedderRun:
    model: Any
    classes: list[str]
    arch: str
    input_size: int  # the crops it was trained on
    epochs: int
    train_images: int
    seconds: float
    history: list[dict[str, float]]
    # The input its exported model takes; None: the training size. Training crops are cut at
    # 75-100% of the item (``augment``) while the lane embeds whole items, so an item fills
    # more of a training input than of a lane input of the same size. Serving larger gives
    # it that size back: better on photos and simulator test crops, not in the lane's
    # checkouts (models README), so the shipped recipe serves at the training size.
    serve_size: int | None = None

    @property
    def export_size(self) -> int:
        return self.serve_size or self.input_size


def train_embedder(
    samples: dict[str, list[Path]],
    *,
    arch: str = "lanenet",
    epochs: int = 12,
    batch: int = 64,
    input_size: int = DEFAULT_INPUT_SIZE,
    seed: int = 0,
    lr: float = 2e-3,
    margin: float = 0.25,
    scale: float = 20.0,
    progress: Callable[[str], None] = print,
    parent: Any | None = None,
    serve_size: int | None = None,
    checkpoint: Path | None = None,
) -> EmbedderRun:
    """Train on ``samples`` (class -> images) at ``input_size``; the run exports at
    ``serve_size`` (None: ``input_size``). Progress lines go to ``progress`` each epoch.

    With ``checkpoint``, the state after each epoch is written there and a run that finds one
    of the same recipe resumes after its last epoch: training runs for an hour here, and a
    session or a machine may end first. One of another recipe is said and trained over."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = random.Random(seed)
    classes = sorted(samples)
    items = [(path, index) for index, code in enumerate(classes) for path in samples[code]]
    images = {path: read_image(path) for path, _ in items}
    model = build_model(arch, len(classes))
    if parent is not None:
        state = {k: v for k, v in parent.state_dict().items() if not k.startswith("head")}
        model.load_state_dict(state, strict=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    backbone_lr = lr * BACKBONE_LR_SHARE if arch in PRETRAINED_ARCHS else lr
    new_layers = [p for name, p in model.named_parameters() if not name.startswith("backbone.")]
    optimiser = torch.optim.AdamW(
        [
            {"params": list(model.backbone.parameters()), "lr": backbone_lr},
            {"params": new_layers, "lr": lr},
        ],
        weight_decay=5e-4,
    )
    steps = epochs * math.ceil(len(items) / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[backbone_lr, lr], total_steps=steps
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    history: list[dict[str, float]] = []
    first_epoch = 0
    recipe: dict[str, Any] = {}
    if checkpoint is not None:  # the crops and parent are hashed only for a run that resumes
        recipe = {
            "classes": classes,
            "images": _samples_digest(items),
            "parent": _parent_digest(parent),
            "arch": arch,
            "epochs": epochs,
            "batch": batch,
            "input_size": input_size,
            "seed": seed,
            "lr": lr,
            "margin": margin,
            "scale": scale,
        }
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if saved.get("recipe") == recipe:
            model.load_state_dict(saved["model"])
            optimiser.load_state_dict(saved["optimiser"])
            schedule.load_state_dict(saved["schedule"])
            rng.setstate(saved["rng"])
            # shuffled in place each epoch: the order goes on from where it was
            items = [(Path(path), int(label)) for path, label in saved["items"]]
            torch.set_rng_state(saved["torch_rng"])
            history, first_epoch = saved["history"], saved["epoch"]
            progress(f"embedder resumes from {checkpoint} after epoch {first_epoch}/{epochs}")
        else:
            progress(f"{checkpoint} holds another recipe's embedder: training anew")
    start = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    for epoch in range(first_epoch, epochs):
        model.train()
        rng.shuffle(items)
        total, correct, loss_sum = 0, 0, 0.0
        for first in range(0, len(items), batch):
            chunk = items[first : first + batch]
            if len(chunk) < 2:
                continue
            crops = [augment(images[path], rng) for path, _ in chunk]
            x = torch.from_numpy(preprocess(crops, input_size)).to(device)
            y = torch.tensor([label for _, label in chunk], device=device)
            cosines = model.cosines(model.embed(x))
            logits = scale * (cosines - margin * nn.functional.one_hot(y, len(classes)))
            loss = loss_fn(logits, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(chunk)
            correct += int((cosines.argmax(1) == y).sum())
            total += len(chunk)
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(total, 1),
            "train_accuracy": correct / max(total, 1),
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        progress(
            f"embedder epoch {epoch + 1}/{epochs}: loss {record['loss']:.3f}, "
            f"train accuracy {record['train_accuracy']:.3f}, {record['seconds']:.0f} s"
        )
        if checkpoint is not None:
            _save_checkpoint(
                checkpoint,
                {
                    "recipe": recipe,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "schedule": schedule.state_dict(),
                    "rng": rng.getstate(),
                    "items": [(str(path), label) for path, label in items],
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                },
            )
    model.eval()
    round_to_half(model)
    return EmbedderRun(
        model.cpu(),
        classes,
        arch,
        input_size,
        epochs,
        len(items),
        time.perf_counter() - start,
        history,
        serve_size,
    )


def _samples_digest(items: Sequence[tuple[Path, int]]) -> str:
    """What the run trains on, by content: the same file names rendered anew from a changed
    simulator are other data, and a checkpoint of the old must not be resumed over them."""
    digest = hashlib.sha256()
    for path, label in sorted(items, key=lambda item: (item[1], str(item[0]))):
        digest.update(f"{label} {path.name} ".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _parent_digest(parent: Any | None) -> str | None:
    """The weights a fine-tune starts from, by content (None: from ImageNet or nothing)."""
    if parent is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(parent.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Written whole or not at all (a cut write leaves the previous epoch's), owner-only from
    its first byte (a file made by torch.save takes the umask's mode until changed)."""
    import torch

    private_dir(path.parent)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)  # a cut write's leftover, or anything planted in its name
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        torch.save(state, handle)
    partial.replace(path)


def export_embedder_onnx(run: EmbedderRun, out_path: Path) -> Path:
    """Fixed input (1, 3, S, S) at the run's serving size -> 'embedding' (1, D), normalised
    inside the graph."""
    return export_onnx(run.model, run.export_size, out_path)


def export_onnx(model: Any, size: int, out_path: Path) -> Path:
    """Any crop -> vector network as the lane's embedder file: input 'image' (1, 3, S, S)."""
    import torch

    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(out_path),
        input_names=["image"],
        output_names=["embedding"],
        opset_version=17,
        dynamo=False,
    )
    return out_path


def embed_paths(embedder: Any, paths: Sequence[Path]) -> np.ndarray:
    """Embed image files with a laneguard.embedding.Embedder (ONNX), in file order."""
    return embedder.embed([read_image(p) for p in paths])
