"""The lane's models, from a bundle: verified, extracted once, variant picked for the board."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from laneguard.bundle import (
    SHIPPED_BUNDLE,
    BundleError,
    Manifest,
    ModelFile,
    extracted,
)
from laneguard.gallery import Gallery


@dataclass(frozen=True)
class LaneModels:
    manifest: Manifest
    folder: Path
    detector: ModelFile
    embedder: ModelFile
    gallery: Gallery
    threads: int = 2  # from the hardware profile, when one was chosen
    # The second look at birth candidates (checkout_node.vision.verifier); None in bundles
    # made before it, whose lanes start tracks on the detector's score alone.
    verifier: ModelFile | None = None

    def path(self, model: ModelFile) -> Path:
        return self.folder / model.file


def load_models(
    bundle: Path = SHIPPED_BUNDLE,
    cache: Path | None = None,
    profile: str | None = None,
    detector_precision: str | None = None,
    detector_size: int | None = None,
    embedder_precision: str | None = None,
) -> LaneModels:
    """Verify and extract ``bundle`` (cached by its hash) and pick the variants to run.

    A hardware profile named in the manifest picks both models; explicit precision or input
    size override it. Without either: the most accurate detector at the smallest input size.
    """
    folder, manifest = extracted(bundle, cache)
    detectors = [m for m in manifest.models if m.role == "detector"]
    embedders = [m for m in manifest.models if m.role == "embedder"]
    chosen_profile = next((p for p in manifest.profiles if p.name == profile), None)
    if profile is not None and chosen_profile is None:
        raise BundleError(
            f"bundle {manifest.version} has no hardware profile {profile!r}; "
            f"it has {', '.join(p.name for p in manifest.profiles)}"
        )
    if chosen_profile is not None:
        detector = manifest.model(chosen_profile.detector)
        embedder = manifest.model(chosen_profile.embedder)
    else:  # the most accurate detector at the smallest input size
        smallest = min(m.input_size for m in detectors)
        detector = max(
            (m for m in detectors if m.input_size == smallest),
            key=lambda m: (m.metrics.get("mAP50", 0.0), m.precision == "int8"),
        )
        embedder = next((m for m in embedders if m.precision == "fp32"), embedders[0])
    if detector_precision or detector_size:
        matching = [
            m
            for m in detectors
            if (detector_precision is None or m.precision == detector_precision)
            and (detector_size is None or m.input_size == detector_size)
        ]
        if not matching:
            raise BundleError(
                f"bundle {manifest.version} has no {detector_precision or ''} detector "
                f"at input {detector_size or 'any size'}"
            )
        detector = matching[0]
    if embedder_precision:
        embedder = next((m for m in embedders if m.precision == embedder_precision), embedder)
    fp32_embedder = next(m for m in embedders if m.precision == "fp32")
    gallery = Gallery.load(
        folder / manifest.gallery, expect_embedder_sha256=manifest.files[fp32_embedder.file]
    )
    threads = chosen_profile.threads if chosen_profile is not None else 2
    verifiers = [m for m in manifest.models if m.role == "verifier"]
    # The detector's precision where the bundle has it: a board that runs an int8 detector
    # runs int8 fastest.
    verifier = next((m for m in verifiers if m.precision == detector.precision), None)
    verifier = verifier or (verifiers[0] if verifiers else None)
    return LaneModels(manifest, folder, detector, embedder, gallery, threads, verifier)
