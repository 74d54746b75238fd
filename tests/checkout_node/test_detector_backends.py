"""Detector backends behind the registry: the lane runs its detector by name, refuses a name or an
accelerator it does not have (clearly, at start-up), and the pipeline takes whatever detector it
is handed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from checkout_node.model_bundle import load_models
from checkout_node.settings import LaneSettings
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.detector import Detections
from checkout_node.vision.detectors import (
    DEFAULT_BACKEND,
    DetectorBackendError,
    DetectorConfig,
    FrameDetector,
    detector_backends,
    make_detector,
    register_detector_backend,
)
from checkout_node.vision.pipeline import LanePipeline
from harness.evals.scenes import fit_to_lane_frame


@pytest.fixture(scope="module")
def real_photo(real_scenes: Path) -> np.ndarray:
    """A real pile photo in the lane's 640x480 frame, as `eval scenes` gives it to the lane."""
    image = cv2.imread(str(real_scenes / "toys" / "scene_0000_0000.jpg"))
    assert image is not None
    frame, _ = fit_to_lane_frame(image)
    return frame


def test_every_backend_is_listed_with_what_it_is() -> None:
    backends = detector_backends()
    assert DEFAULT_BACKEND in backends and "onnxruntime-cpu" in backends
    assert "TensorRT" in backends["onnxruntime-tensorrt"]


def test_the_cpu_backend_finds_what_the_default_finds_on_a_real_photo(
    real_photo: np.ndarray,
) -> None:
    models = load_models()
    model = models.path(models.detector)
    config = DetectorConfig(threads=2, confidence=0.25)
    default = make_detector(model, config).detect(real_photo)
    cpu = make_detector(model, DetectorConfig(backend="onnxruntime-cpu", confidence=0.25))
    on_cpu = cpu.detect(real_photo)
    assert len(default) > 3, "the shipped detector finds products on a real pile photo"
    assert np.allclose(on_cpu.boxes, default.boxes, atol=0.5)
    assert cpu.last_inference_s > 0


def test_an_unknown_backend_is_refused_naming_the_choices() -> None:
    models = load_models()
    with pytest.raises(DetectorBackendError, match=r"unknown detector backend 'edgetpu'.*onnxrun"):
        make_detector(models.path(models.detector), DetectorConfig(backend="edgetpu"))
    with pytest.raises(ValidationError, match="unknown detector backend 'edgetpu'"):
        LaneSettings(detector_backend="edgetpu")
    assert LaneSettings(detector_backend="onnxruntime-cpu").detector_backend == "onnxruntime-cpu"


def test_an_accelerator_this_onnxruntime_lacks_is_refused_not_run_on_the_cpu() -> None:
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has TensorRT")
    models = load_models()
    with pytest.raises(DetectorBackendError, match="no TensorrtExecutionProvider"):
        make_detector(models.path(models.detector), DetectorConfig(backend="onnxruntime-tensorrt"))


def test_a_name_is_registered_once() -> None:
    with pytest.raises(DetectorBackendError, match="registered already"):
        register_detector_backend(DEFAULT_BACKEND, "another")(lambda model, config: None)  # type: ignore[arg-type,return-value]


class CountingDetector:
    """A real detector that also counts its frames: what an accelerator entry would wrap."""

    def __init__(self, inner: FrameDetector) -> None:
        self.inner, self.frames, self.last_inference_s = inner, 0, 0.0

    def detect(self, frame: np.ndarray) -> Detections:
        self.frames += 1
        found = self.inner.detect(frame)
        self.last_inference_s = self.inner.last_inference_s
        return found


def test_the_pipeline_runs_the_detector_it_is_handed(real_photo: np.ndarray) -> None:
    models = load_models()
    handed = CountingDetector(
        make_detector(models.path(models.detector), DetectorConfig(confidence=0.1))
    )
    pipeline = LanePipeline(models, LaneZones.standard(640, 480), detector=handed)
    try:
        for _ in range(3):
            pipeline.process(real_photo, 0.0)
    finally:
        pipeline.close()
    assert handed.frames == 3
    assert pipeline.stats.detector_seconds > 0


def test_a_lane_sharing_its_computer_runs_its_models_on_the_threads_it_is_told(
    tmp_path: Path,
) -> None:
    """Two demo lanes on two cores with the profile's two threads each spun against each other:
    frames took 76 ms not 32, 16% were dropped and honest customers became false alerts."""
    from checkout_node.service import LaneService

    shared = LaneService(LaneSettings(data_dir=tmp_path, camera="none.mp4", inference_threads=1))
    own = LaneService(LaneSettings(data_dir=tmp_path / "own", camera="none.mp4"))
    try:
        detector = shared.lane.pipeline.detector
        assert shared.lane.pipeline.threads == 1
        assert detector.session.get_session_options().intra_op_num_threads == 1  # type: ignore[union-attr]
        assert own.lane.pipeline.threads == own.models.threads == 2  # the bundle's profile
    finally:
        shared.lane.pipeline.close()
        own.lane.pipeline.close()
    with pytest.raises(ValidationError, match="inference_threads"):
        LaneSettings(inference_threads=0)


def test_a_lane_setting_switches_the_birth_verifier_off(tmp_path: Path) -> None:
    """IT's way out where a store's counter fools the verifier: the detector's score alone."""
    from checkout_node.service import LaneService

    off = LaneService(LaneSettings(data_dir=tmp_path, camera="none.mp4", verify_births=False))
    on = LaneService(LaneSettings(data_dir=tmp_path / "on", camera="none.mp4"))
    try:
        assert on.models.verifier is not None  # the shipped bundle carries one
        assert on.lane.pipeline.birth_verifier is not None
        assert off.lane.pipeline.birth_verifier is None
    finally:
        off.lane.pipeline.close()
        on.lane.pipeline.close()
