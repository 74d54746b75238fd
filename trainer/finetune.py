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
from trainer.embedder import PRETRAINED_ARCHS, image_folder, read_image
from trainer.gate import GatePolicy, GateSide, judge, measure
from trainer.golden import write_golden_frames
from trainer.harvest import HarvestConfig, HarvestDataset, HarvestedCrop
from trainer.weights import parent_weights, training_weights, weights_named


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


def _fine_tune_detector(
    world: Any,
    dataset: HarvestDataset,
    parent_pt: Path,
    parent: Manifest,
    work: Path,
    models_dir: Path,
    config: TrainRunConfig,
    progress: Callable[[str], None],
) -> _TunedDetector:
    """Production's detector trained further on simulator scenes with harvested crops pasted
    in, exported at each of production's detector sizes and precisions (same file names)."""
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
    progress(f"detector data: {detect.images} simulator images, {pasted} harvested crops pasted")
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
) -> TrainRunResult:
    """Fine-tune a candidate from ``production`` on ``dataset``, gate it, write it to ``out``.

    ``learned(embedder_sha256, held_out_sample_ids)`` gives the store's fast-path entries
    production lanes add to the bundle's gallery (``store_entries``); ``names`` the product
    names for the class map."""
    from simulator.datasets import write_detect_dataset, write_embed_dataset
    from simulator.world import World
    from trainer.detector import evaluate_detector
    from trainer.embedder import embed_paths, export_embedder_onnx, train_embedder
    from trainer.quantize import median_latency_ms, quantize_int8
    from trainer.weights import load_embedder

    if not dataset.train:
        raise TrainingError(
            f"nothing to learn: {dataset.stats.get('crops_harvested', 0)} crops harvested; "
            "codes with too few honest transactions: "
            f"{dataset.stats.get('codes_with_too_few_transactions')}"
        )
    parent_folder, parent = extracted(production)
    weights = parent_weights(parent_folder, parent)
    if work.exists():
        shutil.rmtree(work)
    models_dir = work / "bundle"
    models_dir.mkdir(parents=True)
    world = World.from_catalog(produce_photos=config.produce_photos)
    seed = config.seed

    progress("1/5 dataset")
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

    progress("2/5 embedder")
    parent_model, embed_meta = load_embedder(weights.embedder)
    run = train_embedder(
        combined,
        arch=embed_meta["arch"],
        epochs=config.embed_epochs,
        input_size=embed_meta["input_size"],
        serve_size=embed_meta["serve_size"],
        seed=seed,
        lr=config.embed_lr,
        progress=progress,
        parent=parent_model,
    )
    parent_embedders = {m.precision: m for m in parent.models if m.role == "embedder"}
    emb_fp32 = export_embedder_onnx(run, models_dir / parent_embedders["fp32"].file)
    embedder = Embedder(emb_fp32)
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

    progress("3/5 detector")
    primary = next(m for m in parent.models if m.role == "detector" and m.precision == "fp32")
    detect_test = write_detect_dataset(
        world, work / "detect-test", config.detector_test_images, seed + 1, val_fraction=1.0
    )
    test_yaml = detect_test.out / "data.yaml"
    parent_map = evaluate_detector(parent_folder / primary.file, test_yaml, primary.input_size)
    detector_pt = weights.detector
    if config.detector_epochs > 0 and weights.detector is None:
        progress("production carries no detector weights: its detector is kept")
    if config.detector_epochs > 0 and weights.detector is not None:
        tuned = _fine_tune_detector(
            world, dataset, weights.detector, parent, work, models_dir, config, progress
        )
        detector_pt = tuned.weights
        models += tuned.models
        members.update(tuned.members)
        candidate_map = evaluate_detector(
            tuned.members[primary.file], test_yaml, primary.input_size
        )
    else:
        for entry in (m for m in parent.models if m.role == "detector"):
            members[entry.file] = parent_folder / entry.file
            models.append(entry)
        candidate_map = parent_map

    progress("4/5 gallery")
    embedder_sha = sha256_file(emb_fp32)
    references = {code: embed_paths(embedder, paths) for code, paths in combined.items()}
    version = f"store-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    gallery = Gallery.build(references, embedder_sha, config.gallery_per_code, version)
    members["gallery.npz"] = gallery.save(models_dir / "gallery.npz")
    parent_names = json.loads((parent_folder / parent.class_map).read_text("utf-8"))["names"]
    members["class_map.json"] = write_class_map(
        models_dir / "class_map.json", gallery.codes, {**parent_names, **(names or {})}
    )
    members[GOLDEN_FRAMES] = (
        parent_folder / parent.golden_frames
        if parent.golden_frames is not None
        else write_golden_frames(models_dir / GOLDEN_FRAMES)
    )
    members.update(training_weights(detector_pt, run, models_dir))

    progress("5/5 gate")
    parent_fp32 = parent_embedders["fp32"].file
    bundle_gallery = Gallery.load(parent_folder / parent.gallery)
    production_gallery = bundle_gallery
    if learned is not None:
        held_out = {crop.sample_id for crops in dataset.test.values() for crop in crops}
        production_gallery = with_entries(
            bundle_gallery, learned(parent.files[parent_fp32], held_out)
        )
    production_side = GateSide(
        "production",
        parent_folder / parent_fp32,
        production_gallery,
        parent.thresholds,
        parent_map["mAP50"],
    )
    candidate_side = GateSide(
        "candidate", emb_fp32, gallery, parent.thresholds, candidate_map["mAP50"]
    )
    # New to the bundle: the fast path may already have taught production's lanes these codes,
    # but its entries belong to production's embedder and go when the candidate's comes.
    new_codes = [code for code in dataset.codes if code not in set(bundle_gallery.codes)]
    report: dict[str, Any] = {
        "gate": judge(
            measure(production_side, dataset, known_test),
            measure(candidate_side, dataset, known_test),
            new_codes,
            config.policy,
        ),
        "harvest": dataset.stats,
        "parent": {"version": parent.version, "release": parent.release},
        "candidate": version,
    }
    manifest = Manifest(
        version=version,
        release=parent.release + 1,
        parent_version=parent.version,
        detector_classes=parent.detector_classes,
        models=models,
        gallery="gallery.npz",
        class_map="class_map.json",
        golden_frames=GOLDEN_FRAMES,
        thresholds=parent.thresholds,
        profiles=parent.profiles,
        training_data={
            "source": "store harvest (honest transactions) + simulator rehearsal",
            "harvest": dataset.stats,
            "parent": parent.version,
            "weights": weights_named(members),
            "embedder_images": run.train_images,
            "embedder_classes": len(run.classes),
            "recipe": json.loads(json.dumps(asdict(config), default=str)),
        },
        metrics={
            "gate": report["gate"],
            "detector_test": {"production": parent_map, "candidate": candidate_map},
        },
    )
    write_bundle(manifest, members, out)
    verdict = (
        "passed" if report["gate"]["passed"] else "refused: " + "; ".join(report["gate"]["failed"])
    )
    progress(f"candidate {version} written to {out}; gate {verdict}")
    return TrainRunResult(out, report)


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
