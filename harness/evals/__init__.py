"""Evaluations against ground truth: counting, checkouts through a real lane, learning,
recognition."""
