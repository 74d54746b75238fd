"""The one way LaneGuard opens an onnxruntime session, for every model on every computer.

Why one place: the lane runs a detector, an embedder in a worker thread and the birth verifier
side by side on a board with 2-4 cores; each session's thread settings decide whether they share
the cores or fight over them (two lanes on two cores with two threads each took 76 ms a frame
instead of 32). A model that opened its session its own way would be the one that fights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

CPU = ("CPUExecutionProvider",)


def inference_session(
    model: str | Path, threads: int, providers: Sequence[str] | None = None
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``model`` with ``threads`` threads inside an
    operator and one across operators (a small model's graph is a chain: more only contend),
    every graph optimisation, on ``providers`` (default: the CPU)."""
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"a session needs at least one thread, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model), options, providers=list(providers or CPU))
