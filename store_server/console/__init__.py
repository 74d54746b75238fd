"""The manager's web console: server-rendered pages, usable on a tablet."""
