"""Where the project's data lives: boards/, templates/, firmware/ beside the package."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "boards"
TEMPLATES = ROOT / "templates"
FIRMWARE = ROOT / "firmware"
