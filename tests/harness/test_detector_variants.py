"""The detector menu measures real files: the shipped bundle's detectors as they are, and the
pretrained-backbone variants exported and quantized for real."""

from __future__ import annotations

from harness.bench.detector_variants import table as detector_variants_table
from harness.benchmarks.detector_variants import run
from laneguard.bundle import SHIPPED_BUNDLE, read_manifest


def test_the_menu_measures_shipped_and_pretrained_detectors() -> None:
    result = run(
        progress=lambda _line: None,
        backbones=(None, "efficientnet-lite0"),
        scales=("p",),
        sizes=(160,),
        train_size=96,
    )
    rows = {row["variant"]: row for row in result["variants"]}
    shipped = read_manifest(SHIPPED_BUNDLE)
    for model in shipped.models:
        if model.role == "detector":
            row = rows[f"shipped {shipped.version} {model.file}"]
            assert row["test_scene_mAP50"] == model.metrics["mAP50"]
    fp32, int8 = rows["efficientnet-lite0-p/160/fp32"], rows["efficientnet-lite0-p/160/int8"]
    assert int8["file_mb"] < fp32["file_mb"] / 2  # quantized for real
    assert fp32["mmacs"] == int8["mmacs"] > 0 and fp32["test_scene_mAP50"] is None
    for row in rows.values():
        assert row["latency_ms"] > 0
        assert row["fps_ceiling"] == round(1000 / row["latency_ms"], 1)
    steps = {row["variant"]: row for row in result["training"]}
    # ImageNet features cost more to train through than the from-scratch pico network.
    assert steps["efficientnet-lite0-p"]["train_step_s"] > steps["yolo11-p"]["train_step_s"]
    assert steps["efficientnet-lite0-p"]["parameters_m"] > steps["yolo11-p"]["parameters_m"]
    table = detector_variants_table(result)
    assert any("efficientnet-lite0-p/160/int8" in line for line in table)
