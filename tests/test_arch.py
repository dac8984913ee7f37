"""arch.json: exact round trip, validation paths, the tensor table."""

import json
import random

import pytest
from conftest import EXAMPLES
from helpers import random_arch

from qetool import arch as A


def _doc():
    return json.loads((EXAMPLES / "paper_256k_1m.json").read_text())


def test_example_round_trips_byte_for_byte():
    text = (EXAMPLES / "paper_256k_1m.json").read_text()
    assert A.dumps(A.loads(text)) == text


def test_random_archs_round_trip():
    rng = random.Random(3)
    for _ in range(50):
        a = random_arch(rng)
        assert A.loads(A.dumps(a)) == a


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["layers"][3].__setitem__("bits_a", [4, 9]), "layers[3].bits_a[1]: 9 is not in 3..8"),
    (lambda d: d["layers"][2].__setitem__("bits_w", 1), "layers[2].bits_w: 1 is not in 2..8"),
    (lambda d: d["layers"][2].__setitem__("bits_w", [8]), "layers[2].bits_w: has 1 values for 2 repetitions"),
    (lambda d: d["layers"][4].__setitem__("in", 95), "layers[4].in: 95 does not chain: the previous output has 96 channels"),
    (lambda d: d["layers"][1].__setitem__("colour", 1), "layers[1].colour: unknown key"),
    (lambda d: d.__setitem__("extra", 1), "extra: unknown key"),
    (lambda d: d["layers"][1].__setitem__("kernel", 4), "layers[1].kernel: 4 is not odd"),
    (lambda d: d["layers"][1].__setitem__("stride", 3), "layers[1].stride: 3 is not in 1..2"),
    (lambda d: d["layers"][1].pop("btn"), "layers[1].btn: missing (mbconv needs its expanded width)"),
    (lambda d: d["layers"][0].__setitem__("btn", 8), "layers[0].btn: only mbconv rows have btn"),
    (lambda d: (d["layers"][1].__setitem__("block", "conv"), d["layers"][1].pop("btn")), "layers[1].block: rows after the stem must be mbconv"),
    (lambda d: d.__setitem__("resolution", 16), "resolution: 16 px does not survive the strides: layers[8] (stride 2) gets 1x1"),
    (lambda d: d.__setitem__("format", "x"), 'format: "x" is not "qetool-arch/1"'),
    (lambda d: d["layers"][5].__setitem__("repeat", True), "layers[5].repeat: true is not an integer"),
])
def test_validation_names_the_path(edit, message):
    d = _doc()
    edit(d)
    with pytest.raises(A.ArchError) as e:
        A.from_dict(d)
    assert message in e.value.errors


def test_every_error_is_reported():
    d = _doc()
    d["layers"][1]["bits_a"] = [2, 9]
    d["layers"][2]["kernel"] = 0
    with pytest.raises(A.ArchError) as e:
        A.from_dict(d)
    assert e.value.errors == ["layers[1].bits_a[0]: 2 is not in 3..8",
                              "layers[1].bits_a[1]: 9 is not in 3..8",
                              "layers[2].kernel: 0 is not in 1..15"]


def test_search_space_limits_are_not_imposed():
    d = _doc()
    d["layers"][9]["btn"] = 160  # expansion 1 in a repeated block, as the paper's tables have
    d["layers"][5]["bits_a"] = 7
    A.from_dict(d)


def test_tensor_table_of_the_paper_network():
    a = A.load(EXAMPLES / "paper_256k_1m.json")
    t = A.tensors(a)
    assert (t["image"].bits, t["image"].signed, t["image"].readers) == (8, False, ("stem",))
    # stem output = input of b1 (bits_a 4, unsigned after ReLU6)
    assert (t["stem"].bits, t["stem"].signed, t["stem"].readers) == (4, False, ("b1.expand",))
    assert (t["b1.expand"].bits, t["b1.expand"].signed) == (4, False)
    assert (t["b1.dw"].bits, t["b1.dw"].readers) == (4, ("b1.project",))
    # b1's output is b2's input: b2 bits_a 8, signed; b2 is residual so its project reads it
    assert (t["b1.project"].bits, t["b1.project"].signed) == (8, True)
    assert t["b1.project"].readers == ("b2.expand", "b2.project")
    assert (t["b18.project"].bits, t["b18.project"].signed, t["b18.project"].readers) == (8, True, ("head",))
    assert (t["head"].bits, t["head"].signed, t["head"].c) == (8, True, 2)
    assert (t["b18.project"].h, t["b18.project"].c) == (5, 160)


def test_layer_ids_and_geometry():
    a = A.load(EXAMPLES / "paper_256k_1m.json")
    ls = A.layers(a)
    assert [l.id for l in ls[:5]] == ["stem", "b1.expand", "b1.dw", "b1.project", "b2.expand"]
    assert ls[-1].id == "head" and len(ls) == 2 + 3 * 18
    dw = ls[2]
    assert (dw.h_in, dw.h_out, dw.pad, dw.stride) == (80, 40, (2, 2, 2, 2), 2)
    assert out_sizes(a) == [80, 40, 40, 40, 40, 20, 20, 20, 20, 10, 10, 10, 10, 10, 10, 5, 5, 5, 5]


def out_sizes(a):
    return [b.h_out for b in A.blocks(a)]


def test_load_errors_name_the_file(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("{not json")
    with pytest.raises(A.ArchError, match=r"a.json: \$: not JSON"):
        A.load(p)
