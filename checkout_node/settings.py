"""A lane's settings: `laneguard node run --config lane.yaml` (and LANEGUARD_LANE_* variables).

Validated at start-up; a bad key or value stops the lane with a message that names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from checkout_node.store_link import check_scheme
from checkout_node.vision.detectors import DEFAULT_BACKEND, detector_backends
from laneguard.bearer import is_loopback
from laneguard.settings import ServiceSettings
from product_db import SAMPLE_CATALOG

Point = tuple[float, float]


class ZoneSettings(BaseModel):
    """Polygons in camera pixels: where items are scanned and where they are bagged."""

    model_config = ConfigDict(extra="forbid")

    scan_area: list[Point]
    bagging_area: list[Point]

    @field_validator("scan_area", "bagging_area")
    @classmethod
    def _polygon(cls, points: list[Point]) -> list[Point]:
        if len(points) < 3:
            raise ValueError("a polygon needs at least 3 [x, y] points")
        return points


class ClipSettings(BaseModel):
    """Alert clips (checkout_node.clips). The defaults fit a Raspberry Pi 5: 320 pixels wide at
    8 frames/s is ~15 KB a frame as JPEG, so 8 MB of ring holds the 30 s an alert at the final
    check reaches back, and one clip is a few hundred KB."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    fps: float = Field(default=8.0, ge=1, le=30)
    width: int = Field(default=320, ge=96, le=1280, description="clip width in pixels")
    before_s: float = Field(default=3.0, ge=0, le=20, description="clip start before the event")
    after_s: float = Field(default=1.5, ge=0, le=10, description="clip end after the event")
    buffer_mb: int = Field(default=8, ge=1, le=256, description="memory the frame ring may use")
    history_s: float = Field(default=30.0, ge=1, le=300, description="how far back the ring goes")


class FrameSettings(BaseModel):
    """Detection frames the lane keeps for its detector to learn this store's camera
    (checkout_node.frame_keeper): a few per counted item of an honest transaction, and frames
    "of interest" for a larger model or a person. Each passes the privacy filter before it is
    encoded; ``per_day`` bounds what one lane sends. Off unless IT turns it on: a frame shows
    the whole lane, so by default only item crops leave a lane, and frames may be turned on only
    with faces blurred and at least one privacy mask (where customers stand)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    per_day: int = Field(default=200, ge=0, le=10_000, description="frames a lane sends a day")
    per_track: int = Field(default=2, ge=1, le=8, description="frames per counted item")
    per_transaction: int = Field(default=6, ge=0, le=32, description="honest frames per checkout")
    of_interest_per_transaction: int = Field(
        default=2, ge=0, le=16, description="per checkout, for each reason"
    )
    every_s: float = Field(default=0.25, ge=0.05, le=5, description="a candidate frame this often")
    candidates: int = Field(
        default=32, ge=4, le=256, description="frames held at once (640x480: ~1 MB each)"
    )
    t1: float = Field(default=0.5, ge=0, le=1, description="a box this sure is taken as true")
    t2: float = Field(default=0.25, ge=0, le=1, description="between t2 and t1: of interest")

    @model_validator(mode="after")
    def _ordered(self) -> FrameSettings:
        if self.t2 > self.t1:
            raise ValueError(f"frames: t2 ({self.t2}) must not be above t1 ({self.t1})")
        return self


class PrivacySettings(BaseModel):
    """What is removed from every frame before it leaves the lane (checkout_node.privacy)."""

    model_config = ConfigDict(extra="forbid")

    masks: list[list[Point]] = Field(
        default_factory=list,
        description="polygons in camera pixels blacked out (where customers stand)",
    )
    blur_faces: bool = True

    @field_validator("masks")
    @classmethod
    def _polygons(cls, masks: list[list[Point]]) -> list[list[Point]]:
        for index, points in enumerate(masks):
            if len(points) < 3:
                raise ValueError(f"privacy mask {index} needs at least 3 [x, y] points")
        return masks


class ScannerSettings(BaseModel):
    """One scan input. ``serial``: a serial or USB-CDC scanner (``device`` e.g. /dev/ttyACM0);
    ``hid``: a keyboard-wedge scanner read through evdev (``device`` under /dev/input);
    ``imager``: a camera over the scanner glass read with pyzbar (``device`` a camera URI)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["serial", "hid", "imager"]
    device: str = Field(min_length=1)
    baudrate: int = Field(default=9600, gt=0)
    source: Literal["scanner", "keypad", "imager"] | None = None


class ReconcileSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scan_before_s: float = Field(default=8.0, gt=0)
    scan_after_s: float = Field(default=1.5, ge=0)
    follower_s: float = Field(default=4.0, ge=0)
    plu_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="belief the produce pick list's first PLU needs before a keyed PLU off the "
        "list is a switch (higher: fewer alerts, fewer swaps caught)",
    )


class LaneSettings(ServiceSettings):
    """Everything a lane can be told; each default suits the demo on one computer."""

    model_config = SettingsConfigDict(env_prefix="LANEGUARD_LANE_", extra="forbid")

    lane_id: str = Field(default="lane-1", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    camera: str = Field(
        default="0", description="device index, V4L2 path, RTSP/HTTP URL or video file"
    )
    bundle: Path | None = Field(default=None, description="model bundle; default: shipped")
    profile: str | None = Field(default=None, description="hardware profile in the bundle")
    detect_interval: int = Field(
        default=1,
        ge=1,
        le=4,
        description="run the detector on every Nth camera frame (2 halves its load; see bench)",
    )
    inference_threads: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="threads each model may use (default: the bundle's hardware profile); "
        "lower it where the lane shares its computer, so threads do not fight over cores",
    )
    verify_births: bool = Field(
        default=True,
        description="ask the bundle's verifier before a box starts a track (false: the "
        "detector's score alone, for a counter or surround it is found to misjudge)",
    )
    detector_backend: str = Field(
        default=DEFAULT_BACKEND,
        description="how the detector runs (checkout_node.vision.detectors: onnxruntime, "
        "onnxruntime-cpu, onnxruntime-tensorrt, onnxruntime-cuda, onnxruntime-openvino)",
    )
    bundle_keys: list[Path] = Field(
        default_factory=list,
        description="public keys (laneguard keys new): a bundle from the store must be signed "
        "by one",
    )
    allow_unsigned_bundles: bool = Field(
        default=False,
        description="take unsigned bundles from the store when no bundle_keys are set "
        "(a lab lane only; a store's lanes refuse them)",
    )
    pinned_bundle: str | None = Field(
        default=None, description="IT admin's pin: this version may be older (anti-rollback)"
    )
    zones: ZoneSettings | None = Field(default=None, description="default: standard layout")
    catalog: Path = Field(default=SAMPLE_CATALOG, description="catalog file (CSV or JSON)")
    server_url: str | None = Field(
        default=None,
        description="store server URL; 'discover': find it on the store's network at first "
        "boot; none: keep everything on the lane",
    )
    allow_plain_http: bool = Field(
        default=False,
        description="accept an http:// store server (a lab lane only: the token, credential "
        "and evidence would cross the network readable)",
    )
    discovery_port: int = Field(default=47800, ge=1, le=65535, description="UDP, see server")
    store_key_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{16}$",
        description="the store's key id (`laneguard server key-id`); default: the one the "
        "enrolment token ends in. Discovery trusts only answers signed by it",
    )
    server_token: str | None = Field(default=None, description="lane credential, if given out")
    enrolment_token: str | None = Field(
        default=None, description="one-time token from the store's IT admin (zero-touch)"
    )
    data_dir: Path = Field(default=Path("data/lane"))
    outbox_cap_mb: int = Field(default=2048, gt=0)
    http_host: str = Field(
        default="127.0.0.1",
        description="address the lane screen and till API listen on; 0.0.0.0 for tills on "
        "the network (then set pos_tokens)",
    )
    http_port: int = Field(default=8100, ge=1, le=65535)
    http_tls: bool | None = Field(
        default=None,
        description="serve the screen and till API over HTTPS (default: when http_host is not "
        "this computer's loopback, so till tokens never cross the store network readable)",
    )
    http_tls_cert: Path | None = Field(
        default=None,
        description="IT's certificate for the lane (with http_tls_key); default: one made "
        "once in data_dir (http-tls.crt), which tills and the kiosk pin",
    )
    http_tls_key: Path | None = Field(default=None, description="the key of http_tls_cert")
    pos_tokens: list[str] = Field(
        default_factory=list,
        description="one secret per till (Authorization: Bearer); none: tills on this "
        "computer only",
    )
    metrics_tokens: list[str] = Field(
        default_factory=list,
        description="secrets a Prometheus scraper may use for /metrics (Authorization: "
        "Bearer); none: scrapes from this computer only",
    )
    screen_key: str | None = Field(
        default=None,
        min_length=16,
        description="the kiosk's key to the lane screen; default: made once in data_dir",
    )
    screen_origins: list[str] = Field(
        default_factory=list,
        description="browser origins besides the lane's own (loopback) that may use the screen",
    )
    supervisor_pins: list[str] = Field(
        default_factory=list,
        description="PBKDF2 hashes of the store's supervisor PINs (laneguard node hash-pin)",
    )
    max_body_kb: int = Field(default=64, ge=1, description="largest request body the lane reads")
    idle_gap_s: float = Field(default=20.0, gt=0, description="no activity: transaction over")
    customer_prompt_s: float = Field(
        default=0.0, ge=0, description="ask the customer to scan before calling staff (0: off)"
    )
    heartbeat_s: float = Field(default=5.0, gt=0)
    update_poll_s: float = Field(
        default=30.0, gt=0, description="how often to ask the store which bundle to run"
    )
    update_trial_s: float = Field(
        default=300.0, gt=0, description="a new bundle healthy this long is kept"
    )
    gallery_poll_s: float = Field(
        default=5.0, gt=0, description="how often to ask the store for learned gallery entries"
    )
    scanners: list[ScannerSettings] = Field(default_factory=list)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    clips: ClipSettings = Field(default_factory=ClipSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    frames: FrameSettings = Field(default_factory=FrameSettings)

    @property
    def serves_tls(self) -> bool:
        """Whether the screen and till API are served over HTTPS."""
        return self.http_tls if self.http_tls is not None else not is_loopback(self.http_host)

    @field_validator("detector_backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        if name not in detector_backends():
            raise ValueError(
                f"unknown detector backend {name!r}; choose from {sorted(detector_backends())}"
            )
        return name

    @model_validator(mode="after")
    def _certificate_with_its_key(self) -> LaneSettings:
        if (self.http_tls_cert is None) != (self.http_tls_key is None):
            raise ValueError("http_tls_cert and http_tls_key go together: set both or neither")
        return self

    @model_validator(mode="after")
    def _frames_only_masked_and_blurred(self) -> LaneSettings:
        if self.frames.enabled and not (self.privacy.blur_faces and self.privacy.masks):
            raise ValueError(
                "frames.enabled needs privacy.blur_faces and at least one privacy.masks polygon "
                "(where customers stand): a frame shows the whole lane"
            )
        return self

    @model_validator(mode="after")
    def _store_reached_safely(self) -> LaneSettings:
        if self.server_url not in (None, "discover"):
            check_scheme(self.server_url, self.allow_plain_http)
        return self
