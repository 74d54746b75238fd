"""What a model costs to run, counted rather than timed: multiply-adds of one forward pass.

A lane board we do not have cannot be timed here; its latency for a model is estimated from the
model's multiply-adds and a stated rate for the board (trainer.bootstrap.BOARD_GMACS_PER_S).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def multiply_adds(model: Any, size: int) -> int:
    """Multiply-accumulates of one (1, 3, size, size) forward pass: convolutions and linear
    layers, counted from their output shapes."""
    import torch
    from torch import nn

    total = 0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * int(np.prod(module.kernel_size))
            total += int(output.numel()) * per_output
        elif isinstance(module, nn.Linear):
            total += int(output.numel()) * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total


def detector_gmacs(weights: Any, size: int) -> float:
    """Multiply-adds (billions) of an ultralytics detector checkpoint at input ``size``."""
    from trainer.offline import configure_offline
    from trainer.pretrained_detector import backbone_slot

    configure_offline()
    from ultralytics import YOLO

    with backbone_slot():
        network: Any = YOLO(str(weights), task="detect").model
    network = network.float().eval()
    return round(multiply_adds(network, size) / 1e9, 3)
