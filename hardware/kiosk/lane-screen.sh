#!/usr/bin/env bash
# Open the lane screen full screen, without browser chrome, once the node answers. The screen
# key (made by install-node.sh; readable by the kiosk user) is traded for a one-time ticket
# good for a minute, and the browser opens the screen with that ticket: the key itself never
# appears on a command line, where any local user could read it with ps. The page reconnects
# by itself, so the browser never needs reloading.
set -euo pipefail
BASE="${LANEGUARD_SCREEN_BASE:-http://127.0.0.1:8100}"
KEY_FILE="${LANEGUARD_SCREEN_KEY_FILE:-/etc/laneguard/screen-key}"
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "$BASE/healthz" && break
  sleep 1
done
# --data-urlencode key@FILE reads the key from the file (not from this command line).
TICKET="$(curl -fsS --data-urlencode "key@$KEY_FILE" "$BASE/screen/ticket")"
URL="$BASE/screen/session?ticket=$TICKET"
exec "${LANEGUARD_BROWSER:-chromium}" --kiosk --noerrdialogs --disable-infobars \
  --disable-session-crashed-bubble --incognito --overscroll-history-navigation=0 \
  --check-for-update-interval=31536000 "$URL"
