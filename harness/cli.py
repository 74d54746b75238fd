"""`laneguard bench`, `laneguard eval` and `laneguard demo`: every measurement of the product,
and the demo store, run with real parts together.

Each benchmark is declared once, in its module under harness.bench (its name, description, how
it runs, its markdown rows); `bench` makes a command of each and `bench all` of the list, writes
``<out>/<name>.json`` and appends the markdown rows to ``<out>/summary.md``. Evaluations print
their JSON. Nothing in the product imports this package: it sits above every layer it measures.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from harness.bench import BENCHMARKS
from harness.bench.benchmark import Benchmark
from laneguard.bundle import SHIPPED_BUNDLE
from laneguard.cli_options import produce_photos_option, with_options


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _run(benchmark: Benchmark, out: Path) -> None:
    """Run ``benchmark``; write its JSON to ``<out>/<name>.json``, append its markdown rows to
    ``<out>/summary.md`` and print them."""
    result = benchmark.run()
    table = benchmark.table(result)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": benchmark.name, "machine": _machine(), "result": result}
    (out / f"{benchmark.name}.json").write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    with (out / "summary.md").open("a", encoding="utf-8") as handle:
        handle.write(f"\n### {benchmark.name}\n\n" + "\n".join(table) + "\n")
    click.echo("\n".join(table))


@click.group()
def bench() -> None:
    """Measure LaneGuard's speed targets on this computer."""


OUT_OPTION = click.option(
    "--out", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True
)


def _register(benchmark: Benchmark) -> None:
    """`laneguard bench NAME`: the benchmark at its default size, written like `bench all`."""

    @bench.command(benchmark.name, help=benchmark.description)
    @OUT_OPTION
    def command(out: Path) -> None:
        _run(benchmark, out)


for _benchmark in BENCHMARKS:
    _register(_benchmark)


@bench.command("all")
@OUT_OPTION
def all_command(out: Path) -> None:
    """Run every benchmark with its default size; results go to OUT/*.json and OUT/summary.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(
        f"# LaneGuard benchmarks\n\n{time.strftime('%Y-%m-%d %H:%M')} on "
        f"{platform.machine()}, {_machine()['cpus']} CPUs\n",
        "utf-8",
    )
    for benchmark in BENCHMARKS:
        click.echo(f"== {benchmark.name}")
        _run(benchmark, out)


def lane_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Options shared by the evaluations that run simulated video through a real lane."""
    return with_options(
        command,
        [
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
            produce_photos_option,
        ],
    )


def _print_lane_eval(
    evaluation: Callable[..., dict[str, Any]],
    count: int,
    seed: int,
    fps: float,
    bundle: Path | None,
    profile: str | None,
    produce_photos: Path | None,
    **options: Any,
) -> None:
    """Run an evaluation of simulated video through a real lane on the bundle's models and
    print its JSON (progress on stderr); ``options`` go to the evaluation as they are."""
    from checkout_node.model_bundle import load_models

    result = evaluation(
        load_models(bundle or SHIPPED_BUNDLE, profile=profile),
        count,
        seed,
        fps,
        produce_photos=produce_photos,
        progress=lambda line: click.echo(line, err=True),
        **options,
    )
    click.echo(json.dumps(result, indent=2))


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
    from harness.evals.counting import evaluate_counting

    _print_lane_eval(evaluate_counting, transactions, seed, fps, bundle, profile, produce_photos)


BUNDLE_OPTION = click.option(
    "--bundle",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Model bundle (default: the shipped bootstrap bundle).",
)
PRECISION_OPTION = click.option(
    "--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True
)


def _class_folders_option(name: str, help_text: str, required: bool = True) -> Any:
    return click.option(
        name,
        type=click.Path(path_type=Path, file_okay=False, exists=True),
        required=required,
        default=None,
        help=help_text,
    )


def _print_embedder_eval(
    evaluation: Callable[[Path], dict[str, Any]], bundle: Path | None, precision: str
) -> None:
    """Run ``evaluation`` on the bundle's embedder file of ``precision`` (extracted, so the
    bundle's checks run) and print its JSON with the bundle's version and the file's name; a
    broken bundle or unusable folders are a clear CLI error."""
    from laneguard.bundle import BundleError, extract_bundle

    with tempfile.TemporaryDirectory(prefix="laneguard-eval-") as tmp:
        try:
            manifest = extract_bundle(bundle or SHIPPED_BUNDLE, Path(tmp))
        except BundleError as exc:
            raise click.ClickException(str(exc)) from None
        model = next(
            m for m in manifest.models if m.role == "embedder" and m.precision == precision
        )
        try:
            result = evaluation(Path(tmp) / model.file)
        except (FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    result["bundle"] = manifest.version
    result["embedder"] = model.file
    click.echo(json.dumps(result, indent=2))


@evaluate.command("recognition")
@_class_folders_option("--reference", "Folder of class sub-folders: the gallery's images.")
@_class_folders_option("--query", "Folder of class sub-folders: the images to identify.")
@BUNDLE_OPTION
@PRECISION_OPTION
def recognition_command(reference: Path, query: Path, bundle: Path | None, precision: str) -> None:
    """Build a gallery from REFERENCE, identify every QUERY image, print JSON."""
    from harness.evals.recognition import evaluate_recognition

    _print_embedder_eval(
        lambda model: evaluate_recognition(model, reference, query), bundle, precision
    )


@evaluate.command("picklist")
@_class_folders_option("--reference", "Folder of class sub-folders: the gallery's images.")
@_class_folders_option("--query", "Folder of class sub-folders: the images to propose PLUs for.")
@click.option(
    "--prior",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="CSV of the store's sales per PLU (columns code,count) weighing the list; default: "
    "flat, as a new store's.",
)
@click.option(
    "--refs-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N reference images of each class (default: all).",
)
@BUNDLE_OPTION
@PRECISION_OPTION
def picklist_command(
    reference: Path,
    query: Path,
    prior: Path | None,
    refs_per_class: int | None,
    bundle: Path | None,
    precision: str,
) -> None:
    """The produce pick list the lane shows (top 4): how often it holds each QUERY image's
    class at positions 1, 2 and 4, against a gallery from REFERENCE; print JSON."""
    from harness.evals.picklist import evaluate_picklist

    _print_embedder_eval(
        lambda model: evaluate_picklist(model, reference, query, prior, refs_per_class),
        bundle,
        precision,
    )


@evaluate.command("probe")
@_class_folders_option("--train", "Folder of class sub-folders: the probe's training images.")
@_class_folders_option("--query", "Folder of class sub-folders: the images to score.")
@_class_folders_option(
    "--val",
    "Folder of class sub-folders to choose the weight decay on (default: every fifth "
    "training image, held out).",
    required=False,
)
@BUNDLE_OPTION
@PRECISION_OPTION
def probe_command(
    train: Path, query: Path, val: Path | None, bundle: Path | None, precision: str
) -> None:
    """Ceiling of the embedder's vectors: a linear classifier trained on TRAIN, scored on QUERY,
    beside plain nearest-neighbour top-1; print JSON."""
    from harness.evals.probe import evaluate_probe

    _print_embedder_eval(lambda model: evaluate_probe(model, train, query, val), bundle, precision)


@evaluate.command("scenes")
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Folder of photos (.jpg, .jpeg, .png, searched recursively).",
)
@click.option(
    "--counts",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="CSV 'file,count,...': the true product count of photos (file relative to --images).",
)
@click.option(
    "--boxes",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="JSON {file: [[x1, y1, x2, y2], ...]}: true product boxes in the photo's pixels.",
)
@BUNDLE_OPTION
@click.option(
    "--size",
    type=click.IntRange(min=32),
    default=None,
    help="Detector input size (default: the one the lane picks from the bundle).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "int8"]),
    default=None,
    help="Detector precision (default: the one the lane picks from the bundle).",
)
@click.option(
    "--overlays",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder to write each photo's lane frame with its boxes drawn into.",
)
@click.option(
    "--verifier/--no-verifier",
    default=True,
    show_default=True,
    help="Give the bundle's birth verifier its say, as a lane does (bundles without one: "
    "the detector's score alone).",
)
def scenes_command(
    images: Path,
    counts: Path | None,
    boxes: Path | None,
    bundle: Path | None,
    size: int | None,
    precision: str | None,
    overlays: Path | None,
    verifier: bool,
) -> None:
    """Run the bundle's detector on real photos as a lane frame sees them; print product counts
    (and box scores) at the tracker's new-track and low scores as JSON, and markdown rows on
    stderr."""
    from checkout_node.model_bundle import load_models
    from harness.evals.scenes import evaluate_scenes, scenes_table
    from laneguard.bundle import BundleError, read_manifest

    bundle = bundle or SHIPPED_BUNDLE
    try:
        manifest = read_manifest(bundle)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    detectors = [m.file for m in manifest.models if m.role == "detector"]
    wanted = [
        m.file
        for m in manifest.models
        if m.role == "detector"
        and (size is None or m.input_size == size)
        and (precision is None or m.precision == precision)
    ]
    if not wanted:
        raise click.ClickException(
            f"bundle {manifest.version} has no {precision or ''} detector at input size "
            f"{size or 'any'}; it has {', '.join(detectors) or 'no detector'}"
        )
    try:
        # The lane's own choice (no hardware profile): the variant and the thread count.
        models = load_models(bundle, detector_precision=precision, detector_size=size)
        result = evaluate_scenes(
            models.path(models.detector),
            images,
            counts,
            boxes,
            overlays,
            threads=models.threads,
            progress=lambda line: click.echo(line, err=True),
            verifier=models.path(models.verifier)
            if verifier and models.verifier is not None
            else None,
        )
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    detector = models.detector
    result = {
        "bundle": models.manifest.version,
        "model": detector.file,
        "size": detector.input_size,
        "precision_mode": detector.precision,
        "threads": models.threads,
        **result,
    }
    click.echo(json.dumps(result, indent=2))
    click.echo("\n".join(scenes_table(result)), err=True)


@evaluate.command("lanes")
@click.option(
    "--scenarios", type=click.IntRange(min=1), default=5, show_default=True, help="Per kind."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--store-look",
    default=None,
    help="Render the checkouts in this simulator store look (simulator.store_look: its own "
    "belt, light and camera; the lane's zones drawn for that camera) instead of the "
    "simulator's own look.",
)
@lane_run_options
def lanes_command(
    scenarios: int,
    seed: int,
    store_look: str | None,
    fps: float,
    bundle: Path | None,
    profile: str | None,
    produce_photos: Path | None,
) -> None:
    """Run N simulated checkouts of every kind through a real lane; print accuracy, alert
    precision and recall, false alerts and alert latency as JSON."""
    from harness.evals.lanes import evaluate_lanes
    from simulator.store_look import store_look as named_look

    try:
        store = None if store_look is None else named_look(store_look)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--store-look") from None
    _print_lane_eval(
        evaluate_lanes, scenarios, seed, fps, bundle, profile, produce_photos, store=store
    )


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("data/demo"),
    show_default=True,
    help="Where the demo store keeps its database and files.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--lanes", type=click.IntRange(0, 8), default=2, show_default=True, help="Simulated lanes."
)
@click.option("--fps", type=click.FloatRange(5, 30), default=15.0, show_default=True)
@click.option(
    "--chain",
    is_flag=True,
    help="A chain instead: HQ (on --port + 200), a NATS JetStream broker and two stores "
    "enrolled with HQ, each with --lanes lanes (default folder data/demo-chain).",
)
def demo(data_dir: Path, host: str, port: int, lanes: int, fps: float, chain: bool) -> None:
    """Run the demo store and its simulated lanes; print the addresses to open."""
    from harness.demo import run_chain_demo, run_demo

    if chain:
        folder = Path("data/demo-chain") if data_dir == Path("data/demo") else data_dir
        run_chain_demo(folder, host, port, lanes, fps)
    else:
        run_demo(data_dir, host, port, lanes, fps)
