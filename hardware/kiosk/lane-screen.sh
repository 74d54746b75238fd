#!/usr/bin/env bash
# Open the lane screen full screen, without browser chrome, once the node answers. The screen
# is signed in with the lane's screen key (made by install-node.sh; readable by the kiosk user),
# and the page reconnects by itself, so the browser never needs reloading.
set -euo pipefail
BASE="${LANEGUARD_SCREEN_BASE:-http://127.0.0.1:8100}"
KEY_FILE="${LANEGUARD_SCREEN_KEY_FILE:-/etc/laneguard/screen-key}"
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "$BASE/healthz" && break
  sleep 1
done
URL="$BASE/screen/session?key=$(cat "$KEY_FILE")"
exec chromium --kiosk --noerrdialogs --disable-infobars --disable-session-crashed-bubble \
  --incognito --overscroll-history-navigation=0 --check-for-update-interval=31536000 "$URL"
