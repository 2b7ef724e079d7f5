"""The browser client: static files served by the node at /."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
