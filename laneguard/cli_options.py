"""Command-line options that several `laneguard` groups share."""

from __future__ import annotations

from pathlib import Path

import click

produce_photos_option = click.option(
    "--produce-photos",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    envvar="LANEGUARD_PRODUCE_PHOTOS",
    help="Folder of real produce photos (grocery-produce layout: images/<split>/<class>/*.jpg).",
)
