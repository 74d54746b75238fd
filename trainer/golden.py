"""Golden frames: the simulated lane frames, with every product's box and code, that a lane
smoke-tests a candidate bundle on before it may go live (checkout_node.smoke_test).

The trainer renders them and puts them in the bundle, so the lane needs no simulator: it checks
a candidate on frames the candidate's signature covers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np

from laneguard.bundle import GOLDEN_FRAMES, derive_bundle, read_manifest

GOLDEN_SEED = 4242
MIN_VISIBLE = 0.5  # items at least this visible are the ones the detector must find


def render_golden_frames(frames: int = 12) -> bytes:
    """An honest simulated checkout's frames (0.4 s apart) and the boxes of the products shown
    at least half, as the ``.npz`` bytes the bundle carries: the frames as JPEG (a tenth of the
    raw pixels' size), one byte string cut at ``ends``, and the boxes as JSON."""
    from simulator.scenario import build_scenario
    from simulator.scene import SceneRenderer
    from simulator.world import World

    world = World.from_catalog()
    scenario = build_scenario("honest", GOLDEN_SEED, world, fps=30.0, n_items=16)
    renderer = SceneRenderer(scenario, world)
    images, labels = [], []
    step = round(0.4 * scenario.fps)  # frames apart enough to differ
    for index in range(step, scenario.n_frames, step):
        image, boxes = renderer.render(index)
        items = [
            {"box": [b.x1, b.y1, b.x2, b.y2], "code": b.code}
            for b in boxes
            if b.cls == 0 and b.visible >= MIN_VISIBLE
        ]
        if items:
            images.append(image)
            labels.append(items)
        if len(images) == frames:
            break
    encoded = [cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1] for image in images]
    buffer = io.BytesIO()
    np.savez(
        buffer,
        jpeg=np.concatenate(encoded),
        ends=np.cumsum([len(e) for e in encoded]),
        boxes=np.array(json.dumps(labels)),
    )
    return buffer.getvalue()


def write_golden_frames(path: Path, frames: int = 12) -> Path:
    path.write_bytes(render_golden_frames(frames))
    return path


def add_golden_frames(bundle: Path, out: Path) -> Path:
    """``bundle`` with golden frames (rendered anew; the same frames every time), unsigned: sign
    it afterwards where lanes need it. For bundles made before every bundle carried them."""
    member = {GOLDEN_FRAMES: render_golden_frames()}
    present = GOLDEN_FRAMES in read_manifest(bundle).files
    return derive_bundle(
        bundle,
        out,
        replace=member if present else None,
        add=None if present else member,
        fields={"golden_frames": GOLDEN_FRAMES},
    )
