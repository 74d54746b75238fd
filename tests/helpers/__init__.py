"""Helpers the tests share: live servers and wire messages to send (fixtures are in
tests/conftest.py)."""
