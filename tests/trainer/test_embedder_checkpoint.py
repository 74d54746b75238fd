"""An embedder run cut after an epoch resumes from its checkpoint and ends where an uncut run
ends; a checkpoint of another recipe is said and trained over; checkpoints are owner-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from trainer.embedder import EmbedderRun, image_folder, train_embedder


class Cut(Exception):
    """The session ended in the middle of the run."""


@pytest.fixture()
def samples(tmp_path: Path) -> dict[str, list[Path]]:
    generator = np.random.default_rng(0)
    for code, colour in (("A", (200, 40, 40)), ("B", (40, 200, 40)), ("C", (40, 40, 200))):
        folder = tmp_path / "crops" / code
        folder.mkdir(parents=True)
        for n in range(4):
            crop = np.clip(generator.normal(colour, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{n}.png"), crop)
    return image_folder(tmp_path / "crops")


def _train(samples: dict[str, list[Path]], **kwargs: Any) -> EmbedderRun:
    return train_embedder(
        samples, arch="lanenet", epochs=3, batch=4, input_size=32, seed=1, **kwargs
    )


def test_a_cut_run_resumes_and_ends_as_an_uncut_one(
    samples: dict[str, list[Path]], tmp_path: Path
) -> None:
    whole = _train(samples, progress=lambda line: None)
    checkpoint = tmp_path / "work" / "embedder-checkpoint.pt"

    def cut_at_second_epoch(line: str) -> None:
        if line.startswith("embedder epoch 2/3"):
            raise Cut

    with pytest.raises(Cut):
        _train(samples, progress=cut_at_second_epoch, checkpoint=checkpoint)
    assert checkpoint.stat().st_mode & 0o777 == 0o600
    lines: list[str] = []
    resumed = _train(samples, progress=lines.append, checkpoint=checkpoint)
    assert lines[0].startswith(f"embedder resumes from {checkpoint} after epoch 1/3")
    assert [line.split(":")[0] for line in lines[1:]] == [
        "embedder epoch 2/3",
        "embedder epoch 3/3",
    ]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for name, value in whole.model.state_dict().items():
        np.testing.assert_allclose(
            resumed.model.state_dict()[name].numpy(),
            value.numpy(),
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )
    # Another recipe (more epochs) does not take this run's state: it trains anew.
    lines.clear()
    train_embedder(
        samples,
        arch="lanenet",
        epochs=4,
        batch=4,
        input_size=32,
        seed=1,
        progress=lines.append,
        checkpoint=checkpoint,
    )
    assert lines[0] == f"{checkpoint} holds another recipe's embedder: training anew"
    assert len(lines) == 5
    assert checkpoint.parent.stat().st_mode & 0o777 == 0o700
    # The same file names with other pixels (a simulator changed, crops rendered anew) are
    # other data: nothing is resumed over them.
    _train(samples, progress=lambda line: None, checkpoint=checkpoint)
    lines.clear()
    _train(samples, progress=lines.append, checkpoint=checkpoint)
    assert lines[0].startswith(f"embedder resumes from {checkpoint} after epoch 3/3")
    first = samples["A"][0]
    cv2.imwrite(str(first), 255 - cv2.imread(str(first)))
    lines.clear()
    _train(samples, progress=lines.append, checkpoint=checkpoint)
    assert lines[0] == f"{checkpoint} holds another recipe's embedder: training anew"
