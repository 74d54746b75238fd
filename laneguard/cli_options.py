"""Command-line options that several `laneguard` groups share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

produce_photos_option = click.option(
    "--produce-photos",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    envvar="LANEGUARD_PRODUCE_PHOTOS",
    help="Folder of real produce photos (grocery-produce layout: images/<split>/<class>/*.jpg).",
)


def with_options(
    command: Callable[..., None], options: Sequence[Callable[[Any], Any]]
) -> Callable[..., None]:
    """``command`` with ``options`` applied, the first listed shown first in --help."""
    for option in reversed(options):
        command = option(command)
    return command
