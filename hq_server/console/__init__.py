"""HQ's web console for a chain's IT and loss-prevention managers: stores, loss across
stores, releases and rollout waves, and learned products waiting to go chain-wide (sign-in is
the store console's own page)."""

from hq_server.console import gallery, loss, releases, stores

PAGES = (stores, loss, releases, gallery)
