"""TLS between a lane and its store (issue #32): the store serves HTTPS with its own
certificate, bound to the store's key; the lane pins it before its token or credential leaves
it. Each attack is played against real servers: a logging proxy on the wire, a machine in the
middle with its own certificate (with its own binding, and with the real store's replayed), a
plain-HTTP store, and a store whose certificate changed."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI, Request
from pydantic import ValidationError

from checkout_node.outbox import Outbox
from checkout_node.settings import LaneSettings
from checkout_node.store_link import PINNED_CERTIFICATE, PlainHttpRefused, StoreLink
from checkout_node.uploader import Enrolment, Uploader
from laneguard.discovery import enrolment_key_id
from laneguard.serving import free_port, serve_in_thread
from laneguard.signing import load_private_key, new_keypair
from laneguard.tls import binding_for, make_self_signed, pinned_context
from store_server.learning import store_key_id
from store_server.served import serve_store
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrolment_token
from tests.helpers.messages import heartbeat

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class LoggingProxy:
    """A TCP relay that keeps every byte it passes, both ways: what anyone on the store
    network between lane and store would see."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.seen = bytearray()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = int(self.listener.getsockname()[1])
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    self.seen.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[StoreSettings, str]]:
    settings = StoreSettings(
        database_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
        data_dir=tmp_path / "store",
        discovery_port=0,
    )
    with serve_store(settings) as url:
        yield settings, url


def _lane(tmp_path: Path, settings: StoreSettings, url: str, name: str = "lane-1") -> Uploader:
    """A lane's uploader as the lane service builds it: its enrolment token names the store's
    key, and it reaches the store through the pinned link, with one heartbeat to deliver."""
    token = enrolment_token(settings.database_url, name, store_key_id(settings))
    lane_dir = tmp_path / name
    link = StoreLink(url, lane_dir, lambda: enrolment_key_id(token))
    box = Outbox(lane_dir / "outbox.sqlite3")
    message = heartbeat(name, NOW, 25.0)
    box.put("heartbeat", message.message_id, message.model_dump_json().encode())
    return Uploader(
        box,
        url,
        enrolment=Enrolment(token, lane_dir, name),
        lane_id=name,
        transport=link.transport(),
        timeout_s=5.0,
    )


def test_a_proxy_between_lane_and_store_sees_nothing_usable(
    store: tuple[StoreSettings, str], tmp_path: Path
) -> None:
    settings, url = store
    assert url.startswith("https://")
    proxy = LoggingProxy(int(url.rsplit(":", 1)[1]))
    try:
        uploader = _lane(tmp_path, settings, f"https://127.0.0.1:{proxy.port}")
        token = uploader.enrolment.token if uploader.enrolment else ""
        report = uploader.deliver_once()
        assert report.delivered == 1 and not report.failed, report
        assert uploader.token is not None
        seen = bytes(proxy.seen)
    finally:
        proxy.close()
    assert len(seen) > 1000, "the traffic went through the proxy"
    secret = token.split(".")[0]
    for readable in (secret, uploader.token, "heartbeat", "lane-1", "Bearer", "/api/v1/"):
        assert readable.encode() not in seen, f"{readable!r} crossed the wire readable"
    pinned = (tmp_path / "lane-1" / PINNED_CERTIFICATE).read_text()
    assert pinned == (settings.data_dir / "keys" / "tls.crt").read_text()
    assert (tmp_path / "lane-1" / PINNED_CERTIFICATE).stat().st_mode & 0o077 == 0
    assert (settings.data_dir / "keys" / "tls.key").stat().st_mode & 0o077 == 0


@contextmanager
def _impostor(
    tls: tuple[Path, Path], answer: dict[str, object], asked: list[str], port: int | None = None
) -> Iterator[str]:
    """A TLS server with its own certificate (``tls``), answering the binding request with
    ``answer`` and recording every path anyone asks it for."""
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
        asked.append(request.url.path)
        return await call_next(request)

    app.get("/api/v1/tls-binding")(lambda: answer)
    app.post("/api/v1/enrol")(lambda: {"lane_id": "lane-1", "credential": "x", "config": {}})
    with serve_in_thread(app, port=port, tls=tls) as url:
        yield url


@pytest.mark.parametrize("impostor_signs", ["with its own key", "replaying the store's"])
def test_a_machine_in_the_middle_never_gets_the_token(
    store: tuple[StoreSettings, str], tmp_path: Path, impostor_signs: str
) -> None:
    settings, url = store
    tls = (tmp_path / "evil.crt", tmp_path / "evil.key")
    make_self_signed(*tls, ["127.0.0.1"])
    if impostor_signs == "with its own key":
        evil = load_private_key(new_keypair(tmp_path / "evil-keys")[0])
        answer = binding_for(evil, tls[0].read_text())
    else:
        answer = httpx.get(f"{url}/api/v1/tls-binding", verify=False).json()
    asked: list[str] = []
    with _impostor(tls, answer, asked) as evil_url:
        uploader = _lane(tmp_path, settings, evil_url)
        report = uploader.deliver_once()
    assert report.failed == 1 and report.delivered == 0
    assert "certificate" in (report.error or ""), report.error
    assert asked == ["/api/v1/tls-binding"], "only the public binding was asked for"
    assert not (tmp_path / "lane-1" / PINNED_CERTIFICATE).exists()
    assert not (tmp_path / "lane-1" / "credential.json").exists()


def test_the_lane_refuses_a_plain_http_store_unless_its_settings_allow_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValidationError, match="allow_plain_http"):
        LaneSettings(server_url="http://192.0.2.10:8000", data_dir=tmp_path)
    with pytest.raises(ValidationError, match="neither https"):
        LaneSettings(server_url="ftp://192.0.2.10", data_dir=tmp_path)
    lab = LaneSettings(server_url="http://127.0.0.1:8000", allow_plain_http=True)
    assert lab.allow_plain_http
    with pytest.raises(PlainHttpRefused):
        StoreLink("http://127.0.0.1:8000", tmp_path, lambda: None)
    assert LaneSettings(server_url="https://192.0.2.10:8000").server_url


def test_a_plain_http_store_answers_no_binding(tmp_path: Path) -> None:
    settings = StoreSettings(
        database_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
        data_dir=tmp_path / "store",
        discovery_port=0,
        tls=False,
    )
    with serve_store(settings) as url:
        assert url.startswith("http://")
        assert httpx.get(f"{url}/api/v1/tls-binding").status_code == 404
    assert not (tmp_path / "store" / "keys" / "tls.crt").exists()


def test_a_store_certificate_that_changed_is_checked_and_pinned_again(tmp_path: Path) -> None:
    """IT renews the store's certificate: the lane's pinned connection fails verification,
    it checks the new certificate through the store's key and delivers; the replaced
    certificate (its key stolen, its old binding replayed) and a certificate nobody vouched for
    on the same address are refused and the pin kept."""
    port = free_port()
    settings = StoreSettings(
        database_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
        data_dir=tmp_path / "store",
        discovery_port=0,
        port=port,
    )
    with serve_store(settings, port=port) as url:
        uploader = _lane(tmp_path, settings, url)
        assert uploader.deliver_once().delivered == 1
    pin = tmp_path / "lane-1" / PINNED_CERTIFICATE
    first = pin.read_text()
    replaced = (tmp_path / "replaced.crt", tmp_path / "replaced.key")
    for name, keep in zip(("tls.crt", "tls.key"), replaced, strict=True):
        (settings.data_dir / "keys" / name).rename(keep)
    time.sleep(1.1)  # certificates date themselves to the second
    with serve_store(settings, port=port):  # a new certificate, the same store key
        message = heartbeat("lane-1", NOW.replace(minute=1), 25.0)
        uploader.outbox.put("heartbeat", message.message_id, message.model_dump_json().encode())
        report = uploader.deliver_once()
        assert report.delivered == 1, report
    second = pin.read_text()
    assert second != first and second == (settings.data_dir / "keys" / "tls.crt").read_text()
    # Whoever kept the replaced certificate's key, with the binding the store once signed
    # for it, cannot take the lane back to it.
    replayed: list[str] = []
    binding = binding_for(load_private_key(settings.data_dir / "keys" / "store.key"), first)
    with _impostor(replaced, binding, replayed, port=port):
        message = heartbeat("lane-1", NOW.replace(minute=3), 25.0)
        uploader.outbox.put("heartbeat", message.message_id, message.model_dump_json().encode())
        report = uploader.deliver_once()
    assert report.failed == 1 and "not newer" in (report.error or ""), report
    assert replayed == ["/api/v1/tls-binding"] and pin.read_text() == second
    asked: list[str] = []
    evil = load_private_key(new_keypair(tmp_path / "evil-keys")[0])
    tls = (tmp_path / "other.crt", tmp_path / "other.key")
    make_self_signed(*tls, ["127.0.0.1"])
    with _impostor(tls, binding_for(evil, tls[0].read_text()), asked, port=port):
        message = heartbeat("lane-1", NOW.replace(minute=2), 25.0)
        uploader.outbox.put("heartbeat", message.message_id, message.model_dump_json().encode())
        report = uploader.deliver_once()
    assert report.failed == 1 and asked == ["/api/v1/tls-binding"]
    assert pin.read_text() == second, "the pin stays the store's"
    uploader.outbox.close()


@pytest.mark.timeout(120)
def test_laneguard_server_run_serves_https_with_a_certificate_its_key_vouches_for(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "store.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path / 'store.sqlite3'}",
                "data_dir": str(tmp_path / "store"),
                "port": port,
                "discovery_port": 0,
                "teacher": False,
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "laneguard.cli", "server", "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        certificate = tmp_path / "store" / "keys" / "tls.crt"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            if certificate.exists():
                try:
                    pinned = pinned_context(certificate.read_text())
                    reply = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=pinned)
                    if reply.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        else:
            raise AssertionError("the store server did not come up over HTTPS")
        served = StoreSettings(data_dir=tmp_path / "store")
        link = StoreLink(
            f"https://127.0.0.1:{port}", tmp_path / "lane", lambda: store_key_id(served)
        )
        assert link.context() is not None
        assert (tmp_path / "lane" / PINNED_CERTIFICATE).read_text() == certificate.read_text()
        with pytest.raises(httpx.HTTPError):  # nobody speaks plain HTTP to it
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"console at https://127.0.0.1:{port}/" in output
