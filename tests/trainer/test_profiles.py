"""Hardware profiles: each board gets the most accurate detector that fits its budget, with a
board we cannot time judged by the detector's multiply-adds and the board's stated rate."""

from __future__ import annotations

from laneguard.bundle import ModelFile
from trainer.bootstrap import (
    BOARD_GMACS_PER_S,
    PROFILE_BUDGETS_MS,
    board_latency_ms,
    choose_profiles,
)


def _model(name: str, role: str, precision: str, latency: float, **metrics: float) -> ModelFile:
    return ModelFile.model_validate(
        {
            "file": name,
            "role": role,
            "precision": precision,
            "input_size": 320,
            "latency_ms": latency,
            "metrics": metrics,
        }
    )


def _detector(name: str, precision: str, latency: float, gmacs: float, map50: float) -> ModelFile:
    return _model(name, "detector", precision, latency, mAP50=map50, gmacs=gmacs)


def test_a_board_we_cannot_time_is_judged_by_multiply_adds() -> None:
    big = _detector("big-fp32.onnx", "fp32", 18.0, 1.2, 0.95)
    pi_rate = BOARD_GMACS_PER_S["raspberry-pi-5"]["fp32"]
    assert board_latency_ms(big, "raspberry-pi-5") == round(1000 * 1.2 / pi_rate, 1)
    assert board_latency_ms(big, "x86-2core") == 18.0  # measured here, not estimated
    old = _model("old.onnx", "detector", "fp32", 10.0, mAP50=0.9)
    assert board_latency_ms(old, "raspberry-pi-5") == 25.0  # no multiply-adds: the slowdown


def test_each_board_takes_the_most_accurate_detector_that_fits() -> None:
    big = _detector("big-fp32.onnx", "fp32", 18.0, 1.2, 0.95)  # Pi 5: 80 ms, over 60
    small = _detector("small-int8.onnx", "int8", 9.0, 0.6, 0.90)  # Pi 5: 27 ms
    embedder = _model("e.onnx", "embedder", "fp32", 5.0, known_top1=0.8)
    chosen = {p.name: p.detector for p in choose_profiles([big, small, embedder])}
    assert chosen == {
        "x86-2core": "big-fp32.onnx",
        "raspberry-pi-5": "small-int8.onnx",
        "jetson-orin-nano": "big-fp32.onnx",
    }
    assert set(chosen) == set(PROFILE_BUDGETS_MS)
