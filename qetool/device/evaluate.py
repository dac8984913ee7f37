"""`qetool eval`: accuracy of a compiled model on an image folder (one sub-folder per class),
with a confusion matrix and the latency per image: on the host (the golden integer model, for
whole sets), in the emulator or on a board (over the serial link: seconds per 160 px image, so
for a handful of images; --limit takes the first N of each class).

With torch installed and build/weights.npz present, the host run also measures the agreement
with the torch model (docs/testing.md): the logit drift in steps, and the class agreement
on the images whose golden top-2 margin exceeds that drift. Torch runs in chunks as the
evaluation goes; only logits are kept.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qetool.errors import QetoolError
from qetool.preprocess import list_images, load_pixels
from qetool.table import render
from qetool.device.builddir import BuildDir
from qetool.device.session import connect


@dataclass
class EvalReport:
    target: str
    classes: list[str]
    images: int
    accuracy: float
    confusion: list[list[int]]
    seconds_per_image: float
    count_per_image: float | None = None
    counter: str | None = None
    agreement: dict = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = [(f"true {c}", *(f"{n:,}" for n in row)) for c, row in zip(self.classes, self.confusion)]
        out = [f"{self.target}: accuracy {100 * self.accuracy:.2f} % on {self.images:,} images", "",
               render(("", *(f"pred {c}" for c in self.classes)), rows), "",
               f"latency {1e3 * self.seconds_per_image:.1f} ms per image (wall clock)"]
        if self.count_per_image is not None:
            out[-1] += f", {self.count_per_image:,.0f} {self.counter} per image"
        if self.agreement:
            a = self.agreement
            out.append(f"golden vs torch: logit drift {a['drift_steps']} step(s); class agreement "
                       f"{100 * a['agreement']:.2f} % on {a['confident']} of {a['images']} images "
                       f"whose top-2 margin exceeds the drift")
        if self.note:
            out.append(f"note: {self.note}")
        return "\n".join(out)


def _select(data_dir: Path, limit: int | None, classes_expected: int):
    """The folder's classes and images (at most `limit` per class)."""
    classes, items = list_images(data_dir)
    if limit:
        items = [it for c in range(len(classes)) for it in [x for x in items if x[1] == c][:limit]]
    if len(classes) != classes_expected:
        raise QetoolError(f"{data_dir} has {len(classes)} classes, the model {classes_expected}")
    return classes, items


class TorchReference:
    """The torch model of build/weights.npz, turning image codes into logit codes in chunks."""

    CHUNK = 64

    def __init__(self, build: BuildDir):
        import torch

        from qetool import checkpoint
        from qetool.nn.model import QENet

        self.torch = torch
        self.ck = checkpoint.load(build.path / "weights.npz", build.model.arch)
        self.net = QENet.from_checkpoint(self.ck)
        self.pending: list[np.ndarray] = []
        self.logits: list[np.ndarray] = []

    @staticmethod
    def open(build: BuildDir) -> "TorchReference | None":
        """None without torch or without build/weights.npz."""
        try:
            import torch  # noqa: F401
        except ImportError:
            return None
        return TorchReference(build) if (build.path / "weights.npz").is_file() else None

    def add(self, codes: np.ndarray) -> None:
        self.pending.append(codes)
        if len(self.pending) == self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch = self.torch.from_numpy(np.stack(self.pending).astype(np.float32)).permute(0, 3, 1, 2)
        with self.torch.no_grad():
            logits = self.net(batch) / self.ck.steps["head"]
        self.logits.append(np.floor(logits.numpy() + 0.5).astype(np.int64))
        self.pending = []

    def agreement(self, golden_logits: list[np.ndarray]) -> dict:
        """Logit drift (max |torch - golden| in steps) and the class agreement on the images
        whose golden top-2 margin exceeds it."""
        self.flush()
        t = np.concatenate(self.logits)
        g = np.stack(golden_logits).astype(np.int64)
        drift = int(np.abs(t - g).max())
        top2 = np.sort(g, axis=1)[:, -2:]
        confident = (top2[:, 1] - top2[:, 0]) > drift
        agree = (t.argmax(1) == g.argmax(1))[confident]
        return {"drift_steps": drift, "images": len(g), "confident": int(confident.sum()),
                "agreement": float(agree.mean()) if agree.size else 1.0}


def evaluate(build_dir: str, data_dir: str, host: bool, emulator: bool, port: str | None,
             baud: int, limit: int | None) -> EvalReport:
    build = BuildDir(Path(build_dir))
    prog = build.program
    classes, items = _select(Path(data_dir), limit, build.manifest["num_classes"])
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    counts: list[int] = []
    counter: str | None = None
    reference = TorchReference.open(build) if host and not build.imported else None
    golden_logits = []
    start = time.perf_counter()
    if host:
        for path, label in tqdm(items, desc="eval (host)", unit="img"):
            codes = prog.picture_codes(load_pixels(path, prog.picture_size))
            r = prog.golden(codes)
            confusion[label, r.label] += 1
            golden_logits.append(r.logits)
            if reference is not None:
                reference.add(codes)
        target = "host (golden model)"
    else:
        with connect(build, emulator, port, baud) as session:
            for path, label in tqdm(items, desc="eval", unit="img"):
                r = session.infer(load_pixels(path, prog.picture_size))
                confusion[label, r.label] += 1
                if r.count is not None:
                    counts.append(r.count)
                    counter = r.counter.name.lower()
        target = "emulator" if emulator else port
    seconds = (time.perf_counter() - start) / max(len(items), 1)
    report = EvalReport(target, classes, len(items), float(np.trace(confusion) / max(len(items), 1)),
                        confusion.tolist(), seconds, float(np.mean(counts)) if counts else None, counter)
    if reference is not None:
        report.agreement = reference.agreement(golden_logits)
    seed = build.manifest.get("random_weights_seed")
    if seed is not None:
        report.note = (f"this build has seeded random weights (seed {seed}: compiled without "
                       "--weights), so accuracy is chance and golden and torch drift apart: a "
                       "random network amplifies every rounding step by step. Compile trained "
                       "weights (--weights model.npz) for figures that mean something.")
    return report
