"""`laneguard node ...`: the lane computer's commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from checkout_node.vision.counting import LaneZones

BUNDLE_OPTION = click.option(
    "--bundle",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Model bundle (default: the bootstrap bundle shipped with LaneGuard).",
)
PROFILE_OPTION = click.option(
    "--profile",
    default=None,
    help="Hardware profile from the bundle (x86-2core, raspberry-pi-5, jetson-orin-nano).",
)


@click.group()
def node() -> None:
    """The lane computer: watch the lane camera, count and recognise items."""


def _zones(zones_file: Path | None, width: int, height: int) -> LaneZones:
    import yaml

    if zones_file is None:
        return LaneZones.standard(width, height)
    data = yaml.safe_load(zones_file.read_text("utf-8"))
    try:
        return LaneZones.from_mapping(data.get("zones", data))
    except (ValueError, AttributeError) as exc:
        raise click.ClickException(f"{zones_file}: {exc}") from None


@node.command("replay")
@click.argument("video", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--events",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Scan/POS events (JSON lines) recorded with the video.",
)
@click.option(
    "--annotate",
    "annotate_out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the video with boxes, ids, codes and zones drawn.",
)
@click.option(
    "--zones",
    "zones_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="YAML/JSON with scan_area and bagging_area polygons (pixels).",
)
@click.option(
    "--crops",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Save each counted item's best crop here as TRACK.jpg.",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=None,
    help="onnxruntime threads (default: the hardware profile's, else 2).",
)
@click.option(
    "--detect-interval",
    type=click.IntRange(1, 4),
    default=1,
    show_default=True,
    help="Run the detector on every Nth frame; the tracker carries boxes between.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "int8"]),
    default=None,
    help="Run both models at this precision (overrides the profile's choice).",
)
@BUNDLE_OPTION
@PROFILE_OPTION
def replay_command(
    video: Path,
    events: Path | None,
    annotate_out: Path | None,
    zones_file: Path | None,
    crops: Path | None,
    threads: int | None,
    detect_interval: int,
    precision: str | None,
    bundle: Path | None,
    profile: str | None,
) -> None:
    """Process a recorded lane VIDEO; print each counted item (and each event) as a JSON line."""
    import cv2

    from checkout_node.model_bundle import load_models
    from checkout_node.sources import video_frames
    from checkout_node.vision.annotate import annotate
    from checkout_node.vision.pipeline import CountedItem, LanePipeline
    from laneguard.bundle import SHIPPED_BUNDLE, BundleError

    pending = _read_events(events) if events is not None else []
    try:
        models = load_models(
            bundle or SHIPPED_BUNDLE,
            profile=profile,
            detector_precision=precision,
            embedder_precision=precision,
        )
    except (BundleError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    width, height, fps = _video_shape(video)
    zones = _zones(zones_file, width, height)
    pipeline = LanePipeline(
        models,
        zones,
        threads=threads,
        track_hands=annotate_out is not None,
        detect_interval=detect_interval,
    )
    writer = None
    if annotate_out is not None:
        annotate_out.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(
            str(annotate_out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height)
        )
    if crops is not None:
        crops.mkdir(parents=True, exist_ok=True)
    counted: dict[int, CountedItem] = {}

    def emit(item: CountedItem) -> None:
        counted[item.track_id] = item
        click.echo(json.dumps(item.to_json()))
        if crops is not None and item.crop_jpeg:
            (crops / f"{item.track_id}.jpg").write_bytes(item.crop_jpeg)

    for frame in video_frames(video):
        while pending and pending[0].t <= frame.t:
            click.echo(pending.pop(0).model_dump_json())
        result = pipeline.process(frame.image, frame.t)
        for item in result.counted:
            emit(item)
        if writer is not None:
            writer.write(annotate(frame.image, result, zones, counted, len(counted)))
    _finish(pipeline.flush(), emit, pending, writer)
    stats = pipeline.stats
    click.echo(
        f"{len(counted)} items counted in {stats.frames} frames; {stats.fps:.1f} frames/s, "
        f"{100 * stats.overhead_share:.0f}% outside the detector; models "
        f"{models.detector.file} + {models.embedder.file}",
        err=True,
    )
    sys.stdout.flush()


def _finish(identified: list[Any], emit: Any, pending: list[Any], writer: Any | None) -> None:
    """The items still being identified when the video ended, the events after its last
    frame, and the annotated video closed."""
    for item in identified:
        emit(item)
    for message in pending:
        click.echo(message.model_dump_json())
    if writer is not None:
        writer.release()


def _read_events(events: Path) -> list[Any]:
    """The till events of a recording (one wire-schema event per line), in time order; a bad
    line is an error naming it."""
    from pydantic import TypeAdapter, ValidationError

    from laneguard.wire import LaneInput

    adapter = TypeAdapter(LaneInput)
    pending = []
    for number, line in enumerate(events.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            pending.append(adapter.validate_json(line))
        except ValidationError as exc:
            raise click.ClickException(
                f"{events} line {number}: {exc.errors()[0]['msg']}"
            ) from None
    return sorted(pending, key=lambda m: m.t)


def _video_shape(video: Path) -> tuple[int, int, float]:
    """Width, height and frame rate of a recording (30 when it does not say)."""
    import cv2

    probe = cv2.VideoCapture(str(video))
    width = int(probe.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(probe.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = probe.get(cv2.CAP_PROP_FPS) or 30.0
    probe.release()
    if width == 0:
        raise click.ClickException(f"{video}: cannot open as a video")
    return width, height, fps


@node.command("run")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Lane settings (YAML); LANEGUARD_LANE_* variables override it.",
)
@click.option("--camera", default=None, help="Camera: device index, V4L2 path, URL or file.")
@click.option("--server-url", default=None, help="Store server to deliver to.")
@click.option("--port", "http_port", type=int, default=None, help="Lane screen / POS API port.")
def run_command(
    config_file: Path | None, camera: str | None, server_url: str | None, http_port: int | None
) -> None:
    """Run a lane: camera, scanners, till API, the cashier's screen and the outbox."""
    import logging

    from checkout_node.catalog import CatalogLoadError
    from checkout_node.service import LaneService
    from checkout_node.settings import LaneSettings
    from laneguard.bundle import BundleError
    from laneguard.settings import ConfigError, load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        settings = load_settings(
            LaneSettings, config_file, camera=camera, server_url=server_url, http_port=http_port
        )
        service = LaneService(settings)
    except (ConfigError, CatalogLoadError, BundleError) as exc:
        raise click.ClickException(str(exc)) from None
    service.run()


@node.command("doctor")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Lane settings (YAML) to check against this board.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor_command(config_file: Path | None, as_json: bool) -> None:
    """Say what this board has (CPU, memory, accelerators, cameras, scanners) and what the lane
    will use on it; exits 1 when something would stop the lane."""
    import json

    from checkout_node.doctor import as_dicts, examine
    from checkout_node.settings import LaneSettings
    from laneguard.settings import ConfigError, load_settings

    try:
        settings = load_settings(LaneSettings, config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    findings = examine(settings)
    if as_json:
        click.echo(json.dumps(as_dicts(findings), indent=2))
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        width = max(len(f.topic) for f in findings)
        for finding in findings:
            click.echo(f"{marks[finding.status]}  {finding.topic:<{width}}  {finding.detail}")
    if any(f.status == "fail" for f in findings):
        raise SystemExit(1)


@node.command("hash-pin")
@click.option(
    "--pin",
    prompt="Supervisor PIN or badge code",
    hide_input=True,
    confirmation_prompt=True,
    help="Asked for when not given (it is never echoed).",
)
def hash_pin_command(pin: str) -> None:
    """Print the hash of a supervisor PIN for the lanes' `supervisor_pins` (the same list on
    every lane of a store); the PIN itself is stored nowhere."""
    from checkout_node.web.access import hash_pin

    try:
        click.echo(hash_pin(pin))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
