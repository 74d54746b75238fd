#!/usr/bin/env bash
# Install a lane node on a Raspberry Pi 5 or Jetson Orin Nano (Debian/Ubuntu based), as root:
#   sudo hardware/scripts/install-node.sh [ENROLMENT_TOKEN] [SERVER_URL]
# Makes the laneguard user and folders, installs LaneGuard's lane part (onnxruntime only, never
# torch) into /opt/laneguard/venv, the udev rules and the systemd units, writes a first lane.yaml
# (with the enrolment token, so the lane enrols itself on first start) and starts the lane.
# Run `laneguard node doctor --config /etc/laneguard/lane.yaml` to see what it found.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
TOKEN="${1:-}"
SERVER="${2:-discover}"   # default: find the store server on the network at first boot

[ "$(id -u)" = 0 ] || { echo "run as root (sudo)"; exit 1; }
bash "$HERE/scripts/ensure-apt-packages.sh" libzbar0:libzbar.so.0 python3-venv:/usr/share/doc/python3-venv
id laneguard >/dev/null 2>&1 || useradd --system --home /var/lib/laneguard --groups video,dialout,input laneguard
install -d -o laneguard -g laneguard /var/lib/laneguard /var/lib/laneguard/lane
install -d /etc/laneguard /opt/laneguard
python3 -m venv /opt/laneguard/venv
/opt/laneguard/venv/bin/pip install -q --upgrade pip
/opt/laneguard/venv/bin/pip install -q -c "$REPO/constraints.txt" "$REPO[node]"
cp -r "$HERE" /opt/laneguard/hardware
install -m 0644 "$HERE/udev/99-laneguard-scanners.rules" /etc/udev/rules.d/
udevadm control --reload-rules && udevadm trigger || true
if [ ! -f /etc/laneguard/lane.yaml ]; then
  {
    echo "lane_id: $(hostname -s)"
    echo "camera: /dev/video0"
    echo "server_url: $SERVER"
    [ -n "$TOKEN" ] && echo "enrolment_token: $TOKEN"
    echo "data_dir: /var/lib/laneguard/lane"
    echo "http_host: 0.0.0.0"
  } > /etc/laneguard/lane.yaml
  chmod 0640 /etc/laneguard/lane.yaml && chgrp laneguard /etc/laneguard/lane.yaml
fi
install -m 0644 "$HERE/systemd/laneguard-node.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now laneguard-node.service
/opt/laneguard/venv/bin/laneguard node doctor --config /etc/laneguard/lane.yaml || true
