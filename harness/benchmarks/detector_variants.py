"""The detector menu: the shipped detector (YOLO11 'p' from scratch) against YOLO11's neck and
head over an ImageNet-pretrained EfficientNet-Lite0, at the lane's input sizes, fp32 and int8:
what each costs to run on a lane and to train.

Cost does not depend on the weights, so the pretrained variants are measured as built (ImageNet
backbone, untrained neck and head) and need no training run: whether one is worth its cost is
then a question of accuracy alone, which `laneguard train bootstrap --detector-backbone` answers
on the test scenes (a GPU's job; the training cost here says why). The lane's frame budget at
the camera's 30 frames/s is 33 ms for everything; `bench node-pipeline` measures the rest of a
frame (a fifth of it outside session.run with the shipped detector).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from laneguard.bundle import SHIPPED_BUNDLE, extract_bundle, read_manifest
from laneguard.detection import letterbox
from trainer.cost import multiply_adds
from trainer.quantize import median_latency_ms, quantize_int8

BACKBONES: tuple[str | None, ...] = (None, "efficientnet-lite0")
SCALES = ("p", "n")
SIZES = (256, 320)
FRAME_BUDGET_MS = 1000 / 30
TRAIN_BATCH = 16


def _checkout_frames(count: int = 16) -> list[np.ndarray]:
    """Simulator frames of a checkout, for int8 ranges (letterboxed per input size)."""
    from simulator.scenario import build_scenario
    from simulator.scene import SceneRenderer
    from simulator.world import World

    world = World.from_catalog()
    scenario = build_scenario("honest", 0, world)
    renderer = SceneRenderer(scenario, world)
    step = max(1, scenario.n_frames // count)
    return [renderer.render(i)[0] for i in range(0, step * count, step)]


def _train_step_s(network: Any, size: int) -> float:
    """Seconds for one forward and backward pass over a batch (no data loading, no loss
    assignment: the network's own share of a training step), median of 3 after one warm-up."""
    import torch

    network.train()
    x = torch.rand(TRAIN_BATCH, 3, size, size)
    times = []
    for attempt in range(4):
        start = time.perf_counter()
        out = network(x)
        tensors = [
            v for v in (out.values() if isinstance(out, dict) else out) if torch.is_tensor(v)
        ]
        torch.stack([t.float().mean() for t in tensors]).sum().backward()
        if attempt:
            times.append(time.perf_counter() - start)
        network.zero_grad(set_to_none=True)
    return round(float(np.median(times)), 2)


def run(
    progress: Callable[[str], None] = print,
    backbones: tuple[str | None, ...] = BACKBONES,
    scales: tuple[str, ...] = SCALES,
    sizes: tuple[int, ...] = SIZES,
    train_size: int = 320,
) -> dict[str, Any]:
    """Every variant measured here, with the shipped bundle's detector files as they are."""
    from trainer.detector import export_detector_onnx, model_yaml_for
    from trainer.offline import configure_offline
    from trainer.pretrained_detector import backbone_slot

    configure_offline()
    from ultralytics import YOLO

    rows: list[dict[str, Any]] = []
    frames = _checkout_frames()
    manifest = read_manifest(SHIPPED_BUNDLE)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        extract_bundle(SHIPPED_BUNDLE, scratch / "shipped")
        for model in manifest.models:
            if model.role == "detector":
                path = scratch / "shipped" / model.file
                rows.append(
                    {
                        "variant": f"shipped {manifest.version} {model.file}",
                        "backbone": "none (YOLO11 p from scratch)",
                        "input_size": model.input_size,
                        "precision": model.precision,
                        "file_mb": round(path.stat().st_size / 1e6, 2),
                        "latency_ms": median_latency_ms(path, threads=2, runs=40),
                        "test_scene_mAP50": model.metrics.get("mAP50"),
                    }
                )
                progress(f"{rows[-1]['variant']}: {rows[-1]['latency_ms']} ms")
        training = []
        for backbone in backbones:
            for scale in scales:
                name = f"{backbone or 'yolo11'}-{scale}"
                with backbone_slot():
                    built = YOLO(str(model_yaml_for(scale, scratch / name, backbone)))
                network: Any = built.model
                weights = scratch / name / "weights.pt"
                built.save(str(weights))
                training.append(
                    {
                        "variant": name,
                        "parameters_m": round(
                            sum(p.numel() for p in network.parameters()) / 1e6, 2
                        ),
                        "train_step_s": _train_step_s(network, train_size),
                    }
                )
                progress(f"{name}: train step {training[-1]['train_step_s']} s per batch")
                if backbone is None:
                    continue  # its running cost is the shipped files'
                for size in sizes:
                    fp32 = export_detector_onnx(weights, scratch / f"{name}-{size}-fp32.onnx", size)
                    int8 = quantize_int8(
                        fp32,
                        scratch / f"{name}-{size}-int8.onnx",
                        [letterbox(f, size)[0] for f in frames],
                    )
                    macs = multiply_adds(network.float().eval(), size)
                    for precision, path in (("fp32", fp32), ("int8", int8)):
                        rows.append(
                            {
                                "variant": f"{name}/{size}/{precision}",
                                "backbone": f"{backbone} (ImageNet)",
                                "input_size": size,
                                "precision": precision,
                                "mmacs": round(macs / 1e6, 1),
                                "file_mb": round(path.stat().st_size / 1e6, 2),
                                "latency_ms": median_latency_ms(path, threads=2, runs=40),
                                "test_scene_mAP50": None,
                            }
                        )
                        progress(f"{rows[-1]['variant']}: {rows[-1]['latency_ms']} ms")
    for row in rows:
        row["fps_ceiling"] = round(1000 / row["latency_ms"], 1)
        row["leaves_ms_at_30fps"] = round(FRAME_BUDGET_MS - row["latency_ms"], 1)
    return {
        "threads": 2,
        "frame_budget_ms": round(FRAME_BUDGET_MS, 1),
        "train_batch": TRAIN_BATCH,
        "train_size": train_size,
        "variants": rows,
        "training": training,
    }
