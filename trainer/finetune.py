"""`laneguard train run`: the slow path of learning, from harvested crops to a gated bundle.

1. dataset: the store's harvested crops (trainer.harvest: deduplicated, split by transaction and
   time, balanced), plus simulator crops of every catalog product as rehearsal, so fine-tuning
   on a few new products does not make the embedder forget the others;
2. embedder fine-tuned from the production bundle's weights (a new classifier head for the
   enlarged set of codes; the backbone and projection start from production);
3. detector fine-tuned from production's weights on simulator scenes with harvested crops pasted
   in (a new product's look teaches "product"), or production's detector kept (epochs 0);
4. gallery of every code from the candidate's own embeddings;
5. gate (trainer.gate) against production on the same held-out data; the candidate bundle is
   written either way, with the report in its manifest, so a refused one can be inspected.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from random import Random
from typing import Any

import cv2
import numpy as np

from checkout_node.gallery_follower import with_entries
from laneguard.bundle import (
    GOLDEN_FRAMES,
    Manifest,
    ModelFile,
    extracted,
    sha256_file,
    write_bundle,
    write_class_map,
)
from laneguard.embedding import Embedder
from laneguard.gallery import Gallery
from product_db.errors import LaneGuardError
from trainer.bootstrap import detector_calibration, embedder_calibration
from trainer.embedder import PRETRAINED_ARCHS, EmbedderRun, image_folder, read_image
from trainer.gate import DetectorScores, GatePolicy, GateSide, judge, measure
from trainer.golden import write_golden_frames
from trainer.harvest import HarvestConfig, HarvestDataset, HarvestedCrop
from trainer.lane_boxes import ScoredImage, count_lane_boxes, from_store_frames, from_yolo_split
from trainer.store_frames import FrameSplit, write_test_set, write_yolo
from trainer.weights import ParentWeights, parent_weights, training_weights, weights_named


class TrainingError(LaneGuardError, RuntimeError):
    """The run cannot go on; the message says why (nothing to learn, no parent weights...)."""


@dataclass(frozen=True)
class TrainRunConfig:
    """Defaults suit a store server's CPU: minutes, not hours."""

    # A low learning rate and many rehearsal crops of known products: a harvest is small and
    # lopsided, and a faster rate forgets known products (the comparison is in
    # checkout_node/models/README.md).
    embed_epochs: int = 12
    embed_lr: float = 3e-4
    detector_epochs: int = 5
    detector_images: int = 300
    detector_test_images: int = 60
    pasted_share: float = 0.5  # detector images that get harvested crops pasted in
    store_frame_repeats: int = 2  # each store camera frame is this many training images
    # A lane's held-out frames judge a candidate only when there are this many: fewer would
    # let one short checkout veto a whole candidate.
    lane_test_min_frames: int = 20
    rehearsal_crops: int = 40  # simulator crops per catalog product in training
    known_test_crops: int = 4  # simulator crops per catalog product in the gate
    gallery_per_code: int = 8
    seed: int = 0
    harvest: HarvestConfig = field(default_factory=HarvestConfig)
    policy: GatePolicy = field(default_factory=GatePolicy)
    produce_photos: Path | None = None

    @classmethod
    def quick(cls, **overrides: Any) -> TrainRunConfig:
        """Tests: one epoch each, tiny simulator sets."""
        values: dict[str, Any] = {
            "embed_epochs": 2,
            "detector_epochs": 1,
            "detector_images": 16,
            "detector_test_images": 6,
            "rehearsal_crops": 2,
            "known_test_crops": 1,
            "lane_test_min_frames": 1,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class TrainRunResult:
    bundle: Path
    report: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.report["gate"]["passed"])


def paste_crops(
    images: Path, labels: Path, crops: list[HarvestedCrop], share: float, rng: Random
) -> int:
    """Paste harvested crops into a share of the detector images, each labelled "product";
    returns how many were pasted. A crop goes where it covers no labelled box."""
    pasted = 0
    if not crops:
        return 0
    for image_path in sorted(images.glob("*.jpg")):
        if rng.random() >= share:
            continue
        frame = read_image(image_path)
        label_path = labels / f"{image_path.stem}.txt"
        lines = [line for line in label_path.read_text().splitlines() if line.strip()]
        height, width = frame.shape[:2]
        taken = [_pixels(line, width, height) for line in lines]
        for _ in range(rng.randint(1, 2)):
            crop = cv2.imread(str(rng.choice(crops).image), cv2.IMREAD_COLOR)
            if crop is None:
                continue
            scale = rng.uniform(90, 150) / max(crop.shape[:2])
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            ch, cw = crop.shape[:2]
            if ch >= height or cw >= width:
                continue
            for _attempt in range(10):
                x, y = rng.randrange(width - cw), rng.randrange(height - ch)
                box = (x, y, x + cw, y + ch)
                if not any(_overlap(box, other) for other in taken):
                    frame[y : y + ch, x : x + cw] = crop
                    taken.append(box)
                    lines.append(
                        f"0 {(x + cw / 2) / width:.6f} {(y + ch / 2) / height:.6f} "
                        f"{cw / width:.6f} {ch / height:.6f}"
                    )
                    pasted += 1
                    break
        cv2.imwrite(str(image_path), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
        label_path.write_text("\n".join(lines) + "\n")
    return pasted


def _pixels(line: str, width: int, height: int) -> tuple[int, int, int, int]:
    _, cx, cy, bw, bh = (float(v) for v in line.split())
    return (
        int((cx - bw / 2) * width),
        int((cy - bh / 2) * height),
        int((cx + bw / 2) * width),
        int((cy + bh / 2) * height),
    )


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass
class _TunedDetector:
    weights: Path  # the .pt the ONNX files were exported from
    models: list[ModelFile]
    members: dict[str, Path]  # bundle member name -> file


@dataclass(frozen=True, slots=True)
class InheritedDetectorRecipe:
    """What a detector fine-tune keeps of the recipe that made production's detector."""

    freeze_backbone: bool  # an ImageNet backbone stays frozen: what it knows of real photos
    randomized_share: float  # the same share of randomised-world images it learned among


def inherited_detector_recipe(parent: Manifest) -> InheritedDetectorRecipe:
    """Production's detector recipe, as its manifest recorded it.

    A store's harvest is simulator scenes with a few pasted crops; training a pretrained
    backbone on them, or only on the plain simulator, would trade the real-photo features the
    bootstrap kept for the simulator's look (checkout_node/models/README.md)."""
    recipe = parent.training_data.get("recipe") or {}
    return InheritedDetectorRecipe(
        freeze_backbone=bool(recipe.get("detector_freeze_backbone", False))
        and recipe.get("detector_backbone") is not None,
        randomized_share=float(recipe.get("randomized_share", 0.0)),
    )


def fine_tune_detector(
    world: Any,
    dataset: HarvestDataset,
    parent_pt: Path,
    parent: Manifest,
    work: Path,
    models_dir: Path,
    config: TrainRunConfig,
    progress: Callable[[str], None],
    frames: FrameSplit | None = None,
) -> _TunedDetector:
    """Production's detector trained further on simulator scenes with harvested crops pasted
    in (the rehearsal: what it knew stays) and the store cameras' training frames, exported at
    each of production's detector sizes and precisions (same file names)."""
    from simulator.datasets import write_detect_dataset
    from trainer.detector import export_detector_onnx, train_detector
    from trainer.quantize import median_latency_ms, quantize_int8

    primary = next(m for m in parent.models if m.role == "detector" and m.precision == "fp32")
    inherited = inherited_detector_recipe(parent)
    detect = write_detect_dataset(
        world,
        work / "detect",
        config.detector_images,
        config.seed,
        randomized_share=inherited.randomized_share,
    )
    train_crops = [c for crops in dataset.train.values() for c in crops]
    images = detect.out / "images" / "train"
    pasted = paste_crops(
        images,
        detect.out / "labels" / "train",
        train_crops,
        config.pasted_share,
        Random(config.seed),
    )
    camera = 0
    for repeat in range(config.store_frame_repeats if frames is not None else 0):
        camera += write_yolo(frames.train, detect.out, "train", tag=f"r{repeat}")  # type: ignore[union-attr]
    progress(
        f"detector data: {detect.images} simulator images, {pasted} harvested crops pasted, "
        f"{camera} store camera frames"
    )
    det = train_detector(
        detect.out / "data.yaml",
        work / "runs",
        epochs=config.detector_epochs,
        imgsz=primary.input_size,
        batch=16,
        seed=config.seed,
        parent_weights=parent_pt,
        freeze_backbone=inherited.freeze_backbone,
    )
    fp32_path = export_detector_onnx(det.weights, models_dir / primary.file, primary.input_size)
    tuned = _TunedDetector(det.weights, [], {})
    for entry in (m for m in parent.models if m.role == "detector"):
        path = fp32_path
        if entry.precision == "int8":
            fp32 = (
                fp32_path
                if entry.input_size == primary.input_size
                else export_detector_onnx(
                    det.weights, work / f"detector-{entry.input_size}.onnx", entry.input_size
                )
            )
            calibration = detector_calibration(images, entry.input_size, 32)
            path = quantize_int8(fp32, models_dir / entry.file, calibration)
        tuned.members[path.name] = path
        tuned.models.append(
            entry.model_copy(update={"latency_ms": median_latency_ms(path), "metrics": {}})
        )
    return tuned


def run_training(
    dataset: HarvestDataset,
    production: Path,
    work: Path,
    out: Path,
    config: TrainRunConfig,
    progress: Callable[[str], None] = print,
    names: dict[str, str] | None = None,
    learned: Callable[[str, set[int]], dict[int, tuple[str, np.ndarray]]] | None = None,
    frames: FrameSplit | None = None,
) -> TrainRunResult:
    """Fine-tune a candidate from ``production`` on ``dataset``, gate it, write it to ``out``.

    ``learned(embedder_sha256, held_out_sample_ids)`` gives the store's fast-path entries
    production lanes add to the bundle's gallery (``store_entries``); ``names`` the product
    names for the class map; ``frames`` the store cameras' labelled frames (trainer.store_frames):
    the detector learns from their training split and is judged on each lane's held-out one.
    The five steps of the module docstring, each handing the next what it needs."""
    from simulator.world import World

    _require_something_to_learn(dataset)
    parent = _production(production)
    if work.exists():
        shutil.rmtree(work)
    models_dir = work / "bundle"
    models_dir.mkdir(parents=True)
    world = World.from_catalog(produce_photos=config.produce_photos)

    progress("1/5 dataset")
    data = _training_data(dataset, world, work, config, progress)

    progress("2/5 embedder")
    embedder = _tuned_embedder(parent, data.combined, models_dir, config, progress)

    progress("3/5 detector")
    detector = _candidate_detector(
        world, dataset, parent, work, models_dir, config, progress, frames
    )

    progress("4/5 gallery")
    gallery = _candidate_gallery(parent, embedder, data.combined, models_dir, config, names)
    members = _candidate_members(embedder, detector, gallery, models_dir)
    # The verifier is ImageNet's classifier as it came: nothing a store teaches changes it, so
    # the candidate carries production's file and record unchanged.
    members.update({m.file: parent.folder / m.file for m in parent.verifiers})

    progress("5/5 gate")
    report = _gate_report(parent, embedder, detector, gallery, dataset, data, config, learned)
    manifest = _candidate_manifest(parent, embedder, detector, gallery, members, report, config)
    write_bundle(manifest, members, out)
    verdict = (
        "passed" if report["gate"]["passed"] else "refused: " + "; ".join(report["gate"]["failed"])
    )
    progress(f"candidate {gallery.version} written to {out}; gate {verdict}")
    return TrainRunResult(out, report)


def _require_something_to_learn(dataset: HarvestDataset) -> None:
    """Refuse a harvest with no training crops before anything is extracted or rendered: the
    message says how many crops came and which codes lacked honest transactions."""
    if not dataset.train:
        raise TrainingError(
            f"nothing to learn: {dataset.stats.get('crops_harvested', 0)} crops harvested; "
            "codes with too few honest transactions: "
            f"{dataset.stats.get('codes_with_too_few_transactions')}"
        )


@dataclass(frozen=True)
class _Production:
    """The production bundle a candidate grows from: extracted, with its training weights."""

    folder: Path
    manifest: Manifest
    weights: ParentWeights

    @property
    def embedders(self) -> dict[str, ModelFile]:
        """Production's embedder files by precision: the candidate's take the same names."""
        return {m.precision: m for m in self.manifest.models if m.role == "embedder"}

    @property
    def verifiers(self) -> list[ModelFile]:
        return [m for m in self.manifest.models if m.role == "verifier"]

    @property
    def primary_detector(self) -> ModelFile:
        """Production's fp32 detector: its input size is the one the candidate trains at and
        both are measured at."""
        return next(
            m for m in self.manifest.models if m.role == "detector" and m.precision == "fp32"
        )


def _production(bundle: Path) -> _Production:
    """``bundle`` verified and extracted (the shared cache), and the weights it carries;
    refused when it carries no embedder weights to fine-tune."""
    folder, manifest = extracted(bundle)
    return _Production(folder, manifest, parent_weights(folder, manifest))


@dataclass(frozen=True)
class _TrainingData:
    """The embedder's crops: training (simulator rehearsal and harvest, per code) and the
    known products' test crops the gate measures on besides the harvest's held-out ones."""

    combined: dict[str, list[Path]]
    known_test: dict[str, list[Path]]


def _training_data(
    dataset: HarvestDataset,
    world: Any,
    work: Path,
    config: TrainRunConfig,
    progress: Callable[[str], None],
) -> _TrainingData:
    """Step 1: the harvest written out, plus simulator crops of every catalog product as
    rehearsal, so fine-tuning on a few new products does not forget the others; and separate
    simulator (and real photo) test crops of the known products."""
    from simulator.datasets import write_embed_dataset

    seed = config.seed
    harvest_dir = dataset.write(work / "harvest")
    write_embed_dataset(world, work / "rehearsal", config.rehearsal_crops, seed)
    write_embed_dataset(
        world, work / "known-test", config.known_test_crops, seed + 1, photo_splits=("test",)
    )
    rehearsal = image_folder(work / "rehearsal")
    harvest_train = image_folder(harvest_dir / "train")
    combined = {
        code: rehearsal.get(code, []) + harvest_train.get(code, [])
        for code in sorted(set(rehearsal) | set(harvest_train))
    }
    known_test = image_folder(work / "known-test")
    progress(f"harvest: {json.dumps(dataset.stats)}")
    return _TrainingData(combined, known_test)


@dataclass(frozen=True)
class _CandidateEmbedder:
    """The candidate's embedder: its weights, fp32 file, and files as the manifest lists them."""

    run: EmbedderRun
    fp32: Path
    models: list[ModelFile]
    members: dict[str, Path]


def _tuned_embedder(
    parent: _Production,
    combined: dict[str, list[Path]],
    models_dir: Path,
    config: TrainRunConfig,
    progress: Callable[[str], None],
) -> _CandidateEmbedder:
    """Step 2: production's embedder fine-tuned on ``combined`` (a new classifier head for
    the enlarged set of codes; backbone and projection start from production), exported at
    production's precisions under production's file names, so lanes and profiles still match."""
    from trainer.embedder import export_embedder_onnx, train_embedder
    from trainer.quantize import median_latency_ms, quantize_int8
    from trainer.weights import load_embedder

    parent_model, embed_meta = load_embedder(parent.weights.embedder)
    run = train_embedder(
        combined,
        arch=embed_meta["arch"],
        epochs=config.embed_epochs,
        input_size=embed_meta["input_size"],
        serve_size=embed_meta["serve_size"],
        seed=config.seed,
        lr=config.embed_lr,
        progress=progress,
        parent=parent_model,
    )
    parent_embedders = parent.embedders
    emb_fp32 = export_embedder_onnx(run, models_dir / parent_embedders["fp32"].file)
    models: list[ModelFile] = []
    members: dict[str, Path] = {emb_fp32.name: emb_fp32}
    calibration = embedder_calibration(combined, run.export_size, 64)
    for precision, entry in parent_embedders.items():
        path = emb_fp32
        if precision == "int8":
            path = quantize_int8(
                emb_fp32,
                models_dir / entry.file,
                calibration,
                float_stem=run.arch in PRETRAINED_ARCHS,
            )
            members[path.name] = path
        models.append(
            entry.model_copy(update={"latency_ms": median_latency_ms(path), "metrics": {}})
        )
    return _CandidateEmbedder(run, emb_fp32, models, members)


@dataclass(frozen=True)
class _CandidateDetector:
    """The candidate's detector (fine-tuned or production's, kept) and both detectors measured
    on the same fresh scenes and held-out camera frames (trainer.gate.DetectorScores)."""

    weights: Path | None  # the .pt the slow path fine-tunes from next time, when there is one
    models: list[ModelFile]
    members: dict[str, Path]
    production: DetectorScores
    candidate: DetectorScores
    production_map: dict[str, Any]  # evaluate_detector's whole report on the test scenes
    candidate_map: dict[str, Any]


@dataclass(frozen=True)
class _DetectorTestSets:
    """What both detectors are measured on: the simulator's test scenes and each lane's
    held-out frames (as a YOLO set for mAP50, as they are for the lane's own count)."""

    scenes_yaml: Path
    scenes: list[ScoredImage]
    lane_yamls: dict[str, Path]
    lanes: dict[str, list[ScoredImage]]


def _candidate_detector(
    world: Any,
    dataset: HarvestDataset,
    parent: _Production,
    work: Path,
    models_dir: Path,
    config: TrainRunConfig,
    progress: Callable[[str], None],
    frames: FrameSplit | None = None,
) -> _CandidateDetector:
    """Step 3: production's detector fine-tuned (``detector_epochs`` > 0 and production carries
    its weights) or kept as it is; both measured on test scenes at ``seed + 1`` and on each
    lane's held-out camera frames, for the gate."""
    from simulator.datasets import write_detect_dataset

    primary = parent.primary_detector
    detect_test = write_detect_dataset(
        world, work / "detect-test", config.detector_test_images, config.seed + 1, val_fraction=1.0
    )
    lanes = {
        lane: held_out
        for lane, held_out in (frames.test.items() if frames else ())
        if len(held_out) >= config.lane_test_min_frames
    }
    tests = _DetectorTestSets(
        detect_test.out / "data.yaml",
        from_yolo_split(detect_test.out / "images" / "val", detect_test.out / "labels" / "val"),
        {
            lane: write_test_set(held_out, work / "frames-test" / f"lane-{index}")
            for index, (lane, held_out) in enumerate(lanes.items())
        },
        {lane: from_store_frames(held_out) for lane, held_out in lanes.items()},
    )
    parent_scores, parent_map = _detector_scores(
        parent.folder / primary.file, tests, primary.input_size
    )
    parent_pt = parent.weights.detector
    if config.detector_epochs > 0 and parent_pt is None:
        progress("production carries no detector weights: its detector is kept")
    if config.detector_epochs > 0 and parent_pt is not None:
        tuned = fine_tune_detector(
            world, dataset, parent_pt, parent.manifest, work, models_dir, config, progress, frames
        )
        candidate_scores, candidate_map = _detector_scores(
            tuned.members[primary.file], tests, primary.input_size
        )
        return _CandidateDetector(
            tuned.weights,
            tuned.models,
            tuned.members,
            parent_scores,
            candidate_scores,
            parent_map,
            candidate_map,
        )
    kept = [m for m in parent.manifest.models if m.role == "detector"]
    members = {entry.file: parent.folder / entry.file for entry in kept}
    return _CandidateDetector(
        parent_pt, kept, members, parent_scores, parent_scores, parent_map, parent_map
    )


def _detector_scores(
    model: Path, tests: _DetectorTestSets, size: int
) -> tuple[DetectorScores, dict[str, Any]]:
    """One detector on every test set: mAP50 (ultralytics' validator) and the lane's own count
    at the new-track score (trainer.lane_boxes); and the scenes' whole mAP report."""
    from trainer.detector import evaluate_detector

    scenes_map = evaluate_detector(model, tests.scenes_yaml, size)
    scores = DetectorScores(
        scenes_mAP50=scenes_map["mAP50"],
        scenes_boxes=count_lane_boxes(model, tests.scenes).summary(),
        lanes_mAP50={
            lane: evaluate_detector(model, data, size)["mAP50"]
            for lane, data in tests.lane_yamls.items()
        },
        lanes_boxes={
            lane: count_lane_boxes(model, images).summary() for lane, images in tests.lanes.items()
        },
    )
    return scores, scenes_map


@dataclass(frozen=True)
class _CandidateGallery:
    """The candidate's gallery under its version, and the members that go with it."""

    version: str
    gallery: Gallery
    members: dict[str, Path]  # gallery, class map, golden frames


def _candidate_gallery(
    parent: _Production,
    embedder: _CandidateEmbedder,
    combined: dict[str, list[Path]],
    models_dir: Path,
    config: TrainRunConfig,
    names: dict[str, str] | None,
) -> _CandidateGallery:
    """Step 4: every code's references from the candidate's own embeddings (production's
    vectors belong to production's embedder), the class map with production's names and
    ``names`` over them, and production's golden frames (written anew when it has none)."""
    from trainer.embedder import embed_paths

    embedder_sha = sha256_file(embedder.fp32)
    session = Embedder(embedder.fp32)
    references = {code: embed_paths(session, paths) for code, paths in combined.items()}
    version = f"store-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    gallery = Gallery.build(references, embedder_sha, config.gallery_per_code, version)
    manifest, folder = parent.manifest, parent.folder
    members = {"gallery.npz": gallery.save(models_dir / "gallery.npz")}
    parent_names = json.loads((folder / manifest.class_map).read_text("utf-8"))["names"]
    members["class_map.json"] = write_class_map(
        models_dir / "class_map.json", gallery.codes, {**parent_names, **(names or {})}
    )
    members[GOLDEN_FRAMES] = (
        folder / manifest.golden_frames
        if manifest.golden_frames is not None
        else write_golden_frames(models_dir / GOLDEN_FRAMES)
    )
    return _CandidateGallery(version, gallery, members)


def _candidate_members(
    embedder: _CandidateEmbedder,
    detector: _CandidateDetector,
    gallery: _CandidateGallery,
    models_dir: Path,
) -> dict[str, Path]:
    """Every file the candidate bundle carries, in the bundle's order; the training weights
    (what the next slow-path run fine-tunes from) are written here."""
    members = {**embedder.members, **detector.members, **gallery.members}
    members.update(training_weights(detector.weights, embedder.run, models_dir))
    return members


def _gate_report(
    parent: _Production,
    embedder: _CandidateEmbedder,
    detector: _CandidateDetector,
    gallery: _CandidateGallery,
    dataset: HarvestDataset,
    data: _TrainingData,
    config: TrainRunConfig,
    learned: Callable[[str, set[int]], dict[int, tuple[str, np.ndarray]]] | None,
) -> dict[str, Any]:
    """Step 5: production and candidate measured on the same held-out crops and judged
    (trainer.gate). Production is judged as lanes run it: its bundle's gallery with the
    store's fast-path entries (``learned``), leaving out entries made from the held-out crops."""
    manifest = parent.manifest
    parent_fp32 = parent.embedders["fp32"].file
    bundle_gallery = Gallery.load(parent.folder / manifest.gallery)
    production_gallery = bundle_gallery
    if learned is not None:
        held_out = {crop.sample_id for crops in dataset.test.values() for crop in crops}
        production_gallery = with_entries(
            bundle_gallery, learned(manifest.files[parent_fp32], held_out)
        )
    production_side = GateSide(
        "production",
        parent.folder / parent_fp32,
        production_gallery,
        manifest.thresholds,
        detector.production,
    )
    candidate_side = GateSide(
        "candidate",
        embedder.fp32,
        gallery.gallery,
        manifest.thresholds,
        detector.candidate,
    )
    # New to the bundle: the fast path may already have taught production's lanes these codes,
    # but its entries belong to production's embedder and go when the candidate's comes.
    new_codes = [code for code in dataset.codes if code not in set(bundle_gallery.codes)]
    return {
        "gate": judge(
            measure(production_side, dataset, data.known_test),
            measure(candidate_side, dataset, data.known_test),
            new_codes,
            config.policy,
        ),
        "harvest": dataset.stats,
        "parent": {"version": manifest.version, "release": manifest.release},
        "candidate": gallery.version,
    }


def _candidate_manifest(
    parent: _Production,
    embedder: _CandidateEmbedder,
    detector: _CandidateDetector,
    gallery: _CandidateGallery,
    members: dict[str, Path],
    report: dict[str, Any],
    config: TrainRunConfig,
) -> Manifest:
    """The candidate's manifest, written whether or not it passed: the next release after
    production's, production's thresholds and profiles, and the gate's report, so a refused
    candidate can be inspected."""
    manifest = parent.manifest
    return Manifest(
        version=gallery.version,
        release=manifest.release + 1,
        parent_version=manifest.version,
        detector_classes=manifest.detector_classes,
        models=embedder.models + detector.models + parent.verifiers,
        gallery="gallery.npz",
        class_map="class_map.json",
        golden_frames=GOLDEN_FRAMES,
        thresholds=manifest.thresholds,
        profiles=manifest.profiles,
        training_data={
            "source": "store harvest (honest transactions) + simulator rehearsal",
            "harvest": report["harvest"],
            "parent": manifest.version,
            "weights": weights_named(members),
            "embedder_images": embedder.run.train_images,
            "embedder_classes": len(embedder.run.classes),
            "recipe": json.loads(json.dumps(asdict(config), default=str)),
            **{k: v for k, v in manifest.training_data.items() if k.startswith("verifier_")},
        },
        metrics={
            "gate": report["gate"],
            "detector_test": {
                "production": detector.production_map,
                "candidate": detector.candidate_map,
            },
            "store_frames_mAP50": {
                "production": detector.production.lanes_mAP50,
                "candidate": detector.candidate.lanes_mAP50,
            },
            "detector_lane_boxes": {
                "production": asdict(detector.production),
                "candidate": asdict(detector.candidate),
            },
        },
    )


def store_entries(
    engine: Any, embedder_sha256: str, held_out: Collection[int] = ()
) -> dict[int, tuple[str, np.ndarray]]:
    """The store's fast-path gallery entries for that embedder, not withdrawn: with the bundle's
    gallery they are what production lanes identify with, so the gate compares against both.
    Entries made from ``held_out`` samples are left out: the gate tests on those crops, and a
    gallery holding the very crop it is asked about would flatter production."""
    from sqlmodel import Session, select

    from store_server.learning import decode_vector
    from store_server.models import GalleryEntry

    entries: dict[int, tuple[str, np.ndarray]] = {}
    with Session(engine) as session:
        rows = session.exec(
            select(GalleryEntry).where(GalleryEntry.embedder_sha256 == embedder_sha256)
        )
        for row in rows:  # a withdrawal is a row of its own, marked withdrawn like its target
            if row.id is None or row.withdrawn or row.withdraws is not None:
                continue
            if row.sample_id not in held_out:
                entries[row.id] = (row.code, decode_vector(row.vector_b64))
    return entries
