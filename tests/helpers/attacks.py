"""Memory of this process (the servers under test run in it) while a probe runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@contextmanager
def peak_growth_mb() -> Iterator[list[float]]:
    """This process's peak resident memory above where it stood at the start, in MB (the
    servers under test run in it): the kernel's high-water mark is reset first."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    grown: list[float] = []
    yield grown
    grown.append((_status_kb("VmHWM") - before) / 1024)
