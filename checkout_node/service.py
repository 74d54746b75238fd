"""`laneguard node run`: a whole lane in one process.

Threads: the camera loop (newest frame -> pipeline -> lane), one reader per scanner, the
uploader (outbox -> store server) and the heartbeat; the web server (POS API and lane screen)
runs in the main thread. The web server and the till integration keep working while the camera
is down or reconnecting, and the lane keeps working while the store server is away.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from checkout_node.bundle_trust import remember_release, verify_bundle
from checkout_node.catalog import LaneCatalog
from checkout_node.clips import ClipRecorder
from checkout_node.enrolment import LaneEnrolmentError, load_credential
from checkout_node.frame_keeper import FrameKeeper, FrameKeeperConfig
from checkout_node.frame_sender import FrameSender
from checkout_node.gallery_follower import GalleryFollower
from checkout_node.lane import Lane
from checkout_node.messages import StreamClock, heartbeat_message
from checkout_node.metrics import CameraState, LaneMetrics
from checkout_node.model_bundle import LaneModels, load_models
from checkout_node.outbox import Outbox
from checkout_node.privacy import PrivacyFilter
from checkout_node.reconcile.reconciler import ReconcileConfig
from checkout_node.scanners.readers import HidScanner, ImagerScanner, SerialScanner
from checkout_node.settings import LaneSettings
from checkout_node.sources import LiveSource
from checkout_node.store_link import PlainHttpRefused, StoreLink, check_scheme
from checkout_node.updater import LaneUpdater, UpdaterConfig, bundle_at_start
from checkout_node.uploader import Enrolment, Uploader
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from checkout_node.web.access import LaneAccess, origins, screen_key_from
from checkout_node.web.app import create_lane_app
from checkout_node.web.hub import ScreenHub
from laneguard.bundle import SHIPPED_BUNDLE, sha256_file
from laneguard.discovery import discover_store, enrolment_key_id
from laneguard.files import write_json_atomic
from laneguard.signing import key_id, public_key_from_pem
from laneguard.tls import ensure_certificate, server_hosts

# The lane's own certificate for its screen and till API, in its data folder (key 0600).
LANE_CERTIFICATE = ("http-tls.crt", "http-tls.key")
log = logging.getLogger("laneguard.node")
DEFAULT_FRAME = (640, 480)  # the standard zones assume this camera resolution
SERVER_FILE = "server.json"  # the store server discovery found


@dataclass
class LaneService:
    settings: LaneSettings
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        self.base_bundle = s.bundle or SHIPPED_BUNDLE
        # The updater's current bundle, if it took one and it has not crashed the lane.
        bundle, self.running_slot = bundle_at_start(self.updates_dir, self.base_bundle)
        # The shipped bundle, run by default, came with the installed software; any other (a
        # configured file, or one taken from the store) must be signed by one of the lane's keys.
        runs_default = s.bundle is None and bundle == SHIPPED_BUNDLE
        verified = (
            verify_bundle(bundle, s.bundle_keys, Path(s.data_dir), s.pinned_bundle)
            if s.bundle_keys and not runs_default
            else None
        )
        self.models = load_models(bundle, profile=s.profile)
        if verified is not None:
            remember_release(Path(s.data_dir), verified)
        self.zones = (
            LaneZones(s.zones.scan_area, s.zones.bagging_area)
            if s.zones is not None
            else LaneZones.standard(*DEFAULT_FRAME)
        )
        self.catalog = LaneCatalog.from_file(s.catalog)
        self.outbox = Outbox(Path(s.data_dir) / "outbox.sqlite3", cap_bytes=s.outbox_cap_mb << 20)
        self.hub = ScreenHub()
        clock = StreamClock.now()
        self.frame_sender = self._frame_sender(clock)
        self.lane = Lane(
            s.lane_id,
            self._pipeline(self.models),
            self.catalog,
            self.outbox,
            self.hub.publish,
            ReconcileConfig(**s.reconcile.model_dump()),
            idle_gap_s=s.idle_gap_s,
            customer_prompt_s=s.customer_prompt_s,
            clock=clock,
            clips=self._clip_recorder(),
            frames=self._frame_keeper(),
        )
        self.access = LaneAccess(
            screen_key_from(Path(s.data_dir), s.screen_key),
            tuple(s.pos_tokens),
            tuple(s.supervisor_pins),
            origins(s.screen_origins),
            tuple(s.metrics_tokens),
        )
        self.camera = LiveSource(s.camera)
        self.fps = 0.0  # over the last heartbeat interval
        camera = self.camera
        self.metrics = LaneMetrics(
            self.lane,
            self.outbox,
            CameraState(
                connected=lambda: camera.connected,
                dropped=lambda: camera.dropped,
                reconnects=lambda: camera.reconnects,
            ),
            fps=lambda: self.fps,
            frame_sender=self.frame_sender,
        )
        self.app = create_lane_app(
            self.lane,
            self.hub,
            live_clock=True,
            access=self.access,
            max_body_bytes=s.max_body_kb << 10,
            metrics=self.metrics,
        )
        self.base_sha256 = sha256_file(self.base_bundle)
        self.server_url = self._known_server_url()
        self._connect()
        self.scanners = [self._scanner(i) for i in range(len(s.scanners))]
        self._stop = threading.Event()
        self._started = time.monotonic()

    def _known_server_url(self) -> str | None:
        """The configured store server, or the one discovery found at an earlier boot."""
        if self.settings.server_url != "discover":
            return self.settings.server_url
        path = Path(self.settings.data_dir) / SERVER_FILE
        return str(json.loads(path.read_text("utf-8"))["url"]) if path.is_file() else None

    def _connect(self) -> None:
        """Everything that talks to the store server, once its URL is known."""
        self.link = self._store_link()
        self.uploader = self._uploader()
        self.gallery = self._gallery_follower()
        self.updater = self._updater()

    def discovery_loop(self) -> None:
        """First boot with ``server_url: discover``: ask the network until a store answers,
        keep its URL, then start delivering (the outbox has kept everything meanwhile)."""
        s = self.settings
        expected = s.store_key_id or enrolment_key_id(s.enrolment_token)
        if expected is None:
            log.error(
                "cannot discover the store server: neither store_key_id nor the enrolment "
                "token names the store's key, so no answer could be trusted; set server_url"
            )
            return
        while not self._stop.is_set():
            found = discover_store(expected, s.discovery_port, timeout_s=2.0)
            if found is not None and not self._acceptable(found.url):
                found = None
            if found is not None:
                log.info("found store server %r at %s", found.store_name, found.url)
                write_json_atomic(
                    Path(s.data_dir) / SERVER_FILE, {"url": found.url, "store": found.store_name}
                )
                self.server_url = found.url
                self._connect()
                self._start_store_clients()
                return
            self._stop.wait(10.0)

    def _store_link(self) -> StoreLink | None:
        """The way to the store: HTTPS to the certificate its key vouches for. A discovered
        plain-HTTP store the settings do not allow is refused here (a configured one was
        refused when the settings loaded)."""
        s = self.settings
        if not self.server_url:
            return None
        try:
            return StoreLink(
                self.server_url, Path(s.data_dir), self._store_key_id, s.allow_plain_http
            )
        except PlainHttpRefused as error:
            log.error("not connecting to the store server: %s", error)
            self.server_url = None
            return None

    def _store_transport(self) -> httpx.BaseTransport | None:
        """A transport to the store over its pinned certificate, one per client (each client
        closes its own)."""
        return self.link.transport() if self.link is not None else None

    def _acceptable(self, url: str) -> bool:
        """Whether a discovered store's URL is one this lane may use (logged when not: the
        store may yet turn TLS on, so discovery goes on asking)."""
        try:
            check_scheme(url, self.settings.allow_plain_http)
        except PlainHttpRefused as error:
            log.error("not using the store server discovery found: %s", error)
            return False
        return True

    def _store_key_id(self) -> str | None:
        """The store key this lane trusts: configured, the one kept with the credential in
        use (as the uploader takes it), or the one its enrolment token names."""
        s = self.settings
        if s.store_key_id is not None:
            return s.store_key_id
        kept = load_credential(Path(s.data_dir))
        in_use = s.server_token is None or (kept is not None and kept.credential == s.server_token)
        if kept is not None and kept.gallery_key is not None and in_use:
            return key_id(public_key_from_pem(kept.gallery_key, "the store's key"))
        return enrolment_key_id(s.enrolment_token)

    def _uploader(self) -> Uploader | None:
        """The store server's credential: configured, kept from an earlier enrolment, or
        obtained with the one-time enrolment token when the server first answers."""
        s = self.settings
        if not self.server_url:
            return None
        token = s.server_token
        kept = load_credential(s.data_dir)
        if token is None and kept is not None:
            if kept.lane_id != s.lane_id:
                raise LaneEnrolmentError(
                    f"{s.data_dir}/credential.json is lane {kept.lane_id!r}'s, but this lane is "
                    f"configured as {s.lane_id!r}"
                )
            token = kept.credential
        enrolment = (
            Enrolment(s.enrolment_token, Path(s.data_dir), s.lane_id)
            if token is None and s.enrolment_token
            else None
        )
        return Uploader(
            self.outbox,
            self.server_url,
            token,
            enrolment=enrolment,
            # The key kept with this very credential: a hand-set server_token beside another
            # enrolment's credential.json is not vouched for by that file's key.
            store_key_pem=(
                kept.gallery_key if kept is not None and kept.credential == token else None
            ),
            lane_id=s.lane_id,
            transport=self._store_transport(),
        )

    def _gallery_follower(self) -> GalleryFollower | None:
        """Learned gallery entries from the store, once the lane has enrolled (the store's
        signing key comes with enrolment)."""
        s, uploader = self.settings, self.uploader
        if uploader is None:
            return None

        def store_key() -> str | None:
            kept = load_credential(Path(s.data_dir))
            return kept.gallery_key if kept is not None else None

        return GalleryFollower(
            uploader.server_url,
            lambda: uploader.token,
            store_key,
            self.models.gallery,
            self.lane.stage_gallery,
            Path(s.data_dir),
            poll_s=s.gallery_poll_s,
            transport=self._store_transport(),
        )

    @property
    def updates_dir(self) -> Path:
        return Path(self.settings.data_dir) / "updates"

    def _updater(self) -> LaneUpdater | None:
        """The bundle this lane should run comes from its store server, once enrolled."""
        s, uploader = self.settings, self.uploader
        if uploader is None:
            return None
        return LaneUpdater(
            uploader.server_url,
            lambda: uploader.token,
            self.updates_dir,
            Path(s.data_dir),
            self.base_bundle,
            self.base_sha256,
            self.running_slot,
            self.stage_bundle,
            lambda: self.lane.health.frame_errors,
            list(s.bundle_keys),
            s.profile,
            UpdaterConfig(
                poll_s=s.update_poll_s,
                trial_s=s.update_trial_s,
                allow_unsigned=s.allow_unsigned_bundles,
            ),
            s.pinned_bundle,
            transport=self._store_transport(),
        )

    def _pipeline(self, models: LaneModels) -> LanePipeline:
        """A pipeline over ``models`` as this lane's settings run one."""
        s = self.settings
        return LanePipeline(
            models,
            self.zones,
            threads=s.inference_threads,
            detect_interval=s.detect_interval,
            detector_backend=s.detector_backend,
            verify_births=s.verify_births,
        )

    def stage_bundle(self, bundle: Path, on_live: Callable[[], None]) -> None:
        """Load ``bundle`` now; the lane swaps to it between transactions."""
        s = self.settings
        models = load_models(bundle, profile=s.profile)
        pipeline = self._pipeline(models)

        def live() -> None:
            self.models = models
            if self.gallery is not None:  # what the store learned, for the new embedder
                pipeline.recogniser.gallery = self.gallery.rebase(models.gallery)
            on_live()

        self.lane.stage_pipeline(pipeline, live)

    def _scanner(self, index: int) -> SerialScanner | HidScanner | ImagerScanner:
        spec = self.settings.scanners[index]
        on_scan, clock = self.lane.add_scan, self.lane.now_s
        if spec.type == "serial":
            return SerialScanner(
                spec.device, on_scan, clock, spec.source or "scanner", baudrate=spec.baudrate
            )
        if spec.type == "hid":
            return HidScanner(spec.device, on_scan, clock, spec.source or "scanner")
        return ImagerScanner(spec.device, on_scan, clock, spec.source or "imager")

    def camera_loop(self) -> None:
        """Newest frame first; frames are timed on the lane's clock when they arrive."""
        while not self._stop.is_set():
            frame = self.camera.read(timeout=1.0)
            if frame is None:
                self.lane.tick(self.lane.now_s())
                continue
            try:
                self.lane.process_frame(frame.image, self.lane.now_s())
            except Exception:  # a bad frame must not stop the lane
                log.exception("frame %d failed", frame.index)
                self.lane.frame_failed()

    def heartbeat_loop(self) -> None:
        last_frames, last_time = 0, time.monotonic()
        while not self._stop.wait(self.settings.heartbeat_s):
            now = time.monotonic()
            frames = self.lane.counters.frames  # the pipeline's own restart at a bundle swap
            fps = (frames - last_frames) / max(now - last_time, 1e-6)
            last_frames, last_time = frames, now
            self.fps = fps
            self.queue_heartbeat(fps)

    def queue_heartbeat(self, fps: float) -> None:
        """The lane's health (and its bundle's) into the outbox for the store server."""
        message = heartbeat_message(
            self.settings.lane_id,
            fps,
            self.camera.dropped,
            "up" if self.camera.connected else "down",
            self.lane.model_version,
            sum(self.outbox.depth().values()),
            time.monotonic() - self._started,
            self._bundle_health(),
        )
        self.outbox.put("heartbeat", message.message_id, message.model_dump_json().encode())

    @property
    def bundle_sha256(self) -> str:
        """The bundle this lane runs (the updater follows every swap)."""
        if self.updater is not None:
            return self.updater.running_sha256
        return self.running_slot.sha256 if self.running_slot else self.base_sha256

    def _bundle_health(self) -> dict[str, Any]:
        health = self.lane.health
        return {
            "bundle_sha256": self.bundle_sha256,
            "frame_errors": health.frame_errors,
            "alerts_raised": health.alerts_raised,
            "transactions": health.transactions,
            "update": self.updater.report() if self.updater is not None else None,
        }

    def start(self) -> None:
        self.camera.start()
        for target in (self.camera_loop, self.heartbeat_loop):
            thread = threading.Thread(target=target, daemon=True, name=target.__name__)
            thread.start()
            self.threads.append(thread)
        for scanner in self.scanners:
            scanner.start()
        if self.server_url is None and self.settings.server_url == "discover":
            thread = threading.Thread(target=self.discovery_loop, daemon=True, name="discovery")
            thread.start()
            self.threads.append(thread)
        self._start_store_clients()

    def _clip_recorder(self) -> ClipRecorder | None:
        c = self.settings.clips
        if not c.enabled:
            return None
        privacy = self.settings.privacy
        return ClipRecorder(
            Path(self.settings.data_dir) / "clips-work",
            PrivacyFilter(privacy.masks, privacy.blur_faces),
            fps=c.fps,
            width=c.width,
            before_s=c.before_s,
            after_s=c.after_s,
            buffer_bytes=c.buffer_mb << 20,
            history_s=c.history_s,
        )

    def _frame_sender(self, clock: StreamClock) -> FrameSender | None:
        if not self.settings.frames.enabled:
            return None
        privacy = self.settings.privacy
        return FrameSender(
            self.settings.lane_id,
            self.outbox,
            clock,
            PrivacyFilter(privacy.masks, privacy.blur_faces),
        )

    def _frame_keeper(self) -> FrameKeeper | None:
        if self.frame_sender is None:
            return None
        config = FrameKeeperConfig(**self.settings.frames.model_dump(exclude={"enabled"}))
        return FrameKeeper(
            self.frame_sender, config, Path(self.settings.data_dir) / "frames-quota.json"
        )

    def _start_store_clients(self) -> None:
        for client in (self.uploader, self.gallery, self.updater):
            if client is not None:
                client.start()

    def stop(self) -> None:
        self._stop.set()
        for scanner in self.scanners:
            scanner.stop()
        self.camera.stop()
        for thread in self.threads:
            thread.join(timeout=5)
        if self.uploader is not None:
            self.uploader.stop()
        if self.gallery is not None:
            self.gallery.stop()
        if self.updater is not None:
            self.updater.stop()
        self.lane.end_transaction(self.lane.now_s(), reason="lane stopped")
        if self.lane.clips is not None:
            self.lane.clips.close()  # the clips of the last alerts, into the outbox
        if self.frame_sender is not None:
            self.frame_sender.close()  # the last transaction's frames, into the outbox
        self.outbox.close()

    def http_tls_files(self) -> tuple[Path, Path] | None:
        """The certificate and key the screen and till API are served with (IT's, or the
        lane's own, made once: tills and the kiosk pin it); None when served in the clear."""
        s = self.settings
        if not s.serves_tls:
            return None
        if s.http_tls_cert is not None and s.http_tls_key is not None:
            return s.http_tls_cert, s.http_tls_key
        certificate, key = (Path(s.data_dir) / name for name in LANE_CERTIFICATE)
        ensure_certificate(certificate, key, server_hosts(s.http_host))
        return certificate, key

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C or SIGTERM from systemd)."""
        import uvicorn

        from laneguard.slow_clients import server_options

        tls = self.http_tls_files()
        self.start()
        log.info(
            "lane %s: screen at %s://%s:%d/, camera %s, models %s",
            self.settings.lane_id,
            "https" if tls else "http",
            self.settings.http_host,
            self.settings.http_port,
            self.settings.camera,
            self.lane.model_version,
        )
        try:
            uvicorn.run(
                self.app,
                host=self.settings.http_host,
                port=self.settings.http_port,
                log_level="warning",
                ssl_certfile=str(tls[0]) if tls else None,
                ssl_keyfile=str(tls[1]) if tls else None,
                **server_options(),
            )
        finally:
            self.stop()
