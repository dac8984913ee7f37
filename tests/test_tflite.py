"""The TFLite front end: every node bit-exact with TFLM's interpreter (synthetic models of every
op, and the two real models in ../shared/models), the generated C bit-exact on the host and, for
person_detect, in QEMU; bad files are one clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite_micro")

from tflite_builder import OPS, Builder  # noqa: E402

from qetool.compiler import hostrun, ir_golden, tflite, tflm_ref  # noqa: E402
from qetool.compiler.compile_graph import compile_graph  # noqa: E402
from qetool.device.boards import load_board  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def shared_model(name: str) -> Path:
    path = MODELS / name
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing (CI needs ../shared/models)")
        pytest.skip(f"{path} is missing: the real-model tests need ../shared/models")
    return path


def chain() -> bytes:
    """SAME stride-2 non-square conv, depthwise x2, 1x1, residual ADD, max pool, FC, softmax."""
    b = Builder((9, 7, 3), seed=1, in_zp=-128)
    x = b.conv(b.input, 8, (3, 3), (2, 2), "same", "relu6")
    d = b.conv(x, 0, (3, 3), (1, 1), "same", "relu", depthwise=2)
    p = b.conv(d, 8, (1, 1))
    a = b.add(x, p)
    m = b.pool(a, (2, 2), (2, 2), "same", "max")
    f = b.fully_connected(b.reshape(m), 5, weight_scale=0.05)
    return b.finish(b.softmax(f))


def valid_and_pads() -> bytes:
    """VALID conv with a 2x4 kernel, PAD, average pool SAME with stride 2, a dead channel,
    per-channel FC with RELU; input zero point 127."""
    b = Builder((8, 11, 2), seed=2, in_zp=127)
    x = b.conv(b.input, 6, (2, 4), (1, 2), "valid", "relu", dead=True)
    x = b.pad(x, 1, 2, 0, 1)
    x = b.pool(x, (3, 3), (2, 2), "same", "avg")
    x = b.fully_connected(b.reshape(x), 7, per_channel=True, act="relu")
    return b.finish(x)


def means() -> bytes:
    """MEAN over H and W with keep_dims on odd sizes, in a model with a float input and output
    (QUANTIZE and DEQUANTIZE at its edges)."""
    b = Builder((7, 5, 6), seed=6, in_zp=10)
    x = b.conv(b.input, 8, (3, 3), (1, 1), "same", "relu")
    return b.finish(b.float_edges(b.fully_connected(b.mean(x, keep_dims=True), 4)))


def aliases() -> bytes:
    """A RESHAPE's output that an ADD could overwrite in place while the reshaped tensor is
    still read later (a max pool of it): the planner must not let the in-place ADD clobber a
    buffer another alias still needs."""
    b = Builder((4, 4, 3), seed=7, in_zp=0)
    x = b.conv(b.input, 4, (3, 3), (1, 1), "same", "relu")
    other = b.reshape(b.conv(x, 4, (1, 1)))
    r = b.reshape(x)
    twice = b.add(r, other)
    late = b.reshape(b.pool(x, (2, 2), (2, 2), "valid", "max"))
    return b.finish(b.add(b.fully_connected(twice, 5), b.fully_connected(late, 5)))


def ds_cnn() -> bytes:
    """A DS-CNN keyword spotter's shape: 49x10x1, a 10x4 stride-2 conv, depthwise-separable
    blocks, average pool, FC, softmax."""
    b = Builder((49, 10, 1), seed=3, in_zp=5)
    x = b.conv(b.input, 16, (10, 4), (2, 2), "same", "relu")
    for _ in range(2):
        x = b.conv(x, 0, (3, 3), (1, 1), "same", "relu", depthwise=1)
        x = b.conv(x, 16, (1, 1), act="relu")
    x = b.pool(x, (25, 5), (25, 5), "valid", "avg")
    return b.finish(b.softmax(b.fully_connected(b.reshape(x), 12, weight_scale=0.1)))


def resnet8() -> bytes:
    """A ResNet-8 block: 32x32x3, ADD of a 3x3 stride-2 branch and a 1x1 stride-2 shortcut conv."""
    b = Builder((32, 32, 3), seed=4, in_zp=-3)
    x = b.conv(b.input, 8, (3, 3), (1, 1), "same", "relu")
    y = b.conv(x, 16, (3, 3), (2, 2), "same", "relu")
    y = b.conv(y, 16, (3, 3), (1, 1), "same")
    s = b.conv(x, 16, (1, 1), (2, 2), "same")
    x = b.add(y, s, act="relu")
    x = b.pool(x, (16, 16), (16, 16), "valid", "avg")
    return b.finish(b.softmax(b.fully_connected(b.reshape(x), 10, weight_scale=0.1)))


def mbconv() -> bytes:
    """An MBConv network with PAD + VALID depthwise stride 2, a depth multiplier of 8 on one
    channel (person_detect's first op), a 5x5 depthwise, residual ADD, max pool and MEAN."""
    b = Builder((20, 20, 1), seed=5, in_zp=-1)
    x = b.conv(b.input, 0, (3, 3), (2, 2), "same", "relu6", depthwise=8)
    e = b.conv(x, 24, (1, 1), act="relu6")
    e = b.pad(e, 0, 1, 0, 1)
    d = b.conv(e, 0, (3, 3), (2, 2), "valid", "relu6", depthwise=1)
    y = b.conv(d, 8, (1, 1))
    e2 = b.conv(y, 24, (1, 1), act="relu6")
    d2 = b.conv(e2, 0, (5, 5), (1, 1), "same", "relu6", depthwise=1)
    y2 = b.add(y, b.conv(d2, 8, (1, 1)))
    return b.finish(b.mean(b.pool(y2, (2, 2), (1, 1), "valid", "max"), keep_dims=False))


SYNTHETIC = {"chain": chain, "valid_and_pads": valid_and_pads, "ds_cnn": ds_cnn, "means": means,
             "aliases": aliases,
             "resnet8": resnet8, "mbconv": mbconv}


def random_inputs(g, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=g.input_tensor().hwc) for _ in range(n)]


def host_outputs(data: bytes, tmp: Path, inputs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The generated C of a model on this machine: every node's output for each input."""
    c = compile_graph(data, "model.tflite", load_board("stm32f746"), "qe_model")
    (tmp / "src").mkdir(parents=True)
    for name, text in c.sources.items():
        (tmp / "src" / name).write_text(text)
    exe = hostrun.build_runner(tmp, tmp / "runner")
    results = hostrun.run_runner(exe, c.program, inputs)
    for r in results:
        assert np.array_equal(r.logits, r.tensors[c.graph.nodes[-1].name].reshape(-1))
    return [r.tensors for r in results]


def check_against_tflm(data: bytes, inputs: list[np.ndarray], inside: float | None = 0.9) -> None:
    g = tflite.parse(data, "model.tflite")
    ref = tflm_ref.TflmReference(data)
    for x in inputs:
        ours = ir_golden.run(g, x)
        mine = {n.name: ours[n.output] for n in g.nodes}
        assert tflm_ref.first_difference(g, mine, ref.run(g, x)) is None
        if inside is not None:
            for n in g.nodes:
                if n.op != "softmax":
                    v = mine[n.name]
                    assert ((v > -128) & (v < 127)).mean() >= inside, f"{n.name} saturates"


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_models_every_node_as_tflm_and_c_on_host(name, tmp_path):
    data = SYNTHETIC[name]()
    g = tflite.parse(data, name)
    inputs = random_inputs(g, 4)
    check_against_tflm(data, inputs)
    want = [ir_golden.run(g, x) for x in inputs]
    for got, w in zip(host_outputs(data, tmp_path, inputs), want):
        for n in g.nodes:
            assert np.array_equal(got[n.name], w[n.output]), n.name


def test_rounding_ties_occur_in_the_synthetic_models():
    """Rounding matters: some requantized values fall exactly half-way, where a wrong rounding
    rule would give a different code."""
    from qetool.compiler.tflm_math import srdhm

    ties = 0
    for build in SYNTHETIC.values():
        g = tflite.parse(build(), "m")
        x = random_inputs(g, 1)[0]
        values = ir_golden.run(g, x)
        for n in g.nodes:
            if n.op in ("conv2d", "depthwise_conv2d") and (n.requant.shift < 0).all():
                acc = ir_golden.conv_acc(n, values[n.inputs[0]], g.tensors[n.inputs[0]].zero_point,
                                         g.tensors[n.output].shape[1:3]) + n.requant.bias
                hi = srdhm(acc, n.requant.mult)
                e = -n.requant.shift.astype(np.int64)
                ties += int(((hi & ((1 << e) - 1)) == (1 << (e - 1))).sum())
    assert ties > 0


def test_the_softmax_outputs_are_not_all_saturated():
    g = tflite.parse(chain(), "chain")
    out = ir_golden.run(g, random_inputs(g, 1)[0])[g.output]
    assert ((out > -128) & (out < 127)).mean() >= 0.5


@pytest.mark.parametrize("model", ["person_detect.tflite", "vww_96_int8.tflite"])
def test_real_models_every_node_as_tflm_and_the_right_class(model, tmp_path):
    from PIL import Image

    data = shared_model(model).read_bytes()
    g = tflite.parse(data, model)
    raw = {p: np.frombuffer(Image.open(shared_model(p)).tobytes(), np.uint8)
           for p in ("person.bmp", "no_person.bmp")}
    natural = {"person.bmp": raw["person.bmp"] ^ 0x80, "no_person.bmp": raw["no_person.bmp"]}
    if g.input_tensor().shape[3] == 1:   # TFLM's test: the raw bytes as int8
        pictures = {p: v.view(np.int8).reshape(96, 96, 1) for p, v in raw.items()}
    else:                                # gray copied to RGB, minus 128
        pictures = {p: np.repeat((v.astype(np.int32) - 128).reshape(96, 96, 1), 3, axis=2)
                    for p, v in natural.items()}
    inputs = [pictures["person.bmp"], pictures["no_person.bmp"], *random_inputs(g, 2)]
    check_against_tflm(data, inputs, inside=None)
    classes = [int(np.argmax(ir_golden.run(g, x)[g.output])) for x in inputs[:2]]
    assert classes == [1, 0]
    expected = {"person_detect.tflite": [-113, 113], "vww_96_int8.tflite": [-95, 95]}[model]
    assert ir_golden.run(g, inputs[0])[g.output].reshape(-1).tolist() == expected
    want = [ir_golden.run(g, x) for x in inputs]
    for got, w in zip(host_outputs(data, tmp_path, inputs), want):
        for n in g.nodes:
            assert np.array_equal(got[n.name], w[n.output]), n.name


def qetool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qetool", *args], capture_output=True, text=True)


def test_person_detect_in_the_emulator_prints_tflms_output(tmp_path):
    from PIL import Image

    model, bmp = shared_model("person_detect.tflite"), shared_model("person.bmp")
    raw = np.frombuffer(Image.open(bmp).tobytes(), np.uint8)
    Image.fromarray((raw ^ 0x80).reshape(96, 96), "L").save(tmp_path / "person.png")
    np.save(tmp_path / "person.npy", raw.reshape(96, 96, 1))
    r = qetool("compile", str(model), "--board", "stm32f746", "--build", "--class-names",
               "no person,person", "-o", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    r = qetool("run", str(tmp_path / "b"), "--emulator", "--image", str(tmp_path / "person.png"),
               "--input", str(tmp_path / "person.npy"), "--image", str(shared_model("no_person.bmp")),
               "--check", "--json")
    assert r.returncode == 0, r.stderr
    import json
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["output"] for d in docs] == [[-113, 113], [77, -77], [-113, 113]]
    assert [d["class_name"] for d in docs] == ["person", "no person", "person"]
    assert all(d["check"]["same"] and d["count"] > 0 for d in docs)
    r = qetool("profile", str(tmp_path / "b"), "--emulator", "--json")
    assert r.returncode == 0, r.stderr
    prof = json.loads(r.stdout)
    assert prof["arena_bytes"] <= 0.70 * 85_264
    # the code-size table (make code-sizes) holds within 5 % of the ELF for imported models too
    assert abs(prof["estimate_code_bytes"] - prof["model_code_bytes"]) <= 0.05 * prof["model_code_bytes"]
    # a firmware whose node 4 biases differ from the model's (rebuilt): --check fails and names
    # that node, from a traced inference
    import re

    from qetool.compiler import firmware
    src = (tmp_path / "b" / "src" / "qe_model_weights.c").read_text()
    m = re.search(r"qe_model_4_conv_2d_bias\[\d+\] QE_MODEL_WEIGHTS = \{ ([^}]*) \}", src)
    shifted = ", ".join(str(int(v) + 40_000) for v in m.group(1).split(", "))
    (tmp_path / "b" / "src" / "qe_model_weights.c").write_text(src[:m.start(1)] + shifted + src[m.end(1):])
    firmware.build_firmware(tmp_path / "b", load_board("stm32f746"))
    r = qetool("run", str(tmp_path / "b"), "--emulator", "--input", str(tmp_path / "person.npy"), "--check")
    assert r.returncode == 1
    assert "golden: DIFFERENT" in r.stdout and "first difference at layer 4.conv_2d" in r.stdout, r.stdout


def unsupported_model() -> bytes:
    b = Builder((4, 4, 2), seed=0)
    x = b.conv(b.input, 4, (1, 1))
    b._op(OPS.TANH, [x], b._out(np.tanh(b.real[x]), "tanh"), 0, None)
    return b.finish(len(b.tensors) - 1)


def test_bad_models_are_one_line_and_exit_2(tmp_path):
    out = tmp_path / "b"
    cases = {
        "tanh.tflite": (unsupported_model(), "operator 1 (TANH) is not supported; supported: CONV_2D"),
        "cut.tflite": (chain()[:200], "malformed"),
        "flipped.tflite": (bytes(b ^ 0x5A if 8 <= i < 64 else b for i, b in enumerate(chain())),
                           "model.tflite" if False else ""),
    }
    for name, (data, want) in cases.items():
        (tmp_path / name).write_bytes(data)
        r = qetool("compile", str(tmp_path / name), "--board", "stm32f746", "-o", str(out))
        assert r.returncode == 2, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: "), r.stderr
        assert want in r.stderr, r.stderr
        assert not out.exists()


def test_weights_and_seed_do_not_apply_to_a_tflite_file(tmp_path):
    (tmp_path / "m.tflite").write_bytes(chain())
    r = qetool("compile", str(tmp_path / "m.tflite"), "--board", "stm32f746", "--seed", "3", "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and "--weights and --seed do not apply" in r.stderr


def test_run_host_takes_float_input_for_a_float_model_and_prints_tflms_floats(tmp_path):
    import json

    from tflite_micro.python.tflite_micro import runtime

    data = means()
    (tmp_path / "m.tflite").write_bytes(data)
    assert qetool("compile", str(tmp_path / "m.tflite"), "--board", "stm32f746", "-o",
                  str(tmp_path / "b")).returncode == 0
    x = np.random.default_rng(5).normal(0, 1.0, size=(1, 7, 5, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = qetool("run", str(tmp_path / "b"), "--host", "--input", str(tmp_path / "x.npy"), "--json", "--check")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    itp = runtime.Interpreter.from_bytes(data)
    itp.set_input(x, 0)
    itp.invoke()
    want = itp.get_output(0).reshape(-1)
    assert np.array_equal(np.array(doc["values"], np.float32), want)
    assert doc["class"] == int(np.argmax(want)) and doc["check"]["same"]
    np.save(tmp_path / "bad.npy", np.zeros((7, 6, 5), np.int8))
    r = qetool("run", str(tmp_path / "b"), "--host", "--input", str(tmp_path / "bad.npy"))
    assert r.returncode == 2 and "shape [7, 5, 6]" in r.stderr and len(r.stderr.splitlines()) == 1


def test_vww_in_the_emulator_is_bit_exact_with_golden_and_tflm(tmp_path):
    model = shared_model("vww_96_int8.tflite")
    x = np.random.default_rng(9).integers(-128, 128, size=(96, 96, 3)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    r = qetool("compile", str(model), "--board", "stm32f746", "--build", "-o", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    r = qetool("run", str(tmp_path / "b"), "--emulator", "--input", str(tmp_path / "x.npy"), "--check")
    assert r.returncode == 0 and "golden: same" in r.stdout, r.stdout + r.stderr
    r = qetool("flash", str(tmp_path / "b"), "--dry-run", "--tool", "openocd")
    assert r.returncode == 0 and "board.elf" in r.stdout, r.stderr


def test_eval_on_the_host_classifies_tflms_pictures(tmp_path):
    from PIL import Image

    raw = np.frombuffer(Image.open(shared_model("person.bmp")).tobytes(), np.uint8)
    for cls in ("no_person", "person"):
        (tmp_path / "data" / cls).mkdir(parents=True)
    Image.fromarray((raw ^ 0x80).reshape(96, 96), "L").save(tmp_path / "data" / "person" / "a.png")
    Image.open(shared_model("no_person.bmp")).save(tmp_path / "data" / "no_person" / "b.png")
    assert qetool("compile", str(shared_model("person_detect.tflite")), "--board", "stm32f746",
                  "-o", str(tmp_path / "b")).returncode == 0
    r = qetool("eval", str(tmp_path / "b"), str(tmp_path / "data"), "--host", "--json")
    assert r.returncode == 0, r.stderr
    import json
    doc = json.loads(r.stdout)
    assert doc["accuracy"] == 1.0 and doc["images"] == 2


def test_check_names_the_first_node_where_tflm_differs(tmp_path, monkeypatch):
    """run --check compares the golden model with TFLM's interpreter node by node: a reference
    that differs at one node (here made so) is reported with that node's name."""
    from qetool.device.run import run_inputs

    (tmp_path / "m.tflite").write_bytes(chain())
    assert qetool("compile", str(tmp_path / "m.tflite"), "--board", "stm32f746", "-o", str(tmp_path / "b")).returncode == 0
    real = tflm_ref.TflmReference.run

    def off_by_one(self, g, codes):
        values = real(self, g, codes)
        values["2.conv_2d"] = values["2.conv_2d"] + 1
        return values

    monkeypatch.setattr(tflm_ref.TflmReference, "run", off_by_one)
    [(_, r)] = list(run_inputs(str(tmp_path / "b"), True, False, None, 115200, [], [], True))
    assert r.same is False and "TFLM's interpreter differs from the golden model at node 2.conv_2d" in r.difference
