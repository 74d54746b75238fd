"""`laneguard sim ...`: the simulated checkout world."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from laneguard.cli_options import produce_photos_option
from simulator.scenario import KINDS, ScenarioError, build_scenario
from simulator.world import TRAINING_PACKAGING_VERSION, World

PHOTOS_OPTION = produce_photos_option
CATALOG_OPTION = click.option(
    "--catalog",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Catalog CSV/JSON the simulated store sells (default: the sample catalog).",
)


def _world(catalog: Path | None, produce_photos: Path | None) -> World:
    from product_db import SAMPLE_CATALOG
    from simulator.produce import ProduceDataError

    try:
        return World.from_catalog(catalog or SAMPLE_CATALOG, produce_photos)
    except (ProduceDataError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def sim() -> None:
    """The simulated checkout: scenarios with ground truth, training data, a live lane feed."""


@sim.command("scenario")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--fps", type=click.FloatRange(min=1, max=120), default=30.0, show_default=True)
@click.option(
    "--items",
    type=click.IntRange(min=1, max=200),
    default=None,
    help="Number of items (default: by kind; 5-40 for mixed).",
)
@CATALOG_OPTION
@PHOTOS_OPTION
def scenario_command(
    kind: str,
    seed: int,
    out: Path,
    fps: float,
    items: int | None,
    catalog: Path | None,
    produce_photos: Path | None,
) -> None:
    """Write one transaction: OUT/video.mp4, OUT/events.jsonl, OUT/ground_truth.json."""
    from simulator.recording import write_scenario

    world = _world(catalog, produce_photos)
    try:
        scenario = build_scenario(kind, seed, world, fps=fps, n_items=items)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    start = time.perf_counter()
    paths = write_scenario(scenario, world, out)
    took = time.perf_counter() - start
    click.echo(
        f"{kind} seed {seed}: {len(scenario.true_items)} items, "
        f"{len(scenario.scans)} scans, {len(scenario.expected_alerts)} expected alerts, "
        f"{scenario.n_frames} frames in {took:.1f} s"
    )
    for name, path in paths.items():
        click.echo(f"  {name:13} {path}")


@sim.command("dataset")
@click.option("--task", type=click.Choice(["detect", "embed"]), required=True)
@click.option(
    "--n",
    type=click.IntRange(min=1),
    required=True,
    help="detect: number of images; embed: crops per product.",
)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--products",
    type=click.Choice(["known", "holdout", "all"]),
    default="known",
    show_default=True,
    help="known: leave the holdout (new) products out; holdout: only them.",
)
@click.option(
    "--packaging-version",
    type=click.IntRange(min=1),
    default=TRAINING_PACKAGING_VERSION,
    show_default=True,
    help="Which packaging version to draw (2 is the redesign kept out of training).",
)
@click.option(
    "--photo-split",
    type=click.Choice(["train", "val", "test"]),
    default="train",
    show_default=True,
    help="Which split of the real produce photos to use.",
)
@click.option(
    "--randomized-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="detect: share of images from the randomised world (simulator.randomized).",
)
@CATALOG_OPTION
@PHOTOS_OPTION
def dataset_command(
    task: str,
    n: int,
    out: Path,
    seed: int,
    products: str,
    packaging_version: int,
    photo_split: str,
    randomized_share: float,
    catalog: Path | None,
    produce_photos: Path | None,
) -> None:
    """Training data: YOLO detection images, or item crops in one folder per product code."""
    from simulator.datasets import write_detect_dataset, write_embed_dataset

    world = _world(catalog, produce_photos)
    start = time.perf_counter()
    if task == "detect":
        report = write_detect_dataset(
            world,
            out,
            n,
            seed,
            selection=products,  # type: ignore[arg-type]
            version=packaging_version,
            randomized_share=randomized_share,
        )
    else:
        report = write_embed_dataset(
            world,
            out,
            n,
            seed,
            selection=products,  # type: ignore[arg-type]
            version=packaging_version,
            photo_splits=(photo_split,),
        )
    click.echo(f"{report.summary()} in {time.perf_counter() - start:.1f} s")
    click.echo(f"holdout (new) products: {', '.join(sorted(world.holdout))}")


@sim.command("feed")
@click.option("--kind", type=click.Choice(KINDS), default="mixed", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True)
@click.option("--fps", type=click.FloatRange(min=1, max=60), default=30.0, show_default=True)
@click.option("--node-url", default=None, help="Lane node to send scan/POS events to.")
@click.option("--loop", is_flag=True, help="Keep going with the next seed after each one.")
@CATALOG_OPTION
@PHOTOS_OPTION
def feed_command(
    kind: str,
    seed: int,
    host: str,
    port: int,
    fps: float,
    node_url: str | None,
    loop: bool,
    catalog: Path | None,
    produce_photos: Path | None,
) -> None:
    """Serve a live simulated lane camera (MJPEG) and send its till events to a node."""
    from simulator.feed import LiveFeed

    feed = LiveFeed(
        _world(catalog, produce_photos), kind, seed, host, port, fps, node_url, loop
    ).start()
    click.echo(f"camera: {feed.url}/stream.mjpg   status: {feed.url}/status")
    try:
        while not feed.wait(timeout=1.0):
            pass
        click.echo(json.dumps(feed.state.status()))
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()


@sim.command("montage")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--seed", type=int, default=1, show_default=True)
@CATALOG_OPTION
@PHOTOS_OPTION
def montage_command(
    out: Path, seed: int, catalog: Path | None, produce_photos: Path | None
) -> None:
    """A PNG sheet with a frame of every scenario kind, ground-truth boxes drawn."""
    from simulator.montage import write_montage

    click.echo(f"wrote {write_montage(_world(catalog, produce_photos), out, seed)}")
