"""`laneguard train ...` and `laneguard eval ...`."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from laneguard.cli_options import produce_photos_option

PHOTOS = produce_photos_option


@click.group()
def train() -> None:
    """Train LaneGuard's detector and embedder (uses a GPU when there is one)."""


@train.command("bootstrap")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Bundle to write (default: the one the product ships, "
    "checkout_node/models/bootstrap.tar.gz).",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data/bootstrap-work"),
    show_default=True,
    help="Scratch folder for generated data and training runs.",
)
@click.option("--quick", is_flag=True, help="Tiny data and one epoch: checks the pipeline.")
@click.option("--seed", type=int, default=0, show_default=True)
@PHOTOS
def bootstrap_command(
    out: Path | None, work: Path, quick: bool, seed: int, produce_photos: Path | None
) -> None:
    """Make the bootstrap bundle from the simulator (and real produce photos when given)."""
    from trainer.bootstrap import SHIPPED_BUNDLE, BootstrapConfig, run_bootstrap

    config = (BootstrapConfig.quick if quick else BootstrapConfig)(
        seed=seed, produce_photos=produce_photos
    )
    target = out or SHIPPED_BUNDLE
    manifest = run_bootstrap(config, work, target, progress=lambda line: click.echo(line, err=True))
    click.echo(
        json.dumps(
            {"bundle": str(target), "version": manifest.version, "metrics": manifest.metrics},
            indent=2,
        )
    )


@train.command("compare-embedders")
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path("data/bootstrap-work"),
    show_default=True,
    help="A bootstrap work folder (its crops are reused).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the results here as JSON.",
)
def compare_embedders_command(work: Path, epochs: int, out: Path | None) -> None:
    """Train every embedder architecture on the same crops: accuracy against latency."""
    from trainer.bootstrap import compare_embedders

    rows = compare_embedders(work, epochs=epochs, progress=lambda line: click.echo(line, err=True))
    text = json.dumps(rows, indent=2)
    if out is not None:
        out.write_text(text + "\n", "utf-8")
    click.echo(text)


def lane_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Options shared by the evaluations that run simulated video through a real lane."""
    for option in reversed(
        (
            click.option(
                "--fps", type=click.FloatRange(min=5, max=60), default=30.0, show_default=True
            ),
            click.option(
                "--bundle",
                type=click.Path(path_type=Path, dir_okay=False, exists=True),
                default=None,
                help="Model bundle (default: the shipped bootstrap bundle).",
            ),
            click.option("--profile", default=None, help="Hardware profile from the bundle."),
            PHOTOS,
        )
    ):
        command = option(command)
    return command


@click.group("eval")
def evaluate() -> None:
    """Measure recognition and lanes against ground truth."""


@evaluate.command("counting")
@click.option("--transactions", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--seed", type=int, default=1000, show_default=True)
@lane_run_options
def counting_command(
    transactions: int,
    seed: int,
    fps: float,
    bundle: Path | None,
    profile: str | None,
    produce_photos: Path | None,
) -> None:
    """Run simulated mixed transactions through the lane pipeline; print counting accuracy."""
    from checkout_node.models import SHIPPED_BUNDLE, load_models
    from simulator.lane_eval import evaluate_counting

    models = load_models(bundle or SHIPPED_BUNDLE, profile=profile)
    result = evaluate_counting(
        models,
        transactions,
        seed,
        fps,
        produce_photos=produce_photos,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(json.dumps(result, indent=2))


@evaluate.command("recognition")
@click.option(
    "--reference",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Folder of class sub-folders: the gallery's images.",
)
@click.option(
    "--query",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Folder of class sub-folders: the images to identify.",
)
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Model bundle (default: the shipped bootstrap bundle).",
)
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True)
def recognition_command(reference: Path, query: Path, bundle: Path | None, precision: str) -> None:
    """Build a gallery from REFERENCE, identify every QUERY image, print JSON."""
    from laneguard.bundle import BundleError, extract_bundle
    from trainer.bootstrap import SHIPPED_BUNDLE
    from trainer.evaluate import evaluate_recognition

    source = bundle or SHIPPED_BUNDLE
    with tempfile.TemporaryDirectory(prefix="laneguard-eval-") as tmp:
        try:
            manifest = extract_bundle(source, Path(tmp))
        except BundleError as exc:
            raise click.ClickException(str(exc)) from None
        model = next(
            m for m in manifest.models if m.role == "embedder" and m.precision == precision
        )
        try:
            result = evaluate_recognition(Path(tmp) / model.file, reference, query)
        except (FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    result["bundle"] = manifest.version
    result["embedder"] = model.file
    click.echo(json.dumps(result, indent=2))


@evaluate.command("lanes")
@click.option(
    "--scenarios", type=click.IntRange(min=1), default=5, show_default=True, help="Per kind."
)
@click.option("--seed", type=int, default=0, show_default=True)
@lane_run_options
def lanes_command(
    scenarios: int,
    seed: int,
    fps: float,
    bundle: Path | None,
    profile: str | None,
    produce_photos: Path | None,
) -> None:
    """Run N simulated checkouts of every kind through a real lane; print accuracy, alert
    precision and recall, false alerts and alert latency as JSON."""
    from checkout_node.models import SHIPPED_BUNDLE, load_models
    from simulator.checkout_eval import evaluate_lanes

    models = load_models(bundle or SHIPPED_BUNDLE, profile=profile)
    result = evaluate_lanes(
        models,
        scenarios,
        seed,
        fps,
        produce_photos=produce_photos,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(json.dumps(result, indent=2))
