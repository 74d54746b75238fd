"""`laneguard train ...`: the bootstrap bundle, the store's slow path of learning, and the
embedder comparison."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from laneguard.cli_options import produce_photos_option, with_options
from trainer.detector import PRETRAINED_BACKBONES

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
@click.option(
    "--detector-from",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Keep this bundle's detector (files, metrics, training record) instead of training "
    "one: for a change of the embedder recipe only.",
)
@click.option(
    "--detector-continue-from",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Start the detector's neck and head from this bundle's detector weights and train "
    "the recipe's epochs on new images (the shipped recipe continues the bundle before it).",
)
@click.option(
    "--embedder-from",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Keep this bundle's embedder weights instead of training them (refused unless this "
    "recipe's embedder settings trained them): for a change of serving size, gallery or "
    "thresholds only.",
)
@click.option(
    "--embed-serve-size",
    type=click.IntRange(32, 512),
    default=None,
    help="Input size of the exported embedder, if not the size it trains at (an experiment: "
    "the shipped recipe serves at its training size).",
)
@click.option(
    "--detector-backbone",
    type=click.Choice((*PRETRAINED_BACKBONES, "scratch")),
    default=None,
    help="The detector's backbone: an ImageNet-pretrained EfficientNet-Lite (the recipe's is "
    "efficientnet-lite0, frozen) or 'scratch' for YOLO11 trained from nothing.",
)
@PHOTOS
def bootstrap_command(
    out: Path | None,
    work: Path,
    quick: bool,
    seed: int,
    detector_from: Path | None,
    detector_continue_from: Path | None,
    embedder_from: Path | None,
    embed_serve_size: int | None,
    detector_backbone: str | None,
    produce_photos: Path | None,
) -> None:
    """Make the bootstrap bundle from the simulator (and real produce photos when given)."""
    from laneguard.bundle import SHIPPED_BUNDLE
    from trainer.bootstrap import BootstrapConfig, run_bootstrap

    if detector_from is not None and detector_backbone is not None:
        raise click.UsageError("--detector-from keeps a detector; --detector-backbone trains one")
    if detector_from is not None and detector_continue_from is not None:
        raise click.UsageError(
            "--detector-from keeps a detector; --detector-continue-from trains one"
        )
    config = (BootstrapConfig.quick if quick else BootstrapConfig)(
        seed=seed,
        produce_photos=produce_photos,
        detector_from=detector_from,
        detector_continue_from=detector_continue_from,
        embedder_from=embedder_from,
        embed_serve_size=embed_serve_size,
    )
    if detector_backbone is not None:  # else the recipe's
        config.detector_backbone = None if detector_backbone == "scratch" else detector_backbone
    target = out or SHIPPED_BUNDLE
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the result
        manifest = run_bootstrap(
            config, work, target, progress=lambda line: click.echo(line, err=True)
        )
    click.echo(
        json.dumps(
            {"bundle": str(target), "version": manifest.version, "metrics": manifest.metrics},
            indent=2,
        )
    )


@train.command("teacher")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Teacher bundle to write (default: the one the product ships, "
    "checkout_node/models/teacher.tar.gz).",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data/teacher-work"),
    show_default=True,
    help="Scratch folder for generated data and the training run.",
)
@click.option("--quick", is_flag=True, help="Tiny data, a small backbone, one epoch.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: the recipe's.")
@click.option("--seed", type=int, default=0, show_default=True)
@PHOTOS
def teacher_command(
    out: Path | None,
    work: Path,
    quick: bool,
    epochs: int | None,
    seed: int,
    produce_photos: Path | None,
) -> None:
    """Make the store's teacher (T3): a larger embedder, its gallery and T3 calibrated so that
    at most 1% of the labels it gives are wrong."""
    from laneguard.bundle import SHIPPED_TEACHER
    from trainer.teacher import TeacherConfig, run_teacher

    overrides: dict[str, Any] = {"seed": seed, "produce_photos": produce_photos}
    if epochs is not None:
        overrides["epochs"] = epochs
    config = TeacherConfig.quick(**overrides) if quick else TeacherConfig(**overrides)
    target = out or SHIPPED_TEACHER
    with contextlib.redirect_stdout(sys.stderr):
        manifest = run_teacher(
            config, work, target, progress=lambda line: click.echo(line, err=True)
        )
    click.echo(
        json.dumps(
            {"teacher": str(target), "version": manifest.version, "metrics": manifest.metrics},
            indent=2,
        )
    )


@train.command("camera")
@click.option(
    "--frames",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Folder of the camera's frames (.jpg/.png, as the lane sees them): no labels needed.",
)
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Bundle whose detector is tuned (default: the shipped one).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Candidate bundle to write (unsigned: sign it with `laneguard keys sign`).",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data/camera-work"),
    show_default=True,
    help="Scratch folder for the training run.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: the recipe's.")
@click.option("--seed", type=int, default=0, show_default=True)
def camera_command(
    frames: Path, bundle: Path | None, out: Path, work: Path, epochs: int | None, seed: int
) -> None:
    """Tune a bundle's detector to one camera from its frames alone: the detector's sure boxes
    (at or above T1) teach, unsure ones (T2-T1) are painted out, simulator scenes rehearse."""
    from laneguard.bundle import SHIPPED_BUNDLE
    from trainer.camera_tuning import CameraTuningConfig, frame_paths, tune_to_camera
    from trainer.finetune import TrainingError

    config = CameraTuningConfig(seed=seed)
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            written = tune_to_camera(
                bundle or SHIPPED_BUNDLE,
                frame_paths(frames),
                work,
                out,
                config,
                progress=lambda line: click.echo(line, err=True),
            )
    except TrainingError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"bundle": str(written)}))


@train.command("verifier")
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Bundle to add the verifier to (default: the shipped one).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Bundle to write (unsigned: sign it with `laneguard keys sign`).",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data/verifier-work"),
    show_default=True,
    help="Scratch folder for the exported models.",
)
@PHOTOS
def verifier_command(
    bundle: Path | None, out: Path, work: Path, produce_photos: Path | None
) -> None:
    """Add the product verifier (EfficientNet-Lite2's ImageNet classifier, giving each crop's
    mass on classes no checkout sells) to a bundle. With real produce photos an int8 copy is
    calibrated and shipped too if it agrees with the float one; without them, float only."""
    from laneguard.bundle import SHIPPED_BUNDLE, BundleError, read_manifest
    from trainer.verifier import add_verifier

    try:
        with contextlib.redirect_stdout(sys.stderr):
            written = add_verifier(bundle or SHIPPED_BUNDLE, out, work, produce_photos)
    except (BundleError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    manifest = read_manifest(written)
    verifiers = [m.model_dump() for m in manifest.models if m.role == "verifier"]
    click.echo(
        json.dumps({"bundle": str(written), "version": manifest.version, "verifier": verifiers})
    )


@train.command("add-golden-frames")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Bundle to write (default: replace BUNDLE).",
)
def add_golden_frames_command(bundle: Path, out: Path | None) -> None:
    """Give a bundle made before bundles carried golden frames the frames lanes smoke-test it
    on (unsigned: sign it again with `laneguard keys sign`)."""
    from trainer.golden import add_golden_frames

    target = out or bundle
    staging = target.with_name(target.name + ".partial")
    add_golden_frames(bundle, staging).replace(target)
    click.echo(f"{target}: golden frames added")


def _store_trainer(
    config_file: Path | None,
    database_url: str | None,
    work: Path,
    key: Path | None,
    publish: bool,
    options: dict[str, Any],
) -> Any:
    from product_db.db import make_engine
    from store_server.cli import store_settings
    from store_server.db import migrate
    from trainer.finetune import TrainRunConfig
    from trainer.gate import GatePolicy
    from trainer.store_training import StoreTrainer

    policy = GatePolicy(options.pop("tolerance"), options.pop("new_product_min"))
    base = TrainRunConfig.quick if options.pop("quick") else TrainRunConfig
    at_hq = options.pop("hq")
    chosen = {k: v for k, v in options.items() if v is not None}
    config = base(policy=policy, **chosen)
    if at_hq:  # the pooled crops of every store; HQ signs what passes with its own key
        from hq_server.cli import hq_settings
        from hq_server.db import migrate as migrate_hq
        from trainer.chain_training import ChainTrainer

        hq = hq_settings(config_file, database_url)
        engine = make_engine(hq.database_url)
        migrate_hq(engine)
        return ChainTrainer(engine, hq, config, work, publish)
    settings = store_settings(config_file, database_url)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return StoreTrainer(engine, settings, config, work, key, publish)


def store_training_options(command: Callable[..., None]) -> Callable[..., None]:
    """The store to learn from and how hard to train: shared by `train run` and `train watch`."""
    return with_options(
        command,
        [
            click.option(
                "--config",
                "config_file",
                type=click.Path(path_type=Path),
                default=None,
                help="The store server's YAML settings (database, data folder, bundle keys); "
                "with --hq, HQ's.",
            ),
            click.option("--db", "database_url", default=None, metavar="URL", help="Database URL."),
            click.option(
                "--work",
                type=click.Path(path_type=Path, file_okay=False),
                default=Path("data/training-work"),
                show_default=True,
                help="Scratch folder (the candidate bundle is written here).",
            ),
            click.option(
                "--key",
                type=click.Path(path_type=Path, dir_okay=False, exists=True),
                default=None,
                help="Ed25519 private key that signs the candidate (`laneguard keys`).",
            ),
            click.option(
                "--publish/--no-publish",
                default=True,
                show_default=True,
                help="Publish a candidate that passes the gate (rolled out from the console).",
            ),
            click.option("--embed-epochs", type=click.IntRange(min=1), default=None),
            click.option(
                "--detector-epochs",
                type=click.IntRange(min=0),
                default=None,
                help="0 keeps production's detector.",
            ),
            click.option(
                "--tolerance",
                type=click.FloatRange(0, 1),
                default=0.01,
                show_default=True,
                help="How much worse than production any gate metric may be.",
            ),
            click.option(
                "--new-product-min",
                type=click.FloatRange(0, 1),
                default=0.8,
                show_default=True,
                help="Held-out identity every product new to production must reach.",
            ),
            click.option("--quick", is_flag=True, help="Tiny simulator sets, 1-2 epochs (tests)."),
            click.option(
                "--hq",
                is_flag=True,
                help="Train at the chain's HQ (--config is HQ's settings) on every store's "
                "pooled crops; refused if worse for any one store.",
            ),
            PHOTOS,
        ],
    )


@train.command("run")
@store_training_options
def run_command(
    config_file: Path | None,
    database_url: str | None,
    work: Path,
    key: Path | None,
    publish: bool,
    **options: Any,
) -> None:
    """Fine-tune from the store's production bundle on its harvested crops, gate, publish.

    Prints the gate report as JSON; exits 3 when the gate refused the candidate."""
    from laneguard.bundle import BundleError
    from trainer.finetune import TrainingError

    trainer = _store_trainer(config_file, database_url, work, key, publish, options)
    try:
        # ultralytics draws its progress bars on stdout, where the report goes
        with contextlib.redirect_stdout(sys.stderr):
            result = trainer.run_once(progress=lambda line: click.echo(line, err=True))
    except (TrainingError, BundleError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"bundle": str(result.bundle), **result.report}, indent=2))
    if not result.passed:
        raise SystemExit(3)


@train.command("watch")
@store_training_options
@click.option(
    "--every",
    type=click.FloatRange(min=1),
    default=3600,
    show_default=True,
    help="Seconds between checks for new crops.",
)
@click.option(
    "--min-new",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="New harvested crops that start a pass.",
)
def watch_command(
    config_file: Path | None,
    database_url: str | None,
    work: Path,
    key: Path | None,
    publish: bool,
    every: float,
    min_new: int,
    **options: Any,
) -> None:
    """The training service: a `train run` pass whenever enough new crops were harvested."""
    import signal
    import threading

    trainer = _store_trainer(config_file, database_url, work, key, publish, options)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"watching for {min_new} new crops every {every:.0f} s", err=True)
    with contextlib.redirect_stdout(sys.stderr):
        trainer.watch(stop, every, min_new, progress=lambda line: click.echo(line, err=True))


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
