"""Training: LSQ, torch against the compiler's models layer by layer, then train -> export ->
compile --weights -> eval (host and emulator) end to end, exact resume, DistributedDataParallel."""

import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch") if os.environ.get("CI") != "true" else __import__("torch")

import vwwlike  # noqa: E402
from helpers import random_arch  # noqa: E402

from qetool import arch as A  # noqa: E402
from qetool import checkpoint  # noqa: E402
from qetool.compiler import golden  # noqa: E402
from qetool.compiler.lower import lower  # noqa: E402
from qetool.nn.lsq import Quantizer  # noqa: E402
from qetool.nn.model import QENet  # noqa: E402
from qetool.nn.train import TrainConfig, train  # noqa: E402

QETOOL = [sys.executable, "-m", "qetool"]
TINY = A.Arch(32, 2, (A.Row("conv", 3, 2, 3, 8, None, 1, 8, 8),
                      A.Row("mbconv", 3, 2, 8, 16, 24, 1, 5, 4),
                      A.Row("mbconv", 3, 1, 16, 16, 32, 2, (6, 4), (3, 5)),
                      A.Row("mbconv", 3, 2, 16, 24, 48, 1, 4, 6)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return vwwlike.make(tmp_path_factory.mktemp("vww") / "data", per_class=80, size=48)


def test_lsq_forward_and_gradients():
    q = Quantizer(3, True)  # codes -4..3
    q.step.data.fill_(0.5)
    x = torch.tensor([[-3.0, -0.25, 0.25, 0.76, 1.2, 9.0]], requires_grad=True)  # one example, 6 features
    y = q(x)
    assert y.tolist() == [[-2.0, 0.0, 0.5, 1.0, 1.0, 1.5]]  # 0.25 / 0.5 = 0.5 rounds half up
    y.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0, 0.0]]  # straight through inside the range
    v = x.detach() / 0.5
    inside = torch.floor(torch.clamp(v, -4, 3) + 0.5) - v
    want = torch.where(v < -4, torch.tensor(-4.0), torch.where(v > 3, torch.tensor(3.0), inside))
    g = 1 / np.sqrt(6 * 3)  # LSQ's gradient scale: 1 / sqrt(N * Qp)
    assert q.step.grad.item() == pytest.approx(float(want.sum()) * g, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_torch_agrees_with_the_compiler_layer_by_layer(seed):
    torch.manual_seed(seed)
    arch = random_arch(random.Random(seed), resolution=24)
    net = QENet(arch)
    bits = A.tensors(arch)["image"].bits
    codes = torch.floor(torch.randint(0, 256, (8, 3, 24, 24)).float() / 2 ** (8 - bits))
    net.train()
    net(codes, calibrate=True)
    for _ in range(3):
        net(codes)  # BatchNorm statistics
    net.eval()
    ck = net.to_checkpoint()
    model = lower(ck)
    trace = golden.run(model, codes[0].permute(1, 2, 0).numpy().astype(np.int32))
    for layer in A.layers(arch):
        x = trace.tensors[layer.input]
        res = trace.tensors[layer.residual] if layer.residual else None
        t = net.layer_codes(layer.id, x, res, ck)
        assert np.array_equal(t, golden.fake_quant_layer(ck, layer, x, res)), layer.id  # same float math
        assert np.abs(t - trace.tensors[layer.id]).max() <= 1, layer.id  # one output step
    # the weights file gives back the same network
    back = QENet.from_checkpoint(ck)
    with torch.no_grad():
        assert torch.equal(back(codes), net(codes))


def test_train_export_compile_eval(tmp_path, data):
    A.save(TINY, tmp_path / "tiny.json")
    out = tmp_path / "model.npz"
    figures = train(tmp_path / "tiny.json", data, out, TrainConfig(epochs=4, batch_size=16, lr=0.05, workers=2))
    n = len(figures["losses"]) // 4
    assert np.mean(figures["losses"][-n:]) < np.mean(figures["losses"][:n])  # the loss falls
    ck = checkpoint.load(out, TINY)
    assert (tmp_path / "model.npz.state.pt").is_file()

    # ONNX: passes the checker (in export), runs in onnxruntime like torch, in codes
    r = subprocess.run(QETOOL + ["export", str(out), "-o", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import onnx
    import onnxruntime as ort
    model = onnx.load(tmp_path / "m.onnx")
    bits = {p.value for n in model.graph.node for p in n.metadata_props if p.key == "qetool.bits"}
    assert {"3", "4", "5", "6"} <= bits and any(n.op_type == "Clip" and n.name.endswith(".clip") for n in model.graph.node)
    net = QENet.from_checkpoint(ck)
    img = np.random.default_rng(1).integers(0, 256, (32, 3, 32, 32)).astype(np.uint8)
    _, onnx_codes = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"image_codes": img})
    with torch.no_grad():
        torch_codes = torch.floor(net(torch.from_numpy(img.astype(np.float32))) / ck.steps["head"] + 0.5)
    diff = np.abs(torch_codes.numpy() - onnx_codes.astype(np.float32))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.95  # one step only where a tie rounds to even

    # compile the trained weights, evaluate on the host (with the torch agreement) and in QEMU
    r = subprocess.run(QETOOL + ["compile", str(tmp_path / "tiny.json"), "--board", "stm32f746",
                                 "--weights", str(out), "--build", "-o", str(tmp_path / "b")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(QETOOL + ["eval", str(tmp_path / "b"), str(data), "--host", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["images"] == 160 and sum(map(sum, doc["confusion"])) == 160
    agree = doc["agreement"]
    assert agree["images"] == 160 and agree["agreement"] >= 0.99 and agree["confident"] > 0
    if shutil.which("qemu-system-arm"):
        r = subprocess.run(QETOOL + ["eval", str(tmp_path / "b"), str(data), "--emulator", "--limit", "2"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "on 4 images" in r.stdout and "instructions per image" in r.stdout


class Stop(Exception):
    pass


def test_resume_continues_exactly(tmp_path, data, monkeypatch):
    import qetool.nn.train as T

    A.save(TINY, tmp_path / "tiny.json")
    cfg = dict(epochs=2, batch_size=32, workers=0, seed=3)
    train(tmp_path / "tiny.json", data, tmp_path / "a.npz", TrainConfig(**cfg))
    save_state = T._save_state

    def stop_after_first_epoch(path, state):
        save_state(path, state)
        raise Stop  # as if the run were killed once epoch 1 was written

    monkeypatch.setattr(T, "_save_state", stop_after_first_epoch)
    with pytest.raises(Stop):
        train(tmp_path / "tiny.json", data, tmp_path / "b.npz", TrainConfig(**cfg))
    monkeypatch.setattr(T, "_save_state", save_state)
    train(tmp_path / "tiny.json", data, tmp_path / "b.npz", TrainConfig(resume=True, **cfg))
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        assert np.array_equal(a[k], b[k]), k


def test_torchrun_distributed_data_parallel(tmp_path, data):
    A.save(TINY, tmp_path / "tiny.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "qetool", "train", str(tmp_path / "tiny.json"), str(data),
                        "-o", str(tmp_path / "ddp.npz"), "--epochs", "1", "--batch-size", "16",
                        "--workers", "0"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("trained to epoch 1") == 1  # rank 0 reports and writes
    checkpoint.load(tmp_path / "ddp.npz", TINY)


def test_wrong_class_count_is_a_user_error(tmp_path, data):
    arch = A.Arch(32, 3, TINY.rows)
    A.save(arch, tmp_path / "three.json")
    r = subprocess.run(QETOOL + ["train", str(tmp_path / "three.json"), str(data), "-o", str(tmp_path / "m.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "has 2 classes (no_person, person), the arch has num_classes 3" in r.stderr


@pytest.mark.parametrize("lr", ["-1", "0", "nan", "inf", "fast"])
def test_a_learning_rate_must_be_a_positive_number(tmp_path, data, lr):
    A.save(TINY, tmp_path / "tiny.json")
    r = subprocess.run(QETOOL + ["train", str(tmp_path / "tiny.json"), str(data), "-o", str(tmp_path / "m.npz"),
                                 "--lr", lr], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "--lr" in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "m.npz").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """One epoch of TINY, with its weights file and training state."""
    d = tmp_path_factory.mktemp("trained")
    A.save(TINY, d / "tiny.json")
    r = subprocess.run(QETOOL + ["train", str(d / "tiny.json"), str(data), "-o", str(d / "m.npz"),
                                 "--epochs", "1", "--workers", "0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return d


def _resume(d, data, arch_name="tiny.json", epochs="1"):
    return subprocess.run(QETOOL + ["train", str(d / arch_name), str(data), "-o", str(d / "m.npz"),
                                    "--epochs", epochs, "--workers", "0", "--resume"],
                          capture_output=True, text=True, timeout=300)


def test_the_weights_carry_the_class_names(trained):
    assert checkpoint.load(trained / "m.npz", TINY).class_names == ("no_person", "person")


def test_resume_when_already_finished_says_so(trained, data):
    r = _resume(trained, data)
    assert r.returncode == 0 and "nothing to train" in r.stdout and "already trained to epoch 1 of 1" in r.stdout


def test_resume_with_another_arch_is_refused(trained, data):
    rows = list(TINY.rows)
    rows[1] = A.Row("mbconv", 3, 2, 8, 16, 24, 1, 6, 4)  # the same weights, other bits
    A.save(A.Arch(32, 2, tuple(rows)), trained / "other.json")
    r = _resume(trained, data, "other.json", "2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "the training state is for another network: layers[1].bits_a: 5 against 6" in r.stderr


@pytest.mark.parametrize("damage", ["truncated", "code"])
def test_a_damaged_or_malicious_state_is_refused(trained, data, tmp_path, damage):
    d = tmp_path / "t"
    shutil.copytree(trained, d)
    state = d / "m.npz.state.pt"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:500])
    else:  # a pickle that would run code when loaded without weights_only
        marker = tmp_path / "ran"
        torch.save({"model": Evil(str(marker))}, state)
    r = _resume(d, data, epochs="2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "not a readable training state" in r.stderr
    assert damage != "code" or not (tmp_path / "ran").exists()


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_bad_picture_during_training(tmp_path, data):
    d = tmp_path / "data"
    shutil.copytree(data, d)
    (d / "person" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    A.save(TINY, tmp_path / "tiny.json")
    for workers in ("0", "2"):
        r = subprocess.run(QETOOL + ["train", str(tmp_path / "tiny.json"), str(d), "-o", str(tmp_path / "m.npz"),
                                     "--epochs", "1", "--workers", workers], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2, r.stderr[-500:]
        last = [line for line in r.stderr.splitlines() if line.startswith("error")]
        assert last and "zz_broken.png: cannot read the image" in last[0] and "Traceback" not in r.stderr
