"""The lane's vision stages, in the order a frame flows through them:
detector -> tracker -> counter (zones) -> recogniser."""
