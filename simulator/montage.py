"""A contact sheet of the simulated world: one frame of every scenario kind, labelled."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from simulator.scenario import KINDS, build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World

BOX_COLOURS = {0: (60, 220, 60), 1: (230, 120, 40), 2: (40, 40, 230)}


def montage(
    world: World, seed: int = 1, columns: int = 4, tile_width: int = 320, boxes: bool = True
) -> np.ndarray:
    """A grid with a busy frame of each kind; ground-truth boxes drawn when ``boxes``."""
    tiles = []
    for kind in KINDS:
        scenario = build_scenario(kind, seed, world, fps=10.0)
        renderer = SceneRenderer(scenario, world)
        best, best_boxes = None, -1
        for index in range(0, scenario.n_frames, 2):  # the frame with most in view
            frame, found = renderer.render(index)
            if len(found) > best_boxes:
                best, best_boxes, best_found = frame, len(found), found
        assert best is not None
        frame = best.copy()
        if boxes:
            for box in best_found:
                cv2.rectangle(frame, (box.x1, box.y1), (box.x2, box.y2), BOX_COLOURS[box.cls], 2)
        cv2.rectangle(frame, (0, 0), (frame.shape[1], 34), (20, 20, 20), -1)
        cv2.putText(
            frame,
            kind.replace("_", " "),
            (10, 24),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.8,
            (255, 255, 255),
            2,
            cv2.LINE_AA,
        )
        height = int(frame.shape[0] * tile_width / frame.shape[1])
        tiles.append(cv2.resize(frame, (tile_width, height), interpolation=cv2.INTER_AREA))
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 40))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def write_montage(world: World, out: str | Path, seed: int = 1) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), montage(world, seed)):
        raise OSError(f"cannot write {path}")
    return path
