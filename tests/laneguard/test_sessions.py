"""Every model's session is opened one way: the threads it is given, one across operators."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from laneguard.sessions import inference_session


def _identity(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_a_session_takes_the_threads_it_is_given_on_the_cpu(tmp_path: Path) -> None:
    import numpy as np

    session = inference_session(_identity(tmp_path / "relu.onnx"), 3)
    options = session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    out = session.run(None, {"x": np.array([[-1.0, 0.0, 2.0]], np.float32)})[0]
    assert out.tolist() == [[0.0, 0.0, 2.0]]


def test_a_session_runs_on_the_providers_it_is_given(tmp_path: Path) -> None:
    import onnxruntime as ort

    session = inference_session(_identity(tmp_path / "relu.onnx"), 1, ["CPUExecutionProvider"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    level = session.get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_no_threads_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one thread, got 0"):
        inference_session(_identity(tmp_path / "relu.onnx"), 0)
