"""The live feed: a simulated lane camera and till, in real time.

- Frames are served as MJPEG at ``/stream.mjpg`` (what IP cameras serve; OpenCV opens it like a
  camera) and the newest frame at ``/frame.jpg``. Slow readers get the newest frame, never a
  backlog.
- Scan and POS events are POSTed, at the moment they happen, to the lane node's scanner input
  (``{node_url}/api/pos/events``, one wire-schema message per request). Without a node URL they
  are only counted (and visible at ``/status``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import httpx

from laneguard.wire import PosMessage, ScanMessage
from simulator.recording import lane_inputs
from simulator.scenario import Scenario, build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World

log = logging.getLogger("laneguard.sim.feed")
BOUNDARY = "laneguardframe"


@dataclass
class FeedState:
    """Shared between the render loop and the HTTP handlers."""

    condition: threading.Condition = field(default_factory=threading.Condition)
    jpeg: bytes = b""
    frame_index: int = -1
    scenario: str = ""
    events_sent: int = 0
    events_failed: int = 0
    frames_rendered: int = 0
    finished: bool = False

    def status(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "frame_index": self.frame_index,
            "frames_rendered": self.frames_rendered,
            "events_sent": self.events_sent,
            "events_failed": self.events_failed,
            "finished": self.finished,
        }


class EventSender:
    """POSTs lane inputs to a node, retrying briefly; failures are counted, never fatal."""

    def __init__(self, node_url: str | None, state: FeedState) -> None:
        self.url = f"{node_url.rstrip('/')}/api/pos/events" if node_url else None
        self.state = state
        self.client = httpx.Client(timeout=httpx.Timeout(2.0)) if self.url else None

    def send(self, message: ScanMessage | PosMessage) -> None:
        if self.client is None or self.url is None:
            self.state.events_sent += 1
            return
        for attempt in range(3):
            try:
                response = self.client.post(
                    self.url,
                    content=message.model_dump_json(),
                    headers={"content-type": "application/json"},
                )
                if response.status_code < 300:
                    self.state.events_sent += 1
                    return
                log.warning(
                    "node refused %s: %s %s",
                    message.event_id,
                    response.status_code,
                    response.text[:200],
                )
                break
            except httpx.HTTPError as exc:
                log.warning("sending %s failed (%s), attempt %d", message.event_id, exc, attempt)
                time.sleep(0.2 * (attempt + 1))
        self.state.events_failed += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def scenario_sequence(
    kind: str, seed: int, world: World, fps: float, loop: bool
) -> Iterator[Scenario]:
    """The scenarios the feed plays: ``seed``, then seed+1, ... when looping."""
    current = seed
    while True:
        yield build_scenario(kind, current, world, fps=fps)
        if not loop:
            return
        current += 1


def run_feed(
    state: FeedState,
    scenarios: Iterator[Scenario],
    world: World,
    sender: EventSender,
    stop: threading.Event,
    jpeg_quality: int = 85,
) -> None:
    """Play scenarios in real time until they run out or ``stop`` is set."""
    try:
        for scenario in scenarios:
            state.scenario = f"{scenario.kind}:{scenario.seed}"
            renderer = SceneRenderer(scenario, world)
            pending = lane_inputs(scenario)
            start = time.monotonic()
            for index in range(scenario.n_frames):
                if stop.is_set():
                    return
                due = start + index / scenario.fps
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                elif now - due > 2 / scenario.fps:
                    continue  # running late: skip the frame rather than fall behind
                frame, _ = renderer.render(index)
                ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                with state.condition:
                    state.jpeg = data.tobytes() if ok else state.jpeg
                    state.frame_index += 1
                    state.frames_rendered += 1
                    state.condition.notify_all()
                elapsed = time.monotonic() - start
                while pending and pending[0].t <= elapsed:
                    sender.send(pending.pop(0))
            for message in pending:
                sender.send(message)
    finally:
        with state.condition:
            state.finished = True
            state.condition.notify_all()


def make_handler(state: FeedState) -> type[BaseHTTPRequestHandler]:
    class FeedHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def do_GET(self) -> None:
            if self.path.startswith("/stream.mjpg"):
                self._stream()
            elif self.path.startswith("/frame.jpg"):
                self._frame()
            elif self.path.startswith("/status"):
                body = json.dumps(state.status()).encode()
                self._reply(200, "application/json", body)
            else:
                self._reply(404, "text/plain", b"not found: use /stream.mjpg, /frame.jpg, /status")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _frame(self) -> None:
            with state.condition:
                state.condition.wait_for(lambda: bool(state.jpeg) or state.finished, timeout=5)
                jpeg = state.jpeg
            if not jpeg:
                self._reply(503, "text/plain", b"no frame yet")
                return
            self._reply(200, "image/jpeg", jpeg)

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            last = -1

            def fresh_frame_or_end() -> bool:
                return state.frame_index != last or state.finished

            try:
                while True:
                    with state.condition:
                        state.condition.wait_for(fresh_frame_or_end, timeout=5)
                        if state.frame_index == last and state.finished:
                            return
                        jpeg, last = state.jpeg, state.frame_index
                    if not jpeg:
                        continue
                    self.wfile.write(
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                    )
                    self.wfile.write(jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return

    return FeedHandler


class LiveFeed:
    """The feed's server and render loop, started and stopped together."""

    def __init__(
        self,
        world: World,
        kind: str,
        seed: int,
        host: str = "127.0.0.1",
        port: int = 8081,
        fps: float = 30.0,
        node_url: str | None = None,
        loop: bool = False,
    ) -> None:
        self.state = FeedState()
        self.stop_event = threading.Event()
        self.sender = EventSender(node_url, self.state)
        self.server = ThreadingHTTPServer((host, port), make_handler(self.state))
        self.server.daemon_threads = True
        scenarios = scenario_sequence(kind, seed, world, fps, loop)
        self._render = threading.Thread(
            target=run_feed,
            args=(self.state, scenarios, world, self.sender, self.stop_event),
            daemon=True,
            name="sim-feed-render",
        )
        self._serve = threading.Thread(
            target=self.server.serve_forever, daemon=True, name="sim-feed-http"
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LiveFeed:
        self._serve.start()
        self._render.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the scenarios are played; True if finished."""
        self._render.join(timeout)
        return not self._render.is_alive()

    def close(self) -> None:
        self.stop_event.set()
        self._render.join(timeout=5)
        self.server.shutdown()
        self.server.server_close()
        self.sender.close()
