"""`laneguard train camera`: a bundle's detector tuned to one camera from its frames alone (real
photos here, no label of ours), written as a candidate bundle a lane runs."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from checkout_node.model_bundle import load_models
from harness.evals.scenes import fit_to_lane_frame
from laneguard.bundle import Manifest, extracted, read_manifest
from laneguard.cli import main as laneguard_cli
from trainer.camera_tuning import CameraTuningConfig, self_labelled_frames, tune_to_camera


@pytest.fixture(scope="module")
def camera_frames(real_scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four real pile photos as a lane camera's 640x480 frames."""
    folder = tmp_path_factory.mktemp("camera")
    paths = []
    for photo in sorted((real_scenes / "toys").glob("scene_0000_000*.jpg"))[:4]:
        image = cv2.imread(str(photo))
        assert image is not None
        frame, _ = fit_to_lane_frame(image)
        paths.append(folder / photo.name)
        cv2.imwrite(str(paths[-1]), frame)
    return paths


def test_the_detector_labels_its_own_frames_sure_and_unsure(camera_frames: list[Path]) -> None:
    from laneguard.bundle import SHIPPED_BUNDLE

    folder, manifest = extracted(SHIPPED_BUNDLE)
    detector = next(
        m.file for m in manifest.models if m.role == "detector" and m.precision == "fp32"
    )
    config = CameraTuningConfig()
    frames = self_labelled_frames(camera_frames, folder / detector, config)
    assert len(frames) == 4
    boxes = [b for f in frames for b in f.boxes]
    assert any(b["kind"] == "track" for b in boxes), "the shipped detector is sure of some"
    for box in boxes:
        sure = box["score"] >= config.t1
        assert box["kind"] == ("track" if sure else "of_interest") and box["score"] >= config.t2


def test_a_tuned_bundle_keeps_everything_but_the_detector_and_a_lane_runs_it(
    camera_frames: list[Path], quick_bundle: tuple[Path, Manifest, list[str]], tmp_path: Path
) -> None:
    parent = read_manifest(quick_bundle[0])
    # The one-epoch quick detector is sure of little: low thresholds let its boxes teach.
    config = CameraTuningConfig(epochs=1, rehearsal_images=8, frame_repeats=1, t1=0.05, t2=0.01)
    out = tune_to_camera(
        quick_bundle[0], camera_frames, tmp_path / "work", tmp_path / "tuned.tar.gz", config,
        progress=lambda _: None,
    )  # fmt: skip
    tuned = read_manifest(out)
    assert tuned.parent_version == parent.version and tuned.release == parent.release + 1
    assert tuned.training_data["camera_tuning"]["frames"] == 4
    detectors = {m.file for m in parent.models if m.role == "detector"}
    assert {m.file for m in tuned.models if m.role == "detector"} == detectors
    for name, sha in parent.files.items():
        changed = tuned.files[name] != sha
        assert changed == (name in detectors or name == "detector-weights.pt"), name
    models = load_models(out)
    assert models.manifest.version == tuned.version


def test_the_command_refuses_a_folder_without_frames(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        laneguard_cli,
        [
            "train",
            "camera",
            "--frames",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "b.tar.gz"),
        ],
    )
    assert result.exit_code != 0
    assert "no .jpg, .jpeg or .png camera frames" in result.output
    assert not (tmp_path / "b.tar.gz").exists()


def test_a_fine_tune_starts_from_the_parent_weights(
    quick_bundle: tuple[Path, Manifest, list[str]], tmp_path: Path
) -> None:
    """Ultralytics drops a loaded model's weights when told pretrained=False and trains the
    architecture anew: every fine-tune would have started from nothing."""
    import torch

    from simulator.datasets import write_detect_dataset
    from simulator.world import World
    from trainer.detector import train_detector
    from trainer.weights import parent_weights

    folder, manifest = extracted(quick_bundle[0])
    quick = parent_weights(folder, manifest).detector
    assert quick is not None
    # The quick detector is one epoch from the same seeded start a new run makes: give its neck
    # and head weights of their own, so that where a run started from shows.
    checkpoint = torch.load(quick, map_location="cpu", weights_only=False)
    generator = torch.Generator().manual_seed(5)
    for key in ("ema", "model"):
        if checkpoint.get(key) is None:
            continue
        for name, value in checkpoint[key].state_dict().items():
            if name.endswith("conv.weight") and not name.startswith("model.0."):
                noise = torch.randn(value.shape, generator=generator).to(value.dtype)
                value.add_(noise * value.float().std().to(value.dtype) * 3)
    parent = tmp_path / "parent.pt"
    torch.save(checkpoint, parent)
    data = write_detect_dataset(World.from_catalog(), tmp_path / "data", 8, seed=3)
    run = train_detector(
        data.out / "data.yaml", tmp_path / "runs", epochs=1, imgsz=160, batch=4,
        parent_weights=parent,
    )  # fmt: skip

    def head(path: Path) -> torch.Tensor:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        model = (checkpoint.get("ema") or checkpoint["model"]).float()
        weights = [  # the neck and head: an ImageNet backbone is the same either way
            v.flatten()
            for k, v in model.state_dict().items()
            if k.endswith("conv.weight") and not k.startswith("model.0.")
        ]
        return torch.cat(weights)

    before, after = head(parent), head(run.weights)
    similarity = torch.nn.functional.cosine_similarity(before, after, dim=0)
    assert similarity > 0.9, (
        f"the tuned weights are not the parent's, moved a little ({similarity})"
    )
