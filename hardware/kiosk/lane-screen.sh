#!/usr/bin/env bash
# Open the lane screen full screen, without browser chrome, once the node answers. The screen
# key (made by install-node.sh; readable by the kiosk user) is traded for a one-time ticket
# good for a minute, and the browser opens the screen with that ticket: the key itself never
# appears on a command line, where any local user could read it with ps. The page reconnects
# by itself, so the browser never needs reloading.
#
# A lane serving HTTPS (its screen and till API on the store network: LANEGUARD_SCREEN_BASE
# https://...) is trusted by its own certificate, LANEGUARD_SCREEN_CERT: curl takes it as its
# only CA and the browser accepts that certificate's key alone (pinned), no CA involved.
set -euo pipefail
BASE="${LANEGUARD_SCREEN_BASE:-http://127.0.0.1:8100}"
KEY_FILE="${LANEGUARD_SCREEN_KEY_FILE:-/etc/laneguard/screen-key}"
CERT="${LANEGUARD_SCREEN_CERT:-}"
CURL=(curl -fsS)
BROWSER_TLS=()
if [ -n "$CERT" ]; then
  CURL+=(--cacert "$CERT")
  SPKI="$(openssl x509 -in "$CERT" -pubkey -noout | openssl pkey -pubin -outform der \
    | openssl dgst -sha256 -binary | base64)"
  BROWSER_TLS=(--ignore-certificate-errors-spki-list="$SPKI"
    --user-data-dir="${LANEGUARD_KIOSK_PROFILE:-$HOME/.laneguard-kiosk}")
fi
for _ in $(seq 1 120); do
  "${CURL[@]}" -o /dev/null "$BASE/healthz" && break
  sleep 1
done
# --data-urlencode key@FILE reads the key from the file (not from this command line).
TICKET="$("${CURL[@]}" --data-urlencode "key@$KEY_FILE" "$BASE/screen/ticket")"
URL="$BASE/screen/session?ticket=$TICKET"
exec "${LANEGUARD_BROWSER:-chromium}" --kiosk --noerrdialogs --disable-infobars \
  --disable-session-crashed-bubble --incognito --overscroll-history-navigation=0 \
  --check-for-update-interval=31536000 "${BROWSER_TLS[@]}" "$URL"
