"""INT8 static quantisation with onnxruntime, calibrated on real inputs, and latency timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def quantize_int8(
    fp32: Path, int8: Path, calibration: Sequence[np.ndarray], float_stem: bool = False
) -> Path:
    """QDQ int8 (per-channel weights, uint8 activations) calibrated on ``calibration`` inputs.

    ``float_stem``: keep the first convolution in float. For the fine-tuned EfficientNet-Lite
    embedder, quantising that one 3-channel convolution on the image cost 11 points of top-1 on
    real produce photos (0.766 float, 0.660 all int8, 0.754 with the stem float; more or other
    calibration, percentile or entropy ranges, or float depthwise layers did not help), for a
    few percent of the network's time.

    ``calibration`` holds model-ready batches of one (1, C, H, W) float32 array each. Only the
    convolutions and matrix products are quantised, where the time goes: YOLO's output joins
    box coordinates (0..640) and class scores (0..1) in one tensor, and one int8 scale for both
    wipes out the scores (measured: mAP50 0.80 -> 0.00 when everything was quantised).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("int8 calibration needs at least one input")
    from laneguard.sessions import inference_session

    input_name = inference_session(fp32, 1).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[np.ndarray] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._items, None)
            return None if item is None else {input_name: item}

    int8.parent.mkdir(parents=True, exist_ok=True)
    prepared = int8.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    excluded = [_first_conv(prepared)] if float_stem else []
    quantize_static(
        str(prepared),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(QUANTIZED_OPS),
        nodes_to_exclude=excluded,
    )
    prepared.unlink(missing_ok=True)
    _copy_metadata(fp32, int8)
    return int8


HALF_STORED_MIN_ELEMENTS = 64  # smaller initializers (biases, scalars) gain nothing stored half
HALF_MAX = 65504.0  # the largest finite float16


def with_half_stored_weights(fp32: Path, out: Path) -> Path:
    """``fp32`` with its weight initializers stored as float16, each cast back to float32 by a
    Cast node the session folds away when it loads: the file is half the size, the model still
    computes in float32 and differs from ``fp32`` only by the weights' rounding (relative 5e-4).

    Why not int8: for the ImageNet classifier the verifier is, int8 moved 3-5% of crops to the
    other side of its threshold; half-stored weights move almost none, and half the file is what
    keeps the bundle within what can be carried."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(fp32))
    graph = model.graph
    inputs = {value.name for value in graph.input}  # an initializer a caller may override
    initializers, casts = [], []
    for tensor in graph.initializer:
        if (
            tensor.data_type != TensorProto.FLOAT
            or np.prod(tensor.dims) < HALF_STORED_MIN_ELEMENTS
            or tensor.name in inputs
        ):
            initializers.append(tensor)
            continue
        values = numpy_helper.to_array(tensor)
        # Beyond float16's range a weight would become inf; such a tensor stays float32.
        if not np.isfinite(values).all() or np.abs(values).max(initial=0.0) > HALF_MAX:
            initializers.append(tensor)
            continue
        half = values.astype(np.float16)
        stored = f"{tensor.name}__float16"
        initializers.append(numpy_helper.from_array(half, stored))
        casts.append(helper.make_node("Cast", [stored], [tensor.name], to=TensorProto.FLOAT))
    nodes = list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend(casts + nodes)  # a Cast's output must exist before its first reader
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def _first_conv(model_path: Path) -> str:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    for node in model.graph.node:
        if node.op_type == "Conv":
            return str(node.name)
    raise ValueError(f"{model_path} has no convolution to keep in float")


def _copy_metadata(source: Path, target: Path) -> None:
    """Keep the float model's metadata (ultralytics stores class names, stride and input size
    there; without them its evaluation reads the int8 model as a different model)."""
    import onnx

    float_model = onnx.load(str(source), load_external_data=False)
    quantised = onnx.load(str(target))
    present = {p.key for p in quantised.metadata_props}
    for prop in float_model.metadata_props:
        if prop.key not in present:
            quantised.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(quantised, str(target))


def median_latency_ms(model: Path, threads: int = 2, runs: int = 60, warmup: int = 10) -> float:
    """Median wall time of one session.run on this machine, batch 1."""
    from laneguard.sessions import inference_session

    session = inference_session(model, threads)
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {spec.name: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {spec.name: x})
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)
