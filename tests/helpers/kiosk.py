"""The kiosk script (hardware/kiosk/lane-screen.sh) run as the lane computer runs it, with the
real Chromium, headless, standing in for the full-screen browser: what it was started with
and the page it got come back to the test."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.paths import REPO_ROOT


@dataclass
class KioskRun:
    process: subprocess.CompletedProcess[str]
    argv: str  # the browser's command line, one argument a line
    page: str  # the page the browser got (its DOM)


def run_kiosk(tmp_path: Path, base: str, screen_key: str, cert: Path | None = None) -> KioskRun:
    """The kiosk script against the lane at ``base`` with ``screen_key`` in its key file (and
    ``cert``, the lane's certificate, for a lane serving HTTPS)."""
    key_file = tmp_path / "screen-key"
    key_file.write_text(screen_key + "\n")
    key_file.chmod(0o600)
    argv_file, page_file = tmp_path / "browser-argv", tmp_path / "page.html"
    browser = tmp_path / "browser"  # records its command line, passes on the TLS pin
    browser.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$@" > {argv_file}\n'
        "tls=()\n"
        'for a in "$@"; do case "$a" in --ignore-certificate-errors-spki-list=*|'
        '--user-data-dir=*) tls+=("$a");; esac; done\n'
        'exec chromium --headless --no-sandbox "${tls[@]}" --dump-dom "${@: -1}"'
        f" > {page_file}\n"
    )
    browser.chmod(0o700)
    env = {
        **os.environ,
        "LANEGUARD_SCREEN_BASE": base,
        "LANEGUARD_SCREEN_KEY_FILE": str(key_file),
        "LANEGUARD_BROWSER": str(browser),
    }
    if cert is not None:
        env |= {
            "LANEGUARD_SCREEN_CERT": str(cert),
            "LANEGUARD_KIOSK_PROFILE": str(tmp_path / "profile"),
        }
    process = subprocess.run(
        ["bash", str(REPO_ROOT / "hardware/kiosk/lane-screen.sh")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    read = lambda path: path.read_text() if path.exists() else ""  # noqa: E731
    return KioskRun(process, read(argv_file), read(page_file))
