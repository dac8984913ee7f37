"""The VWW folder recipe on a synthetic COCO annotation file."""

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def test_vww_rule_and_layout(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (100, 100)).save(images / f"{i}.jpg")
    coco = {"categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
            "images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(4)],
            "annotations": [
                {"image_id": 0, "category_id": 1, "bbox": [0, 0, 10, 10]},   # 1 % of the image: person
                {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},     # 0.25 %: too small
                {"image_id": 2, "category_id": 2, "bbox": [0, 0, 50, 50]},   # a dog
            ]}
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(coco))
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "vww_folders.py"), "--annotations", str(ann),
                        "--images", str(images), "-o", str(tmp_path / "vww")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "vww" / "person").iterdir()) == ["0.jpg"]
    assert sorted(p.name for p in (tmp_path / "vww" / "no_person").iterdir()) == ["1.jpg", "2.jpg", "3.jpg"]
