"""The lane web server's routers, one per resource: ``pos`` (the till's API), ``alerts``
(the screen's API), ``screen`` (the kiosk's page, sign-in and live feed) and ``monitoring``."""
