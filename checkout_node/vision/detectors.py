"""Detector backends behind one registry, so a new way of running the lane's detector (an
accelerator's runtime, another model format) is an entry here and not an edit of the pipeline.

The lane pipeline asks for a detector by backend name with a typed :class:`DetectorConfig`
(Frigate's design: detector plug-ins, each with its own typed config). Every backend returns a
:class:`FrameDetector`: boxes, scores and every class's score in frame pixels, decoded and
suppressed as ``checkout_node.vision.detector`` documents, so tracking and counting never know
which backend ran.

Today's entries all run the bundle's ONNX file on onnxruntime and differ in the execution
provider: ``onnxruntime`` takes the best one this build has, ``onnxruntime-cpu`` only the CPU (the
reference every accelerator is compared against), and one entry per accelerator refuses to start
on a build without its provider rather than fall back to the CPU unnoticed: a lane configured for
its Jetson's TensorRT that silently ran on four ARM cores would miss most products at its frame
rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from checkout_node.vision.detector import Detections, Detector, choose_providers
from product_db.errors import LaneGuardError

DEFAULT_BACKEND = "onnxruntime"


class DetectorBackendError(LaneGuardError, ValueError):
    """A detector backend that is not registered, or cannot run on this computer."""


class FrameDetector(Protocol):
    """What the lane pipeline needs of a detector."""

    last_inference_s: float  # the model's own time for the last frame (the rest is overhead)

    def detect(self, frame: np.ndarray) -> Detections: ...


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """How the lane runs its detector; every backend takes the same fields."""

    backend: str = DEFAULT_BACKEND
    threads: int = 2
    confidence: float = 0.25  # boxes under this score are dropped before tracking
    iou: float = 0.5
    nms_groups: tuple[int, ...] | None = None  # suppression group of each class id


BackendFactory = Callable[[Path, DetectorConfig], FrameDetector]


@dataclass(frozen=True, slots=True)
class DetectorBackend:
    name: str
    description: str
    make: BackendFactory


_BACKENDS: dict[str, DetectorBackend] = {}


def register_detector_backend(
    name: str, description: str
) -> Callable[[BackendFactory], BackendFactory]:
    """Add a backend under ``name``; a second backend with the same name is refused."""

    def register(make: BackendFactory) -> BackendFactory:
        if name in _BACKENDS:
            raise DetectorBackendError(f"a detector backend named {name!r} is registered already")
        _BACKENDS[name] = DetectorBackend(name, description, make)
        return make

    return register


def detector_backends() -> dict[str, str]:
    """Every registered backend's name and what it is."""
    return {name: backend.description for name, backend in sorted(_BACKENDS.items())}


def make_detector(model: Path, config: DetectorConfig) -> FrameDetector:
    """The detector ``config.backend`` makes for the model file ``model``."""
    backend = _BACKENDS.get(config.backend)
    if backend is None:
        raise DetectorBackendError(
            f"unknown detector backend {config.backend!r}; choose from {sorted(_BACKENDS)}"
        )
    return backend.make(model, config)


def _onnxruntime(model: Path, config: DetectorConfig, providers: list[str]) -> Detector:
    return Detector(
        model,
        config.threads,
        providers=providers,
        confidence=config.confidence,
        iou=config.iou,
        nms_groups=config.nms_groups,
    )


@register_detector_backend(DEFAULT_BACKEND, "onnxruntime, the best execution provider it has")
def _best_provider(model: Path, config: DetectorConfig) -> FrameDetector:
    return _onnxruntime(model, config, choose_providers())


@register_detector_backend("onnxruntime-cpu", "onnxruntime on the CPU only")
def _cpu_only(model: Path, config: DetectorConfig) -> FrameDetector:
    return _onnxruntime(model, config, ["CPUExecutionProvider"])


def _accelerated(provider: str) -> BackendFactory:
    """A backend that runs on ``provider`` (with the CPU for the operators it lacks) or
    refuses to start."""

    def make(model: Path, config: DetectorConfig) -> FrameDetector:
        import onnxruntime as ort

        present = ort.get_available_providers()
        if provider not in present:
            raise DetectorBackendError(
                f"this onnxruntime has no {provider} (it has {present}); install the build "
                f"for this board, or choose the backend {DEFAULT_BACKEND!r}"
            )
        detector = _onnxruntime(model, config, [provider, "CPUExecutionProvider"])
        # onnxruntime retries on the CPU by itself when a provider fails to load (a missing
        # CUDA or TensorRT library): refused here, as a provider not built in is above.
        running = detector.session.get_providers()
        if not running or running[0] != provider:
            raise DetectorBackendError(
                f"{provider} did not start here (onnxruntime runs {running}); check the "
                f"board's libraries, or choose the backend {DEFAULT_BACKEND!r}"
            )
        return detector

    return make


for _name, _provider, _what in (
    ("onnxruntime-tensorrt", "TensorrtExecutionProvider", "NVIDIA TensorRT (Jetson)"),
    ("onnxruntime-cuda", "CUDAExecutionProvider", "NVIDIA CUDA"),
    ("onnxruntime-openvino", "OpenVINOExecutionProvider", "Intel OpenVINO (x86 iGPU, NPU)"),
):
    register_detector_backend(_name, f"onnxruntime on {_what}; refused where absent")(
        _accelerated(_provider)
    )
