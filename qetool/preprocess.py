"""Input (docs/arithmetic.md, input): image -> pixels -> input codes.

RGB, HWC, uint8; the shorter side resized to `resolution` (bilinear), then a centre crop. The
network sees pixel / 255; the codes are pixel >> (8 - bits), a fixed quantizer with step
2^(8 - bits) / 255; padding is code 0. The host packs the codes in the activation packing
(qetool.compiler.pack) and the input slot holds exactly that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qetool.errors import QetoolError


def image_step(bits: int) -> float:
    """The image quantizer's step: 2^(8 - bits) / 255."""
    return (1 << (8 - bits)) / 255.0


def image_codes(pixels: np.ndarray, bits: int) -> np.ndarray:
    """uint8 pixels (H, W, C) -> codes pixel >> (8 - bits), as int32."""
    return (np.asarray(pixels, dtype=np.uint8) >> (8 - bits)).astype(np.int32)


def int8_image_codes(pixels: np.ndarray, channels: int) -> np.ndarray:
    """uint8 RGB pixels (H, W, 3) -> an int8 image model's input as TFLM's examples feed camera
    pixels: pixel - 128, in gray (ITU-R 601 luma, as Pillow's "L") when the model takes one
    channel; int32 (H, W, channels)."""
    from PIL import Image

    px = np.asarray(pixels, dtype=np.uint8)
    if channels == 1:
        px = np.asarray(Image.fromarray(px, "RGB").convert("L"), dtype=np.uint8)[:, :, None]
    elif channels != 3:
        raise QetoolError(f"a picture has 1 or 3 channels, the model's input {channels}: give --input FILE.npy")
    return px.astype(np.int32) - 128


def resize_crop(img, resolution: int | tuple[int, int]) -> np.ndarray:
    """A Pillow image -> uint8 RGB HWC at `resolution` (a side, or height and width): resized
    (bilinear) so that it covers the target, then a centre crop."""
    from PIL import Image

    th, tw = (resolution, resolution) if isinstance(resolution, int) else resolution
    img = img.convert("RGB")
    w, h = img.size
    scale = max(tw / w, th / h)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return np.asarray(img.crop((left, top, left + tw, top + th)), dtype=np.uint8)


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
"""Pillow's modes for 16-bit grayscale (I: as older Pillow opens 16-bit PNGs)."""


def read_image(path: str | Path):
    """An image file as an 8-bit RGB Pillow image, the one reader of train, run and eval.
    16-bit grayscale is scaled to 8 bits (v >> 8); palette, alpha, CMYK and 1-bit images are
    converted by Pillow. Unreadable, floating-point, or larger than Pillow's decompression-bomb
    limit (Image.MAX_IMAGE_PIXELS): a user error."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                if img.mode in SIXTEEN_BIT_MODES:
                    a = np.asarray(img, dtype=np.int64)
                    if a.size and (a.min() < 0 or a.max() > 0xFFFF):
                        raise QetoolError(f"{path}: {img.mode} pixels outside 0..65535")
                    return Image.fromarray((a >> 8).astype(np.uint8), "L").convert("RGB")
                if img.mode == "F":
                    raise QetoolError(f"{path}: floating-point pixels: give an 8- or 16-bit image")
                return img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise QetoolError(f"{path}: too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's errors for damaged or unknown files
        raise QetoolError(f"{path}: cannot read the image ({e})") from None


def load_pixels(path: str | Path, resolution: int | tuple[int, int]) -> np.ndarray:
    """Read an image file as uint8 RGB HWC at `resolution` (a side, or height and width; a user
    error if unreadable)."""
    return resize_crop(read_image(path), resolution)


EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def list_images(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """An image folder: class names (its sorted sub-folders, so `no_person` is class 0 and
    `person` class 1 for Visual Wake Words) and (path, class) of every image under them.
    Hidden folders and files (a name starting with `.`) are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise QetoolError(f"{root}: not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = [(p, i) for i, c in enumerate(classes) for p in sorted((root / c).rglob("*"))
             if p.suffix.lower() in EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if len(classes) < 2 or not items:
        raise QetoolError(f"{root}: needs one folder of images per class (found {len(classes)} "
                          f"folders, {len(items)} images)")
    return classes, items


def sample_pixels(resolution: int | tuple[int, int]) -> np.ndarray:
    """The built-in sample picture: a deterministic synthetic scene (sky, ground, a figure),
    uint8 RGB HWC at `resolution` (a side, or height and width), for runs where no image is
    given."""
    from PIL import Image, ImageDraw

    n = 256
    img = Image.new("RGB", (n, n))
    draw = ImageDraw.Draw(img)
    for y in range(n):
        sky = (90 + y // 4, 140 + y // 5, 220 - y // 6)
        ground = (70 + (y * 7) % 30, 120 - y // 8, 60)
        draw.line([(0, y), (n, y)], fill=sky if y < 170 else ground)
    draw.ellipse((108, 40, 148, 84), fill=(224, 172, 140))        # head
    draw.rectangle((100, 84, 156, 170), fill=(200, 40, 50))       # body
    draw.rectangle((104, 170, 124, 236), fill=(40, 50, 120))      # legs
    draw.rectangle((132, 170, 152, 236), fill=(40, 50, 120))
    draw.rectangle((30, 120, 70, 200), fill=(110, 80, 50))        # a tree
    draw.ellipse((10, 60, 90, 140), fill=(40, 120, 50))
    return resize_crop(img, resolution)
