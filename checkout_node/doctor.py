"""`laneguard node doctor`: what this board has, and what the lane will use on it.

Everything here is looked up on the machine itself (no network): the CPU and memory, the board
model when the device tree names one (Raspberry Pi, Jetson), onnxruntime's execution providers
and the one the detector will pick, the cameras, serial ports and input devices present, the
hardware profile that fits, and whether the configured bundle and store server settings hold
together. Each finding is ok, warn or fail, so IT sees at a glance what to fix.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from checkout_node.settings import LaneSettings
from checkout_node.store_link import PINNED_CERTIFICATE

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    topic: str
    status: Status
    detail: str


def board_model(root: Path = Path("/")) -> str | None:
    """The device tree's model string (Raspberry Pi, Jetson), None on a PC."""
    path = root / "proc/device-tree/model"
    if path.is_file():
        return path.read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
    return None


def memory_mb(root: Path = Path("/")) -> int | None:
    meminfo = root / "proc/meminfo"
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def suggested_profile(model: str | None, providers: list[str]) -> str:
    """The bundle's hardware profile for this board."""
    text = (model or "").lower()
    if "jetson" in text or "TensorrtExecutionProvider" in providers:
        return "jetson-orin-nano"
    if "raspberry pi" in text or platform.machine() in ("aarch64", "arm64"):
        return "raspberry-pi-5"
    return "x86-2core"


def devices(pattern: str, root: Path = Path("/")) -> list[str]:
    return sorted(str(p) for p in (root / "dev").glob(pattern))


def _till_access(settings: LaneSettings) -> Finding:
    """Whether tills on the network can reach the POS API, and how they prove who they are."""
    loopback = settings.http_host in ("127.0.0.1", "localhost", "::1")
    if settings.pos_tokens:
        where = "this computer" if loopback else f"the network ({settings.http_host})"
        return Finding("till api", "ok", f"{len(settings.pos_tokens)} till token(s), from {where}")
    if loopback:
        return Finding("till api", "ok", "tills on this computer only (no pos_tokens)")
    return Finding(
        "till api",
        "warn",
        f"listening on {settings.http_host} but no pos_tokens: tills on the network are refused",
    )


def examine(settings: LaneSettings, root: Path = Path("/")) -> list[Finding]:
    import onnxruntime as ort

    from checkout_node.vision.detector import choose_providers
    from laneguard.bundle import SHIPPED_BUNDLE, BundleError, read_manifest

    findings: list[Finding] = []
    model = board_model(root)
    cpus = os.cpu_count() or 0
    memory = memory_mb(root)
    findings.append(
        Finding(
            "board",
            "ok",
            f"{model or platform.node()} ({platform.machine()}, {cpus} CPUs, "
            f"{memory if memory is not None else '?'} MB memory)",
        )
    )
    if memory is not None and memory < 1024:
        findings.append(Finding("memory", "warn", f"{memory} MB; the lane needs about 400 MB"))
    available = list(ort.get_available_providers())
    chosen = choose_providers(available)
    findings.append(
        Finding(
            "inference",
            "ok",
            f"onnxruntime {ort.__version__}; providers present: {', '.join(available)}; "
            f"the detector will use {chosen[0]}",
        )
    )
    profile = settings.profile or suggested_profile(model, available)
    bundle = settings.bundle or SHIPPED_BUNDLE
    try:
        manifest = read_manifest(bundle)
    except BundleError as error:
        findings.append(Finding("bundle", "fail", str(error)))
    else:
        names = [p.name for p in manifest.profiles]
        status: Status = "ok" if profile in names else "fail"
        findings.append(
            Finding(
                "bundle",
                status,
                f"{bundle.name}: {manifest.version} (release {manifest.release}); profile "
                f"{profile}" + ("" if status == "ok" else f" not in it (has {', '.join(names)})"),
            )
        )
    if settings.bundle_keys:
        missing = [str(k) for k in settings.bundle_keys if not Path(k).is_file()]
        findings.append(
            Finding(
                "signatures",
                "fail" if missing else "ok",
                f"missing key files: {', '.join(missing)}"
                if missing
                else f"bundles must be signed by one of {len(settings.bundle_keys)} key(s)",
            )
        )
    elif settings.allow_unsigned_bundles:
        findings.append(
            Finding("signatures", "warn", "allow_unsigned_bundles: unsigned bundles are taken")
        )
    else:
        findings.append(
            Finding("signatures", "warn", "no bundle_keys: the lane takes no bundle from the store")
        )
    findings.append(_till_access(settings))
    findings.append(_clips(settings))
    findings.append(_updates(Path(settings.data_dir) / "updates"))
    cameras = devices("video*", root)
    camera = settings.camera
    if camera.isdigit() or camera.startswith("/dev/"):
        wanted = camera if camera.startswith("/dev/") else f"/dev/video{camera}"
        present = str(root / wanted.lstrip("/")) in cameras
        findings.append(
            Finding(
                "camera",
                "ok" if present else "fail",
                f"{wanted} {'present' if present else 'not found'}; cameras here: "
                f"{', '.join(cameras) or 'none'}",
            )
        )
    else:
        findings.append(Finding("camera", "ok", f"stream or file {camera}"))
    for spec in settings.scanners:
        if not spec.device.startswith("/dev/") and spec.type == "imager":
            findings.append(Finding("scanner (imager)", "ok", f"stream {spec.device}"))
            continue
        present = (root / spec.device.lstrip("/")).exists()
        findings.append(
            Finding(
                f"scanner ({spec.type})",
                "ok" if present else "fail",
                f"{spec.device} {'present' if present else 'not found'}",
            )
        )
    serial = devices("ttyACM*", root) + devices("ttyUSB*", root)
    findings.append(Finding("serial ports", "ok", ", ".join(serial) or "none"))
    if settings.server_url is None:
        findings.append(Finding("store server", "warn", "no server_url: nothing is delivered"))
    else:
        enrolled = (Path(settings.data_dir) / "credential.json").is_file()
        how = (
            "enrolled"
            if enrolled or settings.server_token
            else ("will enrol with its token" if settings.enrolment_token else "no credential")
        )
        where = settings.server_url
        if where == "discover":
            found = Path(settings.data_dir) / "server.json"
            where = (
                f"found at {json.loads(found.read_text('utf-8'))['url']}"
                if found.is_file()
                else f"to be found on the store's network (UDP {settings.discovery_port})"
            )
        credential: Status = "fail" if how == "no credential" else "ok"
        pinned = (Path(settings.data_dir) / PINNED_CERTIFICATE).is_file()
        if where.startswith("http://"):
            how += ", plain HTTP (allow_plain_http: a lab lane)"
        else:
            how += ", certificate pinned" if pinned else ", certificate pinned at first contact"
        findings.append(Finding("store server", credential, f"{where}: {how}"))
    return findings


def _clips(settings: LaneSettings) -> Finding:
    """Alert clips need OpenCV's WebM encoder and, with face blurring on, dlib: a lane missing
    either would raise alerts with no clip."""
    import tempfile

    import numpy as np

    from checkout_node.clips import encode_webm
    from checkout_node.privacy import FaceDetector

    if not settings.clips.enabled:
        return Finding("alert clips", "ok", "off")
    try:
        with tempfile.TemporaryDirectory() as work:
            encode_webm([np.zeros((48, 64, 3), np.uint8)] * 2, settings.clips.fps, Path(work))
        faces = "faces blurred (dlib)" if settings.privacy.blur_faces else "face blurring off"
        if settings.privacy.blur_faces:
            FaceDetector()
    except (ImportError, RuntimeError) as error:
        return Finding("alert clips", "fail", f"cannot make clips: {error}")
    masks = len(settings.privacy.masks)
    return Finding(
        "alert clips",
        "ok",
        f"WebM {settings.clips.width} px at {settings.clips.fps:g} frames/s; {faces}; "
        f"{masks} privacy mask(s)",
    )


def _updates(folder: Path) -> Finding:
    """What the updater took from the store: the bundle it runs, on trial or kept, and the
    last bundle it refused."""
    from checkout_node.updater import UpdateState

    state = UpdateState.load(folder)
    if state.current is None:
        text = "running the configured bundle"
    else:
        trial = " (on trial)" if state.trial else ""
        text = f"running {state.current.version} from the store{trial}"
    report = state.report or {}
    if report.get("state") not in (None, "running"):
        return Finding(
            "updates", "warn", f"{text}; last offer {report['state']}: {report.get('detail', '')}"
        )
    return Finding("updates", "ok", text)


def as_dicts(findings: list[Finding]) -> list[dict[str, str]]:
    return [asdict(f) for f in findings]
