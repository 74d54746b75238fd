"""Keep ultralytics off the network: no hub, no telemetry, no font or weight downloads, no pip.

Stores have no internet on the training box more often than not, and a trainer that silently
installs packages or phones home is not acceptable in a store. Call :func:`configure_offline`
before ultralytics is imported (every trainer entry point does).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_INTEGRATIONS_OFF = {
    "sync": False,
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "raytune": False,
    "tensorboard": False,
    "wandb": False,
    "vscode_msg": False,
    "openvino_msg": False,
}


def configure_offline(config_dir: Path | None = None) -> None:
    """Environment and settings that stop every ultralytics network path we know of.

    - YOLO_OFFLINE: ultralytics' own online check reports offline (no downloads attempted).
    - YOLO_AUTOINSTALL=False: missing packages are an error, never a pip install.
    - YOLO_CONFIG_DIR: a private settings file, with sync (telemetry) and every logging
      integration switched off, and local stand-ins for the fonts it would download.
    Training must also pass plots=False (font download) and amp=False (the AMP check downloads
    yolo11n.pt); export passes simplify=False (onnxslim auto-install). trainer.detector does.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    folder = config_dir or Path(tempfile.gettempdir()) / "laneguard-ultralytics"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(folder))
    os.environ.setdefault("YOLO_VERBOSE", "True")
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    SETTINGS.update(_INTEGRATIONS_OFF)
    _provide_fonts(Path(USER_CONFIG_DIR))
    _log_to_stderr()


def _log_to_stderr() -> None:
    """ultralytics logs to stdout; our commands print their results (JSON) there, so its
    progress goes to stderr with ours."""
    import logging
    import sys

    for handler in logging.getLogger("ultralytics").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def _provide_fonts(user_config_dir: Path) -> None:
    """Dataset checks fetch Arial from GitHub unless a file of that name is already there.

    matplotlib (an ultralytics dependency) ships DejaVu Sans; it stands in for both names.
    """
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    user_config_dir.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = user_config_dir / name
        if not target.exists():
            shutil.copyfile(source, target)
