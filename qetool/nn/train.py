"""`qetool train`: LSQ quantization-aware training from scratch, the paper's recipe.

Data: DATA_DIR holds one folder per class (class index = sorted folder name: `no_person`,
`person` for Visual Wake Words). One image in ten (by a hash of its path) is held out. Training
pixels are augmented in numpy/Pillow (random resized crop, horizontal flip, brightness/contrast),
ending in uint8 pixels at the arch's resolution before the fixed image quantizer; held-out images
are resized and centre-cropped (docs/arithmetic.md, input). Every augmentation draw is seeded by
(seed, epoch, image), so a run is the same with any number of workers or processes.

Optimiser: SGD, Nesterov momentum 0.9, weight decay 4e-6, cosine schedule per step. LSQ steps
are initialised on a fixed calibration batch before training (the same on every process).
Each epoch writes the weights file (docs/formats.md) and `<out>.state.pt` (model, optimiser,
scheduler, epoch) atomically; `--resume` continues from the next epoch exactly.

Runs unchanged under `torchrun --nproc_per_node N` (DistributedDataParallel: gloo on CPU, nccl on
CUDA) and on a CUDA device when one is present.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm import tqdm

from qetool import arch as A
from qetool import checkpoint, fileio
from qetool.errors import QetoolError
from qetool.nn.model import QENet
from qetool.preprocess import image_codes, list_images, read_image, resize_crop

HELD_OUT = 10
"""One image in HELD_OUT is held out for validation."""
CALIBRATION_IMAGES = 64
STATE_KEYS = {"model", "optimizer", "scheduler", "epoch", "arch", "classes"}
"""What `<out>.state.pt` holds (torch tensors and plain data)."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-6
    workers: int = 2
    seed: int = 0
    resume: bool = False


def split(items: list[tuple[Path, int]], root: Path) -> tuple[list, list]:
    """(train, held out), by a stable hash of each image's path relative to DATA_DIR."""
    train, held = [], []
    for p, c in items:
        h = int(hashlib.sha1(str(p.relative_to(root)).encode()).hexdigest(), 16)
        (held if h % HELD_OUT == 0 else train).append((p, c))
    return train, held


def augment(img: Image.Image, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """Random resized crop (8 %..100 % of the area, aspect 3/4..4/3), flip, brightness and
    contrast: uint8 RGB HWC at `resolution`."""
    img = img.convert("RGB")
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            img = img.crop((x, y, x + cw, y + ch))
            break
    img = img.resize((resolution, resolution), Image.BILINEAR)
    px = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.5:
        px = px[:, ::-1]
    px = (px - px.mean()) * rng.uniform(0.8, 1.2) + px.mean() * rng.uniform(0.8, 1.2)
    return np.clip(px + 0.5, 0, 255).astype(np.uint8)


class Images(Dataset):
    """Image codes (C, H, W float) and labels; augmented when `epoch` is set."""

    def __init__(self, items: list, arch: A.Arch, seed: int, train: bool):
        self.items, self.arch, self.seed, self.train = items, arch, seed, train
        self.bits = A.tensors(arch)["image"].bits
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        """(codes, label); an unreadable image gives label -1 - i, which `check_labels` turns
        into the reader's error in the main process (a worker's exception would come back as a
        traceback)."""
        path, label = self.items[i]
        try:
            img = read_image(path)
        except QetoolError:
            res = self.arch.resolution
            return torch.zeros(self.arch.in_channels, res, res), -1 - i
        if self.train:
            px = augment(img, self.arch.resolution, np.random.default_rng([self.seed, self.epoch, i]))
        else:
            px = resize_crop(img, self.arch.resolution)
        codes = torch.from_numpy(image_codes(px, self.bits).astype(np.float32)).permute(2, 0, 1)
        return codes, label

    def check_labels(self, labels: torch.Tensor) -> None:
        """Raise the reader's error for the first unreadable image of a batch."""
        bad = labels[labels < 0]
        if len(bad):
            read_image(self.items[-1 - int(bad[0])][0])


def _dist() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _save_state(path: Path, state: dict) -> None:
    with fileio.atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path, arch: A.Arch) -> dict:
    """The training state to resume from: tensors and plain data only (torch.load with
    weights_only, so a state file cannot run code), made for exactly `arch`."""
    if not path.is_file():
        raise QetoolError(f"{path}: no training state to resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise QetoolError(f"{path}: not a readable training state (truncated or damaged?): {first}") from None
    if not isinstance(state, dict) or not STATE_KEYS <= set(state):
        raise QetoolError(f"{path}: not a qetool training state")
    try:
        stored = A.loads(state["arch"])
    except A.ArchError as e:
        raise QetoolError(f"{path}: its arch is not valid: {e}") from None
    if stored != arch:
        raise QetoolError(f"{path}: the training state is for another network: "
                          f"{A.first_difference(stored, arch)} (state against arch.json)")
    return state


@torch.no_grad()
def held_out_accuracy(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    right = total = 0
    for codes, labels in loader:
        loader.dataset.check_labels(labels)
        logits = model(codes.to(device))
        right += int((logits.argmax(1).cpu() == labels).sum())
        total += len(labels)
    return right / max(total, 1)


def train(arch_path: Path, data_dir: Path, out: Path, cfg: TrainConfig) -> dict:
    """Train and write `out` (weights file) every epoch; returns the last epoch's figures."""
    arch = A.load(arch_path)
    data_dir, out = Path(data_dir), Path(out)
    classes, items = list_images(data_dir)
    if len(classes) != arch.num_classes:
        raise QetoolError(f"{data_dir} has {len(classes)} classes ({', '.join(classes)}), "
                          f"the arch has num_classes {arch.num_classes}")
    train_items, held = split(items, data_dir)
    rank, world = _dist()
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    model = QENet(arch)
    state_path = out.with_name(out.name + ".state.pt")
    train_set = Images(train_items, arch, cfg.seed, train=True)
    start = 0
    if cfg.resume:
        state = load_state(state_path, arch)
        model.load_state_dict(state["model"])
        start = state["epoch"] + 1
    else:
        plain = Images(train_items, arch, cfg.seed, False)
        batch = [plain[i] for i in range(min(CALIBRATION_IMAGES, len(train_items)))]
        plain.check_labels(torch.tensor([label for _, label in batch]))
        calib = torch.stack([codes for codes, _ in batch])
        model.train()
        with torch.no_grad():
            model(calib, calibrate=True)
    model.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    decay = [p for n, p in model.named_parameters() if not n.endswith("step")]
    steps = [p for n, p in model.named_parameters() if n.endswith("step")]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": steps, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    shuffle = torch.Generator()
    sampler = (DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed) if world > 1
               else RandomSampler(train_set, generator=shuffle))
    loader = DataLoader(train_set, cfg.batch_size, sampler=sampler, num_workers=cfg.workers)
    held_loader = DataLoader(Images(held, arch, cfg.seed, False), cfg.batch_size, num_workers=cfg.workers)
    total_steps = max(1, cfg.epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    if cfg.resume:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    figures: dict = {"epoch": start - 1, "rank": rank}
    for epoch in range(start, cfg.epochs):
        train_set.epoch = epoch  # workers take a fresh copy of the dataset every epoch
        if world > 1:
            sampler.set_epoch(epoch)
        else:
            shuffle.manual_seed(cfg.seed * 100_003 + epoch)
        net.train()
        losses, right, seen = [], 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=rank != 0, leave=False)
        for codes, labels in bar:
            train_set.check_labels(labels)
            codes, labels = codes.to(device), labels.to(device)
            logits = net(codes)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for p in steps:
                    p.clamp_(min=1e-8)
            losses.append(loss.item())
            right += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{right / seen:.3f}")
        held_acc = held_out_accuracy(model, held_loader, device)
        figures = {"epoch": epoch, "rank": rank, "loss": float(np.mean(losses)),
                   "train_accuracy": right / max(seen, 1), "held_out_accuracy": held_acc,
                   "losses": losses}
        if rank == 0:
            cpu = QENet(arch)
            cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
            checkpoint.save(dataclasses.replace(cpu.to_checkpoint(), class_names=tuple(classes)), out)
            _save_state(state_path, {"model": cpu.state_dict(), "optimizer": opt.state_dict(),
                                     "scheduler": sched.state_dict(), "epoch": epoch,
                                     "arch": A.dumps(arch),
                                     "classes": classes})
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {figures['loss']:.4f}, train "
                       f"{figures['train_accuracy']:.3f}, held out {held_acc:.3f} -> {out}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return figures
