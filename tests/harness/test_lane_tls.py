"""The lane's screen and till API when they leave the lane computer (issue #32): HTTPS with the
lane's own certificate, which tills and the kiosk pin. The real `laneguard node run`, the real
kiosk script with the real headless Chromium, and the installer's files; every connection
goes to 127.0.0.1 (the lane told to serve HTTPS there, as it does on a till network)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509

from checkout_node.settings import LaneSettings
from laneguard.settings import load_settings
from laneguard.signing import new_keypair
from laneguard.tls import pinned_context
from tests.helpers.kiosk import run_kiosk
from tests.helpers.live_server import free_port
from tests.helpers.paths import REPO_ROOT

SCREEN_KEY = "kiosk-screen-key-for-these-tests-0123"
TILL = "till-token-for-these-tests-0123456789"


@dataclass
class TlsLane:
    url: str
    certificate: Path


@pytest.fixture
def lane(tmp_path: Path) -> Iterator[TlsLane]:
    """`laneguard node run` serving HTTPS on 127.0.0.1 with its own certificate."""
    port = free_port()
    config = tmp_path / "lane.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "lane_id": "lane-t",
                "camera": "/dev/null",
                "data_dir": str(tmp_path / "lane"),
                "http_host": "127.0.0.1",
                "http_port": port,
                "http_tls": True,
                "screen_key": SCREEN_KEY,
                "pos_tokens": [TILL],
            }
        )
    )
    log = (tmp_path / "lane.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "laneguard.cli", "node", "run", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    certificate = tmp_path / "lane" / "http-tls.crt"
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (tmp_path / "lane.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the lane did not come up over HTTPS"
            if certificate.exists():
                try:
                    pinned = pinned_context(certificate.read_text())
                    if httpx.get(f"{url}/healthz", verify=pinned, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        yield TlsLane(url, certificate)
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_a_till_reaches_the_lane_over_https_only(lane: TlsLane, tmp_path: Path) -> None:
    assert (tmp_path / "lane" / "http-tls.key").stat().st_mode & 0o077 == 0
    event = {"type": "scan", "event_id": "e-1", "code": "4011", "t": 1.0}
    till_token = {"Authorization": f"Bearer {TILL}"}
    pinned = pinned_context(lane.certificate.read_text())
    with httpx.Client(base_url=lane.url, verify=pinned) as till:
        reply = till.post(
            "/api/pos/events", json=event, headers={"Authorization": f"Bearer {TILL}"}
        )
        assert reply.status_code in (200, 202), reply.text
    with pytest.raises(httpx.HTTPError):  # nobody speaks to it in the clear
        httpx.post(
            lane.url.replace("https://", "http://") + "/api/pos/events",
            json=event,
            headers=till_token,
            timeout=3,
        )


def test_the_kiosk_pins_the_lanes_certificate(lane: TlsLane, tmp_path: Path) -> None:
    opened = run_kiosk(tmp_path, lane.url, SCREEN_KEY, lane.certificate)
    assert opened.process.returncode == 0, opened.process.stderr
    argv = opened.argv
    assert "--ignore-certificate-errors-spki-list=" in argv and SCREEN_KEY not in argv
    assert 'id="seen"' in opened.page, "the kiosk's browser got the signed-in screen"


def test_the_installer_serves_a_lane_on_the_till_network_over_https(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    env = {
        **os.environ,
        "LANEGUARD_BIN": str(Path(sys.executable).with_name("laneguard")),
        "RELEASE_PUB": str(new_keypair(tmp_path / "keys", "release")[1]),
        "LANE_HTTP_HOST": "192.0.2.10",
    }
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "hardware/scripts/install-node.sh"), "--config-only", str(etc),
         "token", "discover"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tills: https://192.0.2.10:8100" in done.stdout
    settings = load_settings(LaneSettings, etc / "lane.yaml")
    assert settings.serves_tls and settings.http_tls_cert == etc / "lane-tls.crt"
    assert settings.screen_origins == ["https://192.0.2.10:8100"]
    made = x509.load_pem_x509_certificate((etc / "lane-tls.crt").read_bytes())
    names = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "192.0.2.10" in [str(a) for a in names.get_values_for_type(x509.IPAddress)]
    assert (etc / "lane-tls.key").stat().st_mode & 0o077 == 0
    kiosk = (etc / "kiosk.env").read_text()
    assert "LANEGUARD_SCREEN_BASE=https://192.0.2.10:8100" in kiosk
    assert f"LANEGUARD_SCREEN_CERT={etc / 'lane-tls.crt'}" in kiosk
    unit = (REPO_ROOT / "hardware/kiosk/laneguard-screen.service").read_text()
    assert "EnvironmentFile=-/etc/laneguard/kiosk.env" in unit
