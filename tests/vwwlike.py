"""A small Visual-Wake-Words-like image set made on the fly: `person/` pictures hold a drawn
figure (head, body, legs) at a random place, size and colour; `no_person/` pictures hold the same
kinds of backgrounds and clutter without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _picture(rng: np.random.Generator, person: bool, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 6)):  # clutter: boxes and blobs
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        dx, dy = (int(v) for v in rng.integers(4, size // 2, 2))
        x1, y1 = x0 + dx, y0 + dy
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)((x0, y0, x1, y1), fill=colour)
    if person:
        h = int(rng.integers(size // 3, size * 9 // 10))
        w = h // 3
        x = int(rng.integers(0, size - w))
        y = int(rng.integers(0, size - h))
        skin = tuple(int(v) for v in rng.integers(120, 256, 3))
        cloth = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse((x + w // 4, y, x + 3 * w // 4, y + h // 5), fill=skin)
        draw.rectangle((x, y + h // 5, x + w, y + 3 * h // 5), fill=cloth)
        draw.rectangle((x + w // 8, y + 3 * h // 5, x + 3 * w // 8, y + h), fill=cloth)
        draw.rectangle((x + 5 * w // 8, y + 3 * h // 5, x + 7 * w // 8, y + h), fill=cloth)
    return img


def make(root: Path, per_class: int, size: int = 48, seed: int = 0) -> Path:
    """Write per_class PNGs into root/person and root/no_person; returns root."""
    rng = np.random.default_rng(seed)
    for name, person in (("no_person", False), ("person", True)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _picture(rng, person, size).save(root / name / f"{i:04d}.png")
    return root
