"""Benchmarks of the speed, size and resilience targets; each returns a JSON-able dict."""
