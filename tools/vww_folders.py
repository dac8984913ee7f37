"""Build a Visual Wake Words image folder from COCO, with the standard VWW rule (Chowdhery et
al., 2019): an image is `person` when at least one person box covers more than 0.5 % of the
image, else `no_person`. Links (or copies) the images into OUT/person and OUT/no_person, the
layout `qetool train` and `qetool eval` read.

    python tools/vww_folders.py --annotations annotations/instances_train2014.json \\
        --images train2014 -o vww/train [--copy] [--threshold 0.005]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

PERSON = "person"


def classify(coco: dict, threshold: float) -> dict[str, bool]:
    """file name -> has a person box over `threshold` of the image area."""
    person_ids = {c["id"] for c in coco["categories"] if c["name"] == PERSON}
    images = {im["id"]: im for im in coco["images"]}
    out = {im["file_name"]: False for im in coco["images"]}
    for a in coco["annotations"]:
        if a["category_id"] in person_ids:
            im = images[a["image_id"]]
            w, h = a["bbox"][2], a["bbox"][3]
            if w * h > threshold * im["width"] * im["height"]:
                out[im["file_name"]] = True
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", type=Path, required=True, help="COCO instances_*.json")
    ap.add_argument("--images", type=Path, required=True, help="the folder of those images")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--threshold", type=float, default=0.005)
    ap.add_argument("--copy", action="store_true", help="copy instead of symlinking")
    args = ap.parse_args(argv)
    labels = classify(json.loads(args.annotations.read_text()), args.threshold)
    for name in ("person", "no_person"):
        (args.output / name).mkdir(parents=True, exist_ok=True)
    for file_name, person in labels.items():
        src = (args.images / file_name).resolve()
        dst = args.output / ("person" if person else "no_person") / file_name
        if not dst.exists():
            shutil.copy(src, dst) if args.copy else os.symlink(src, dst)
    n = sum(labels.values())
    print(f"{args.output}: {n} person, {len(labels) - n} no_person")


if __name__ == "__main__":
    main()
