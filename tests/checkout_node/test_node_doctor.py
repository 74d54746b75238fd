"""`laneguard node doctor` on a board laid out in a folder (device tree, meminfo, /dev)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from checkout_node.doctor import examine, suggested_profile
from checkout_node.settings import LaneSettings, ScannerSettings
from laneguard.cli import main


def test_a_raspberry_pi_with_its_camera_and_a_missing_scanner(tmp_path: Path) -> None:
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    (tmp_path / "proc/meminfo").write_text("MemTotal:        8245036 kB\nMemFree: 1 kB\n")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/video0").touch()
    (tmp_path / "dev/ttyACM0").touch()
    settings = LaneSettings(
        camera="0",
        scanners=[
            ScannerSettings(type="serial", device="/dev/ttyACM0"),
            ScannerSettings(type="hid", device="/dev/input/event7"),
        ],
        server_url="https://store:8000",
        data_dir=tmp_path / "lane",
    )
    found = {f.topic: f for f in examine(settings, root=tmp_path)}
    assert "Raspberry Pi 5" in found["board"].detail and "8051 MB" in found["board"].detail
    assert found["bundle"].status == "ok" and "raspberry-pi-5" in found["bundle"].detail
    assert found["camera"].status == "ok" and "/dev/video0 present" in found["camera"].detail
    assert found["scanner (serial)"].status == "ok"
    assert found["scanner (hid)"].status == "fail"
    assert found["store server"].status == "fail"  # no credential and no enrolment token
    assert "certificate pinned at first contact" in found["store server"].detail
    assert found["signatures"].status == "warn"
    assert (
        found["alert clips"].status == "ok"
        and "faces blurred (dlib)" in found["alert clips"].detail
    )


def test_profiles_follow_the_board() -> None:
    assert suggested_profile("NVIDIA Jetson Orin Nano Developer Kit", []) == "jetson-orin-nano"
    assert suggested_profile(None, ["TensorrtExecutionProvider", "CPUExecutionProvider"]) == (
        "jetson-orin-nano"
    )


def test_doctor_command_exits_1_on_a_failure(tmp_path: Path) -> None:
    config = tmp_path / "lane.yaml"
    config.write_text("camera: /dev/video9\n")
    result = CliRunner().invoke(main, ["node", "doctor", "--config", str(config), "--json"])
    assert result.exit_code == 1
    assert '"topic": "camera"' in result.output and "/dev/video9 not found" in result.output
