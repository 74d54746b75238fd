"""The embedder menu: EfficientNet-Lite0/1 x input 128/160/192/224 x fp32/int8, with what each
costs and how well its pretrained features tell real produce apart, and the variant each
hardware profile gets.

Accuracy here is the ImageNet features alone (no fine-tuning: training sixteen variants is
hours on this machine): 1-nearest-neighbour top-1 of real produce test photos against a few
train photos per class, through the exported ONNX file, fp32 and int8. It ranks the menu; the
fine-tuned figure of the variant shipped is in the bundle's manifest. Latency is measured here
(one thread: on a lane the detector has the others); boards are estimated from it with the
per-profile slowdown the bundle's profiles use (trainer.bootstrap.PROFILE_SLOWDOWN).

The budget, written down (trainer.bootstrap.EMBED_CROP_BUDGET_MS): a counted item's identity
is handed over ``embed_lag_frames`` (3) frames after it counts, 100 ms at 30 frames/s, for its
3 kept crops; so one crop may take at most a third of that, 33 ms, on one thread of the board.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from laneguard.embedding import MEAN, STD, Embedder, preprocess
from trainer.bootstrap import EMBED_CROP_BUDGET_MS, PROFILE_SLOWDOWN
from trainer.cost import multiply_adds
from trainer.embedder import embed_paths, export_onnx, image_folder, read_image
from trainer.quantize import median_latency_ms, quantize_int8

ARCHS = ("lite0", "lite1")
SIZES = (128, 160, 192, 224)
CROP_BUDGET_MS = EMBED_CROP_BUDGET_MS  # see the module's doc


def frozen_embedder(arch: str) -> Any:
    """The pretrained network's pooled features, L2-normalised, from lane-scaled input."""
    import torch
    from torch import nn

    from trainer.backbones import PretrainedFeatures, load_backbone

    network, _ = load_backbone(arch)
    features = PretrainedFeatures(network, float(MEAN[0]), float(STD[0]))

    class Normalised(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = features

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.features(x), dim=1)

    return Normalised().eval()


def top1(model: Path, refs: dict[str, list[Path]], queries: dict[str, list[Path]]) -> float:
    """1-NN top-1 of ``queries`` against every reference vector."""
    embedder = Embedder(model)
    codes = sorted(refs)
    ref_vectors = [embed_paths(embedder, refs[c]) for c in codes]
    matrix = np.concatenate(ref_vectors)
    owner = np.concatenate([[i] * len(v) for i, v in enumerate(ref_vectors)])
    right = total = 0
    for index, code in enumerate(codes):
        if not queries.get(code):
            continue
        vectors = embed_paths(embedder, queries[code])
        right += int((owner[(vectors @ matrix.T).argmax(axis=1)] == index).sum())
        total += len(vectors)
    return round(right / max(total, 1), 4)


def choose(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per profile, the most accurate variant whose estimated crop latency fits the budget
    (the fastest when none fits)."""
    chosen = {}
    for profile, slowdown in PROFILE_SLOWDOWN.items():
        estimates = [(row, row["latency_ms_1_thread"] * slowdown) for row in rows]
        fitting = [(row, ms) for row, ms in estimates if ms <= CROP_BUDGET_MS]
        if fitting:
            row, ms = max(fitting, key=lambda pair: (pair[0]["top1"], -pair[1]))
        else:
            row, ms = min(estimates, key=lambda pair: pair[1])
        chosen[profile] = {
            "variant": row["variant"],
            "estimated_crop_ms": round(ms, 2),
            "top1": row["top1"],
            "fits": ms <= CROP_BUDGET_MS,
        }
    return chosen


def run(
    photos: Path,
    refs_per_class: int = 5,
    queries_per_class: int = 10,
    progress: Callable[[str], None] = print,
    archs: tuple[str, ...] = ARCHS,
    sizes: tuple[int, ...] = SIZES,
) -> dict[str, Any]:
    """Every variant of the menu, measured; the choice per profile."""
    train = image_folder(photos / "images" / "train")
    test = image_folder(photos / "images" / "test")
    refs = {c: sorted(p)[:refs_per_class] for c, p in train.items()}
    queries = {c: sorted(p)[:queries_per_class] for c, p in test.items() if c in refs}
    calibration_paths = [p for paths in train.values() for p in sorted(paths)[-1:]][:32]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for arch in archs:
            model = frozen_embedder(arch)
            for size in sizes:
                fp32 = export_onnx(model, size, Path(scratch) / f"{arch}-{size}-fp32.onnx")
                calibration = [preprocess([read_image(p)], size) for p in calibration_paths]
                int8 = quantize_int8(fp32, Path(scratch) / f"{arch}-{size}-int8.onnx", calibration)
                macs = multiply_adds(model, size)
                for precision, path in (("fp32", fp32), ("int8", int8)):
                    row = {
                        "variant": f"efficientnet-{arch}/{size}/{precision}",
                        "arch": f"efficientnet-{arch}",
                        "input_size": size,
                        "precision": precision,
                        "mmacs": round(macs / 1e6, 1),
                        "file_mb": round(path.stat().st_size / 1e6, 2),
                        "latency_ms_1_thread": median_latency_ms(path, threads=1, runs=40),
                        "latency_ms_2_threads": median_latency_ms(path, threads=2, runs=40),
                        "top1": top1(path, refs, queries),
                    }
                    progress(
                        f"{row['variant']}: {row['mmacs']} MMAC, "
                        f"{row['latency_ms_1_thread']} ms (1 thread), top-1 {row['top1']}"
                    )
                    rows.append(row)
    return {
        "accuracy": (
            f"ImageNet features, no fine-tuning: real produce photos, {refs_per_class} train "
            f"photos per class as references, {queries_per_class} test photos per class"
        ),
        "queries": sum(len(q) for q in queries.values()),
        "classes": len(refs),
        "crop_budget_ms": round(CROP_BUDGET_MS, 1),
        "profile_slowdown": PROFILE_SLOWDOWN,
        "variants": rows,
        "chosen": choose(rows),
    }
