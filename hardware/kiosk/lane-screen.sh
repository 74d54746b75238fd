#!/usr/bin/env bash
# Open the lane screen full screen, without browser chrome, once the node answers. The page
# reconnects by itself, so the browser never needs reloading.
set -euo pipefail
URL="${LANEGUARD_SCREEN_URL:-http://127.0.0.1:8100/}"
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "$URL" && break
  sleep 1
done
exec chromium --kiosk --noerrdialogs --disable-infobars --disable-session-crashed-bubble \
  --incognito --overscroll-history-navigation=0 --check-for-update-interval=31536000 "$URL"
