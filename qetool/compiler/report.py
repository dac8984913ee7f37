"""report.json (docs/formats.md) and its table, from a graph IR and its plan, for either front
end: per layer (node) weights, per-channel data, arena slice and scratch; Flash (pack.graph_flash)
and arena against the board."""

from __future__ import annotations

from qetool.compiler import ir
from qetool.compiler.ir_plan import GraphPlan, scratch_bytes, tensor_bytes
from qetool.compiler.pack import graph_flash
from qetool.compiler.program import node_macs
from qetool.device.boards import Board
from qetool.search.latency import Estimate
from qetool.table import render
from qetool.units import fmt_size


def report(g: ir.Graph, p: GraphPlan, model_hash: str, board: Board, imported: bool = False,
           latency: Estimate | None = None) -> dict:
    """The report of graph `g` planned as `p` on `board`. An imported model's adds `source`,
    per-node `macs`, `activation_bytes`, `scratch_peak_bytes` and `scratch_overhead_bytes`.
    A latency estimate adds `latency_instructions`, `latency_ms` and each layer's
    `latency_instructions`."""
    flash = graph_flash(g, board.core.cpu)
    layers = []
    for n, f in zip(g.nodes, flash.layers):
        x, y = g.tensors[n.inputs[0]], g.tensors[n.output]
        in_arena = n.op != "head"
        row = {"id": n.name, "op": ir.arch_op(n) if ir.own_kernels(n) else n.op,
               "bits_in": x.bits, "bits_w": n.bits_w if n.weights is not None else 0,
               "bits_out": y.bits, "params": int(n.weights.size) if n.weights is not None else 0,
               "weight_bytes": f.weights, "channel_bytes": f.channel, "bytes": f.weights + f.channel,
               "arena": {"offset": p.offset(n.output), "bytes": tensor_bytes(y)} if in_arena else None,
               "scratch_bytes": scratch_bytes(g, n),
               "constant_channels": int((n.requant.mult == 0).sum()) if n.requant is not None else 0}
        if imported:
            row["macs"] = node_macs(g, n)
        if latency is not None:
            row["latency_instructions"] = round(latency.per_layer[len(layers)])
        layers.append(row)
    doc = {"model_hash": model_hash, "board": board.name,
           **({"source": "tflite"} if imported else {}),
           "model_flash_bytes": flash.total, "weights_flash_bytes": flash.weights,
           "channel_data_bytes": flash.channel, "code_flash_bytes": flash.code,
           "arena_bytes": p.arena_bytes}
    if imported:
        doc.update({"activation_bytes": p.activation_bytes,
                    "scratch_peak_bytes": max(r["scratch_bytes"] for r in layers),
                    "scratch_overhead_bytes": p.arena_bytes - p.activation_bytes})
    if latency is not None:
        doc.update({"latency_instructions": round(latency.instructions),
                    "latency_ms": round(latency.ms, 3), "latency_note": latency.note})
    doc.update({"budget_flash_bytes": board.budget_flash_bytes, "budget_sram_bytes": board.budget_sram_bytes,
                "limit_flash_bytes": board.flash_bytes, "limit_sram_bytes": board.sram_bytes,
                "layers": layers})
    return doc


def over_budget(report: dict) -> list[str]:
    """What exceeds the board's budgets, and by how many bytes."""
    out = []
    for what, used, budget in (("model Flash", report["model_flash_bytes"], report["budget_flash_bytes"]),
                               ("arena SRAM", report["arena_bytes"], report["budget_sram_bytes"])):
        if used > budget:
            out.append(f"{what} {used:,} B is over the {report['board']} budget {budget:,} B "
                       f"by {used - budget:,} B")
    return out


def report_table(report: dict) -> str:
    """The report as a table: per layer, then totals against the board."""
    rows = []
    for r in report["layers"]:
        arena = r["arena"]
        rows.append((r["id"], r["op"], f"a{r['bits_in']}/w{r['bits_w']}", f"{r['params']:,}",
                     f"{r['weight_bytes']:,}", f"{r['channel_bytes']:,}",
                     f"{arena['offset']:,}-{arena['offset'] + arena['bytes']:,}" if arena else "-"))
    foot = [("total", "", "", f"{sum(r['params'] for r in report['layers']):,}",
             f"{report['weights_flash_bytes']:,}", f"{report['channel_data_bytes']:,}",
             f"{report['arena_bytes']:,}")]
    lines = [render(("layer", "op", "bits", "params", "weights B", "channel B", "arena slice"), rows, foot), ""]
    wf, cd = report["weights_flash_bytes"], report["channel_data_bytes"]
    lines.append(f"per-channel data {cd:,} B ({100 * cd / max(1, wf):.1f} % of the packed weights)")
    for what, used, budget, limit in (
            ("model Flash", report["model_flash_bytes"], report["budget_flash_bytes"], report["limit_flash_bytes"]),
            ("arena SRAM ", report["arena_bytes"], report["budget_sram_bytes"], report["limit_sram_bytes"])):
        lines.append(f"{what} {used:>10,} B ({fmt_size(used)}): {100 * used / budget:5.1f} % of the "
                     f"budget {budget:,} B, {100 * used / limit:5.1f} % of {report['board']}'s {fmt_size(limit)}")
    if "latency_instructions" in report:
        lines.append(f"latency     {report['latency_instructions']:>10,} instructions, "
                     f"{report['latency_ms']:,.1f} ms ({report['latency_note']})")
    return "\n".join(lines)
