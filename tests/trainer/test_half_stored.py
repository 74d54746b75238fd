"""ONNX weights stored at half precision: the file shrinks, the graph still computes in float32
on weights rounded to float16, and what float16 cannot hold stays float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from laneguard.sessions import inference_session
from trainer.quantize import HALF_STORED_MIN_ELEMENTS, with_half_stored_weights


def _model(path: Path) -> dict[str, np.ndarray]:
    """x (1, 16) -> (relu(x @ w + b) @ w / max(huge)) @ fed: ``w`` shared by two nodes, a
    small bias, a tensor beyond float16's range and an initializer that is also a graph input
    (a caller may feed it)."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.normal(0, 1, (16, 16)).astype(np.float32),
        "b": rng.normal(0, 1, (16,)).astype(np.float32),
        "huge": np.full((1, 16 * 8), 1e6, np.float32),
        "fed": rng.normal(0, 1, (16, 16)).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["y1"]),
        helper.make_node("ReduceMax", ["huge"], ["m"], keepdims=0),
        helper.make_node("Div", ["y1", "m"], ["y2"]),
        helper.make_node("MatMul", ["y2", "fed"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "shared",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16]),
            helper.make_tensor_value_info("fed", TensorProto.FLOAT, [16, 16]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return weights


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return np.asarray(inference_session(path, 1).run(["y"], {"x": x})[0])


def test_weights_are_stored_half_and_computed_in_float(tmp_path: Path) -> None:
    weights = _model(tmp_path / "full.onnx")
    half = with_half_stored_weights(tmp_path / "full.onnx", tmp_path / "half.onnx")
    stored = {t.name: t for t in onnx.load(str(half)).graph.initializer}
    assert stored["w__float16"].data_type == TensorProto.FLOAT16 and "w" not in stored
    assert len(weights["b"]) < HALF_STORED_MIN_ELEMENTS
    assert stored["b"].data_type == TensorProto.FLOAT  # too small to gain anything
    assert stored["huge"].data_type == TensorProto.FLOAT  # 1e6 is beyond float16
    assert stored["fed"].data_type == TensorProto.FLOAT  # a graph input a caller may feed
    x = np.random.default_rng(1).normal(0, 1, (1, 16)).astype(np.float32)
    got, full = _run(half, x), _run(tmp_path / "full.onnx", x)
    assert got.dtype == np.float32
    # Exactly the float graph on float16-rounded w, and close to the original.
    rounded = tmp_path / "rounded.onnx"
    model = onnx.load(str(tmp_path / "full.onnx"))
    for tensor in model.graph.initializer:
        if tensor.name == "w":
            tensor.CopyFrom(
                numpy_helper.from_array(weights["w"].astype(np.float16).astype(np.float32), "w")
            )
    onnx.save(model, str(rounded))
    np.testing.assert_allclose(got, _run(rounded, x), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got, full, rtol=5e-3, atol=1e-8)
    assert not np.array_equal(got, full)  # it did round
    assert half.stat().st_size < (tmp_path / "full.onnx").stat().st_size
