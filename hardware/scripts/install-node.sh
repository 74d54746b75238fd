#!/usr/bin/env bash
# Install a lane node on a Raspberry Pi 5 or Jetson Orin Nano (Debian/Ubuntu based), as root:
#   sudo RELEASE_PUB=/path/release.pub [LANE_HTTP_HOST=ADDRESS] \
#     hardware/scripts/install-node.sh [ENROLMENT_TOKEN] [SERVER_URL]
# Makes the laneguard user and folders, installs LaneGuard's lane part (onnxruntime only, never
# torch) into /opt/laneguard/venv, the udev rules and the systemd units, writes a first lane.yaml
# (with the enrolment token, so the lane enrols itself on first start) and starts the lane.
#
# Secure by default: the lane trusts bundles signed with the store's release key only
# (RELEASE_PUB, its public half, is required: a signing key made on the lane itself would let
# whoever holds the lane sign bundles), takes till events only with the till token it prints,
# shows its screen only to the kiosk (screen key in /etc/laneguard/screen-key, traded for a
# one-time ticket by the kiosk script), listens on this computer only unless LANE_HTTP_HOST names
# the address a till on the network reaches it at (then over HTTPS only, with a certificate made
# here that tills and the kiosk pin), reads only the scanners the udev rules give
# its group (not every keyboard), and trusts only the store server whose key the enrolment
# token names, over HTTPS to the certificate that key vouches for (an http:// SERVER_URL is
# refused: the token and credential would cross the store network readable).
#   hardware/scripts/install-node.sh --config-only DIR [TOKEN] [SERVER_URL]
# writes those files into DIR and changes nothing else (for checking what an install sets up).
# Run `laneguard node doctor --config /etc/laneguard/lane.yaml` to see what it found.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

random_secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# lane_on_network: LANE_HTTP_HOST names an address tills reach the lane at (not the loopback).
lane_on_network() {
  case "${LANE_HTTP_HOST:-127.0.0.1}" in
    127.*|localhost|::1) return 1 ;;
    *) return 0 ;;
  esac
}

# write_config ETC DATA_DIR TOKEN SERVER LANEGUARD_BIN: lane.yaml, keys, till token, screen key.
write_config() {
  local etc="$1" data="$2" token="$3" server="$4" laneguard="$5"
  case "$server" in
    discover|https://*) ;;
    *) echo "SERVER_URL must be https://... or discover (got $server): the store serves HTTPS" >&2
       exit 2 ;;
  esac
  install -d -m 0755 "$etc"
  install -d -m 0700 "$etc/keys"
  local trusted="$etc/release.pub"
  if [ -n "${RELEASE_PUB:-}" ]; then
    [ -f "$RELEASE_PUB" ] || { echo "RELEASE_PUB=$RELEASE_PUB: no such file" >&2; exit 2; }
    install -m 0644 "$RELEASE_PUB" "$trusted"
  elif [ ! -f "$trusted" ]; then
    echo "RELEASE_PUB is required: the public half of the key this store signs its model" >&2
    echo "bundles with (the store server's keys/release.pub), e.g." >&2
    echo "  sudo RELEASE_PUB=/path/release.pub $0 TOKEN" >&2
    exit 2
  fi
  umask 0077
  [ -f "$etc/screen-key" ] || random_secret > "$etc/screen-key"
  [ -f "$etc/till-token" ] || random_secret > "$etc/till-token"
  if [ ! -f "$etc/lane.yaml" ]; then
    if lane_on_network; then  # the screen and till API leave this computer: HTTPS only
      local address="$LANE_HTTP_HOST" san="DNS:$LANE_HTTP_HOST"
      [[ "$LANE_HTTP_HOST" =~ ^[0-9.]+$ ]] && san="IP:$LANE_HTTP_HOST"
      [[ "$LANE_HTTP_HOST" == *:* ]] && san="IP:$LANE_HTTP_HOST" address="[$LANE_HTTP_HOST]"
      local base="https://$address:8100"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=LaneGuard lane $(hostname -s)" -addext "subjectAltName=$san,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -keyout "$etc/lane-tls.key" -out "$etc/lane-tls.crt"
      chmod 0600 "$etc/lane-tls.key" && chmod 0644 "$etc/lane-tls.crt"
      {
        echo "LANEGUARD_SCREEN_BASE=$base"
        echo "LANEGUARD_SCREEN_CERT=$etc/lane-tls.crt"
      } > "$etc/kiosk.env"
      echo "tills: $base, trusting $etc/lane-tls.crt alone (pin it)"
    fi
    {
      echo "lane_id: $(hostname -s)"
      echo "camera: /dev/video0"
      echo "server_url: $server"
      [ -n "$token" ] && echo "enrolment_token: $token"
      echo "data_dir: $data"
      echo "bundle_keys: [$trusted]"
      echo "http_host: ${LANE_HTTP_HOST:-127.0.0.1}   # a till on the network: this lane's address on it"
      echo "pos_tokens: [\"$(cat "$etc/till-token")\"]"
      echo "screen_key: \"$(cat "$etc/screen-key")\""
      if lane_on_network; then
        echo "http_tls_cert: $etc/lane-tls.crt   # tills and the kiosk pin this certificate"
        echo "http_tls_key: $etc/lane-tls.key"
        echo "screen_origins: [\"$base\"]"
      fi
    } > "$etc/lane.yaml"
  fi
  umask 0022
  echo "till token (configure the till with it): $(cat "$etc/till-token")"
}

if [ "${1:-}" = "--config-only" ]; then
  out="$2"
  write_config "$out" "$out/data" "${3:-}" "${4:-discover}" "${LANEGUARD_BIN:-laneguard}"
  exit 0
fi

TOKEN="${1:-}"
SERVER="${2:-discover}"   # default: find the store server on the network at first boot

[ "$(id -u)" = 0 ] || { echo "run as root (sudo)"; exit 1; }
bash "$HERE/scripts/ensure-apt-packages.sh" libzbar0:libzbar.so.0 python3-venv:/usr/share/doc/python3-venv
id laneguard >/dev/null 2>&1 || useradd --system --home /var/lib/laneguard --groups video,dialout laneguard
install -d -m 0700 -o laneguard -g laneguard /var/lib/laneguard /var/lib/laneguard/lane
install -d /opt/laneguard
python3 -m venv /opt/laneguard/venv
/opt/laneguard/venv/bin/pip install -q --upgrade pip
/opt/laneguard/venv/bin/pip install -q -c "$REPO/constraints.txt" "$REPO[node]"
cp -r "$HERE" /opt/laneguard/hardware
install -m 0644 "$HERE/udev/99-laneguard-scanners.rules" /etc/udev/rules.d/
udevadm control --reload-rules && udevadm trigger || true
write_config /etc/laneguard /var/lib/laneguard/lane "$TOKEN" "$SERVER" /opt/laneguard/venv/bin/laneguard
chgrp laneguard /etc/laneguard/lane.yaml && chmod 0640 /etc/laneguard/lane.yaml
if [ -f /etc/laneguard/lane-tls.key ]; then  # the lane's HTTPS key: the lane's user reads it
  chgrp laneguard /etc/laneguard/lane-tls.key && chmod 0640 /etc/laneguard/lane-tls.key
fi
if id kiosk >/dev/null 2>&1; then  # the kiosk user opens the screen with its key
  chgrp kiosk /etc/laneguard/screen-key && chmod 0640 /etc/laneguard/screen-key
fi
install -m 0644 "$HERE/systemd/laneguard-node.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now laneguard-node.service
/opt/laneguard/venv/bin/laneguard node doctor --config /etc/laneguard/lane.yaml || true
