"""The manager's web console: server-rendered pages, usable on a tablet."""

from store_server.console import (
    alerts,
    analytics,
    audit,
    catalog,
    frames,
    gallery,
    lanes,
    rollouts,
    samples,
    session,
    transactions,
)

# Every console page module, in the order the app mounts their routers.
PAGES = (
    session,
    alerts,
    transactions,
    analytics,
    lanes,
    samples,
    frames,
    gallery,
    audit,
    catalog,
    rollouts,
)
