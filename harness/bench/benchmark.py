"""What one `laneguard bench` benchmark is, declared in one place.

Each module beside this one declares one benchmark as a `Benchmark`: its command name, the line
`laneguard bench --help` shows, how it runs at its default size, and the markdown rows that
summarise its JSON result. harness.cli makes `laneguard bench NAME` and `bench all` (what
`make bench` runs) from those declarations alone, so a benchmark is added or changed in its
module and named once in harness.bench.BENCHMARKS.

The declarations are light on purpose: each `run` imports its measuring code (harness.benchmarks,
harness.evals) only when called, so `laneguard bench --help` and any one benchmark need only the
packages that benchmark uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PRODUCE_PHOTOS = "../shared/data/grocery-produce"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: `run` measures at the default size and returns a JSON-able dict (written
    to ``<out>/<name>.json``); `table` turns that dict into the markdown rows printed and
    appended to ``<out>/summary.md``."""

    name: str
    description: str
    run: Callable[[], dict[str, Any]]
    table: Callable[[dict[str, Any]], list[str]]


def produce_photos() -> Path | None:
    """The real produce photos when they are on this machine (benchmarks use them if so)."""
    photos = Path(os.environ.get("LANEGUARD_PRODUCE_PHOTOS", DEFAULT_PRODUCE_PHOTOS))
    return photos if (photos / "images").is_dir() else None
