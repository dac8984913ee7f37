"""Measure the kernel code-size table (qetool/compiler/code_sizes.json) from the ELF, per core.

Imported (.tflite) models have their own entry per core, `graph`: two synthetic models that run
every graph kernel (tests/tflite_builder.py), 9 and 15 nodes, give each kernel's bytes, one
node's bytes (qe_model_run + qe_model_layers, the slope) and the runtime (qe_model_input,
qe_model_arena, qe_model_layer_output, memset and the intercept).

For each core in qetool.device.boards.CORES, on the first board with that core: compile two
networks that run every kernel (the paper's Table 1 network, 56 layers, and its first three
rows at 64 px), with every width helper rendered, build the board image with the board's flags
and read the symbols' sizes. A kernel's bytes are its function's size and its fixed helpers'
(qetool.compiler.kernels.REGISTRY); each width helper has its own entry (`widths`: a model
counts those its layers need, pack.code_bytes). The packed products' branches in conv1x1_hwc are
rendered only with their helpers: the 1x1's bytes come from a third build without them, and
the difference counts with `pk_sums2`; a layer's bytes are the slope of qe_model_run +
qe_model_layers over the two networks' layer counts; the runtime is qe_model_input,
qe_model_arena, qe_model_layer_output and memset plus that line's intercept. Run it whenever a kernel, a template or the compiler flags change
(docs/memory.md); a test keeps the table within 5 % of the ELF on every core.

    python tools/code_sizes.py          (make code-sizes)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qetool import arch as A  # noqa: E402
from qetool.compiler import firmware  # noqa: E402
from qetool.compiler.arch_graph import graph_of, graph_plan  # noqa: E402
from qetool.compiler.calibrate import random_checkpoint  # noqa: E402
from qetool.compiler.lower import lower  # noqa: E402
from qetool.compiler.pack import CODE_SIZES, CODE_SIZES_FORMAT  # noqa: E402
from qetool.compiler.plan import plan  # noqa: E402
from qetool.compiler.pack import GRAPH_KERNELS  # noqa: E402
from qetool.compiler.kernels import ALL_WIDTH_HELPERS, PK_HELPERS, REGISTRY  # noqa: E402
from qetool.compiler.render import DEFAULT_NAME, render_sources  # noqa: E402
from qetool.device.boards import CORES, board_names, load_board  # noqa: E402
from qetool.device.profile import symbol_sizes  # noqa: E402
from qetool.fileio import write_text  # noqa: E402
from qetool.table import render  # noqa: E402

KERNELS = {op: f"{DEFAULT_NAME}_{k.function}" for op, k in REGISTRY.items()}
HELPERS = {op: tuple(f"{DEFAULT_NAME}_{fn}" for fn in k.helpers) for op, k in REGISTRY.items()}
WIDTHS = {h: f"{DEFAULT_NAME}_{h}" for h in sorted(ALL_WIDTH_HELPERS)}
PER_LAYER = (f"{DEFAULT_NAME}_run", f"{DEFAULT_NAME}_layers")
RUNTIME = (f"{DEFAULT_NAME}_input", f"{DEFAULT_NAME}_arena", f"{DEFAULT_NAME}_layer_output", "memset")


def build(arch: A.Arch, board_name: str, out: Path, widths: frozenset[str] = ALL_WIDTH_HELPERS) -> Path:
    """The board image of `arch` (seeded random weights) with the width helpers `widths`, built
    from the rendered sources alone: compile's report would need the very table this tool
    measures."""
    model = lower(random_checkpoint(arch, 0))
    g = graph_of(model)
    sources = render_sources(g, graph_plan(g, plan(arch)), model.model_hash, widths=widths)
    for name, text in sources.items():
        (out / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (out / "src" / name).write_text(text)
    return firmware.build_firmware(out, load_board(board_name))["board"]


def measure(board_name: str, work: Path) -> dict[str, int]:
    """The code table of `board_name`'s core, from two builds."""
    paper = A.load(ROOT / "examples" / "paper_256k_1m.json")
    small = A.Arch(64, paper.num_classes, paper.rows[:3], paper.in_channels)
    points = []
    for name, arch in (("paper", paper), ("small", small)):
        elf = build(arch, board_name, work / name)
        sizes = symbol_sizes(elf, (*KERNELS.values(), *(h for hs in HELPERS.values() for h in hs),
                                   *WIDTHS.values(), *PER_LAYER, *RUNTIME))
        points.append((len(A.layers(arch)), sizes))
    (n1, big), (n0, little) = points
    per_layer = [sum(s[k] for k in PER_LAYER) for s in (big, little)]
    layer = round((per_layer[0] - per_layer[1]) / (n1 - n0))
    intercept = per_layer[0] - layer * n1
    table = {"runtime": sum(big[k] for k in RUNTIME) + intercept}
    table.update({op: big[fn] + sum(big[h] for h in HELPERS.get(op, ())) for op, fn in KERNELS.items()})
    table["layer"] = layer
    table["widths"] = {h: big[fn] for h, fn in WIDTHS.items()}
    plain = symbol_sizes(build(paper, board_name, work / "plain", ALL_WIDTH_HELPERS - set(PK_HELPERS)),
                         (KERNELS["conv1x1"], *HELPERS["conv1x1"]))
    plain_1x1 = plain[KERNELS["conv1x1"]] + sum(plain[h] for h in HELPERS["conv1x1"])
    table["widths"]["pk_sums2"] += table["conv1x1"] - plain_1x1
    table["conv1x1"] = plain_1x1
    return table


def graph_model(extra: int) -> bytes:
    """A synthetic int8 model of every graph kernel, with `extra` more 1x1 convolutions."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tflite_builder import Builder

    b = Builder((8, 8, 3), seed=0, in_zp=-3)
    x = b.conv(b.input, 8, (3, 3), (2, 2), "same", "relu6")
    for _ in range(extra):
        x = b.conv(x, 8, (1, 1), act="relu")
    d = b.conv(x, 0, (3, 3), (1, 1), "same", "relu", depthwise=1)
    y = b.add(b.conv(b.pad(d, 1, 1, 1, 1), 8, (3, 3), padding="valid"), x)
    m = b.mean(b.pool(b.pool(y, (2, 2), (1, 1), "same", "avg"), (2, 2), (1, 1), "same", "max"))
    return b.finish(b.softmax(b.fully_connected(b.reshape(m), 3, weight_scale=0.1)))


def measure_graph(board_name: str, work: Path) -> dict[str, int]:
    """The imported models' code table of `board_name`'s core, from two builds."""
    from qetool.compiler.compile_graph import compile_graph

    points = []
    for extra in (0, 6):
        c = compile_graph(graph_model(extra), "m.tflite", load_board(board_name), DEFAULT_NAME)
        out = work / f"graph{extra}"
        (out / "src").mkdir(parents=True)
        for name, text in c.sources.items():
            (out / "src" / name).write_text(text)
        elf = firmware.build_firmware(out, load_board(board_name))["board"]
        kernels = {k: f"{DEFAULT_NAME}_{k}" for k in GRAPH_KERNELS}
        points.append((len(c.graph.nodes), symbol_sizes(elf, (*kernels.values(), *PER_LAYER, *RUNTIME)), kernels))
    (n0, little, _), (n1, big, kernels) = points
    per_node = [sum(s[k] for k in PER_LAYER) for s in (big, little)]
    node = round((per_node[0] - per_node[1]) / (n1 - n0))
    table = {"runtime": sum(big[k] for k in RUNTIME) + per_node[0] - node * n1}
    table.update({k: big[fn] for k, fn in kernels.items()})
    table["node"] = node
    return table


def main() -> None:
    cores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cpu in CORES:
            board = next((b for b in board_names() if load_board(b).core.cpu == cpu), None)
            if board is None:
                print(f"{cpu}: no board with this core in boards/: not measured")
                continue
            print(f"measuring {cpu} on {board} ...", flush=True)
            cores[cpu] = measure(board, Path(tmp) / cpu)
            cores[cpu]["graph"] = measure_graph(board, Path(tmp) / cpu)
    keys = ["runtime", *REGISTRY, "layer"]
    print(render(("core", *keys), [(cpu, *(f"{t[k]:,}" for k in keys)) for cpu, t in cores.items()]))
    print(render(("width helper", *cores), [(h, *(f"{t['widths'][h]:,}" for t in cores.values()))
                                            for h in WIDTHS]))
    gkeys = ["runtime", *GRAPH_KERNELS, "node"]
    print(render(("core (imported)", *gkeys), [(cpu, *(f"{t['graph'][k]:,}" for k in gkeys))
                                               for cpu, t in cores.items()]))
    lines = ",\n".join(f'    "{cpu}": {json.dumps(t)}' for cpu, t in cores.items())
    write_text(CODE_SIZES, f'{{\n  "format": "{CODE_SIZES_FORMAT}",\n  "cores": {{\n{lines}\n  }}\n}}\n')
    print(f"-> {CODE_SIZES.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
