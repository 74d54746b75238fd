"""Where the tests find the repository's own files (hardware/, the artifacts folder)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
