"""The figures (docs/report.md), drawn with matplotlib's Agg renderer (no display, no pyplot
state). This is the only module that imports matplotlib, and only `qetool score --plot` and
`qetool report` import it, so that every other command starts without it.

Sizes: WIDTH_IN inches wide at DPI dots per inch (PNG: 1200 px wide); the QBR figure is
QBR_PANEL_IN per panel plus QBR_MARGIN_IN tall (three panels, four with latency). Outputs are
reproducible: SVG ids are salted with a constant and no date or software version is written.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams.update({"svg.hashsalt": "qetool", "font.size": 9, "axes.titlesize": 10,
                            "axes.spines.top": False, "axes.spines.right": False})

from matplotlib.figure import Figure  # noqa: E402 (after the backend is chosen)
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from qetool.errors import QetoolError  # noqa: E402
from qetool.fileio import write_bytes  # noqa: E402
from qetool.search.history import SearchHistory  # noqa: E402
from qetool.search.summary import ScoreReport  # noqa: E402
from qetool.view.data import ArenaData, BitsData, LatencyData, QbrData, qbr_of_score  # noqa: E402

WIDTH_IN = 12.0
DPI = 100
QBR_PANEL_IN = 2.5
QBR_MARGIN_IN = 1.5
FORMATS = {".png": "png", ".svg": "svg"}
_BITS_A, _BITS_W, _MEM, _BUDGET, _TOTAL, _LAT = ("#4c72b0", "#dd8452", "#55a868", "#c44e52",
                                                 "#8172b3", "#937860")


def _kb(n: int | None) -> float:
    """Bytes -> KB (1024 B) for an axis."""
    return (n or 0) / 1024


def image_format(path: str | Path) -> str:
    """'png' or 'svg' from the file name's extension; anything else is a user error."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise QetoolError(f"{path}: a picture is written as .png or .svg (by its extension)")
    return fmt


def to_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes, without dates or version strings."""
    buf = io.BytesIO()
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
    return buf.getvalue()


def save(fig: Figure, path: str | Path) -> None:
    """Write the figure to `path` (atomically), PNG or SVG by its extension."""
    write_bytes(path, to_bytes(fig, image_format(path)))


def plot_score(report: ScoreReport, title: str, path: str | Path) -> None:
    """`qetool score --plot`: the QBR figure of a score report to `path` (.png or .svg)."""
    image_format(path)
    save(qbr_figure(qbr_of_score(report, title)), path)


def _budget_line(ax, value: int | None, label: str) -> None:
    """A dashed line at `value` bytes on an axis in KB."""
    if value is not None:
        ax.axhline(_kb(value), color=_BUDGET, linestyle="--", linewidth=1.2, label=label)


def qbr_figure(d: QbrData) -> Figure:
    """The paper's QBR figure: per block, bits_a and bits_w (bars); peak SRAM against the SRAM
    budget; Flash per block with the running total (starting at the kernel code) against the
    Flash budget; per-block latency when the rows carry it."""
    n = len(d.rows)
    panels = 4 if d.latency_unit else 3
    fig = Figure(figsize=(WIDTH_IN, QBR_MARGIN_IN + QBR_PANEL_IN * panels), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True)
    x = list(range(n))
    names = [r.name for r in d.rows]
    fig.suptitle(d.title)

    ax = axes[0]
    ax.bar([i - 0.2 for i in x], [r.bits_a for r in d.rows], 0.4, color=_BITS_A, label="bits_a")
    ax.bar([i + 0.2 for i in x], [r.bits_w for r in d.rows], 0.4, color=_BITS_W, label="bits_w")
    ax.set_ylim(0, 10.5)
    ax.set_yticks(range(0, 9, 2))
    ax.set_ylabel("bits")
    ax.legend(loc="upper left", ncols=2, frameon=False)
    ax.set_title("bit widths per block")

    ax = axes[1]
    ax.bar(x, [_kb(r.peak_sram_bytes) for r in d.rows], 0.7, color=_MEM, label="peak SRAM")
    _budget_line(ax, d.sram_budget, f"SRAM budget {d.sram_budget or 0:,} B")
    ax.set_ylabel("KB")
    ax.set_ylim(0, _kb(max([r.peak_sram_bytes for r in d.rows] + [d.sram_budget or 0])) * 1.25)
    ax.legend(loc="upper right", frameon=False)
    ax.set_title("peak SRAM per block (largest live arena total over its steps)")

    ax = axes[2]
    ax.bar(x, [_kb(r.flash_bytes) for r in d.rows], 0.7, color=_MEM, label="Flash of the block")
    ax.set_ylim(0, _kb(max(r.flash_bytes for r in d.rows)) * 1.4)
    ax.set_ylabel("KB per block")
    total = ax.twinx()
    running, acc = [], d.code_bytes
    for r in d.rows:
        acc += r.flash_bytes
        running.append(acc)
    total.plot(x, [_kb(v) for v in running], color=_TOTAL, marker="o", markersize=3,
               label=f"running total (from {d.code_bytes:,} B of kernel code)")
    _budget_line(total, d.flash_budget, f"Flash budget {d.flash_budget or 0:,} B")
    total.set_ylim(0, _kb(max(running + [d.flash_budget or 0])) * 1.25)
    total.set_ylabel("KB running total")
    total.spines["right"].set_visible(True)
    handles = ax.get_legend_handles_labels()[0] + total.get_legend_handles_labels()[0]
    total.legend(handles=handles, loc="upper left", frameon=False)
    ax.set_title("Flash per block (packed weights + per-channel data) and the model's running total")

    if d.latency_unit:
        ax = axes[3]
        ax.bar(x, [r.latency or 0 for r in d.rows], 0.7, color=_LAT)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:,.1f}"))
        ax.set_ylabel(f"M {d.latency_unit}")
        ax.set_title(f"latency per block ({d.latency_kind} {d.latency_unit})")
    axes[-1].set_xticks(x, names, rotation=90)
    axes[-1].set_xlim(-0.6, n - 0.4)
    return fig


def arena_figure(d: ArenaData, title: str) -> Figure:
    """The memory plan as a Gantt chart: each buffer's byte range over the steps it is live
    (scratch hatched), the arena's size and budget, the peak step marked; below, the live total
    per step."""
    n = len(d.steps)
    fig = Figure(figsize=(WIDTH_IN, 8.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    fig.suptitle(title)
    colors = matplotlib.colormaps["tab20"].colors
    k = 0
    for b in d.bars:
        if b.scratch:
            style = dict(facecolor="#d9d9d9", edgecolor="#7f7f7f", hatch="///", linewidth=0.4)
        else:
            style = dict(facecolor=colors[k % len(colors)], edgecolor="white", linewidth=0.6)
            k += 1
        top.bar(b.first - 0.5, _kb(b.size), b.last - b.first + 1, _kb(b.offset), align="edge", **style)
        wide = (b.last - b.first + 1) / n * WIDTH_IN * DPI >= 6 * len(b.label)  # px for its name
        if not b.scratch and b.size >= 0.08 * d.arena_bytes and wide:
            top.text((b.first + b.last) / 2, _kb(b.offset + b.size / 2), b.label, ha="center",
                     va="center", fontsize=7, clip_on=True)
    peak = d.peak_step
    for ax in (top, bottom):
        ax.axvspan(peak - 0.5, peak + 0.5, color=_BUDGET, alpha=0.12, linewidth=0)
    top.axhline(_kb(d.arena_bytes), color="black", linewidth=1, label=f"arena {d.arena_bytes:,} B")
    _budget_line(top, d.budget_bytes, f"SRAM budget {d.budget_bytes or 0:,} B")
    top.set_ylim(0, _kb(max(d.arena_bytes, d.budget_bytes or 0)) * 1.15)
    top.set_ylabel("arena offset (KB)")
    top.legend(handles=[*top.get_legend_handles_labels()[0],
                        Patch(facecolor="#d9d9d9", edgecolor="#7f7f7f", hatch="///",
                              label="kernel scratch")], loc="upper right", frameon=False, ncols=3)
    top.set_title(f"which buffer holds which bytes at each step; peak at step {peak} "
                  f"({d.steps[peak]}): {d.live_bytes[peak]:,} B live")
    live = [_kb(v) for v in d.live_bytes]
    bottom.step(range(n), live, where="mid", color=_MEM)
    bottom.fill_between(range(n), live, step="mid", color=_MEM, alpha=0.3)
    _budget_line(bottom, d.budget_bytes, "SRAM budget")
    bottom.set_ylabel("live (KB)")
    bottom.set_ylim(0, _kb(max(max(d.live_bytes), d.budget_bytes or 0)) * 1.15)
    labels = list(d.steps) if n <= 80 else [s if i % (n // 60 + 1) == 0 else "" for i, s in enumerate(d.steps)]
    bottom.set_xticks(range(n), labels, rotation=90, fontsize=7)
    bottom.set_xlim(-0.6, n - 0.4)
    return fig


def latency_figure(d: LatencyData, title: str) -> Figure:
    """Per layer the measured count (bars, coloured by op) and the latency model's estimate
    (hollow bars beside them), with the count per MAC (dots, right axis)."""
    n = len(d.rows)
    fig = Figure(figsize=(WIDTH_IN, 4.5), layout="constrained")
    ax = fig.subplots()
    fig.suptitle(title)
    ops = sorted({r.op for r in d.rows})
    colors = matplotlib.colormaps["tab10"].colors
    color = {op: colors[i % len(colors)] for i, op in enumerate(ops)}
    both = d.unit is not None and d.has_estimate
    width = 0.4 if both else 0.75
    handles = [Patch(color=color[op], label=op) for op in ops]
    if d.unit is not None:
        ax.bar([i - (0.2 if both else 0) for i in range(n)], [r.measured or 0 for r in d.rows], width,
               color=[color[r.op] for r in d.rows])
    if d.has_estimate:
        ax.bar([i + (0.2 if both else 0) for i in range(n)], [r.estimated for r in d.rows], width,
               facecolor="none" if both else "#bbbbbb", edgecolor="black", linewidth=0.6)
        handles.append(Patch(facecolor="none" if both else "#bbbbbb", edgecolor="black",
                             label="estimate (instructions)"))
    unit = d.unit or "instructions (estimate)"
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:,.1f}"))
    ax.set_ylabel(f"M {unit}")
    per = ax.twinx()
    pts = [(i, (r.measured if d.unit else r.estimated) / r.macs) for i, r in enumerate(d.rows)
           if r.macs and (r.measured if d.unit else r.estimated)]
    per.plot([p[0] for p in pts], [p[1] for p in pts], "o", color="black", markersize=3)
    per.set_ylabel(f"{unit} per MAC")
    per.set_ylim(0, max([p[1] for p in pts] + [1.0]) * 1.1)
    per.spines["right"].set_visible(True)
    ax.legend(handles=handles, loc="upper right", frameon=False, ncols=len(handles))
    labels = [r.name for r in d.rows] if n <= 80 else [r.name if i % (n // 60 + 1) == 0 else ""
                                                      for i, r in enumerate(d.rows)]
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, n - 0.4)
    return fig


def bits_figure(d: BitsData, title: str) -> Figure:
    """Share of the weights and of the activation values at each bit width."""
    fig = Figure(figsize=(WIDTH_IN, 3.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    fig.suptitle(title)
    for ax, counts, what, color in ((axes[0], d.weights, "weights", _BITS_W),
                                    (axes[1], d.activations, "activation values", _BITS_A)):
        whole = sum(counts.values()) or 1
        widths = list(range(2, 9))
        share = [100 * counts.get(b, 0) / whole for b in widths]
        bars = ax.bar(widths, share, 0.7, color=color)
        ax.bar_label(bars, [f"{counts[b]:,}" if counts.get(b) else "" for b in widths], fontsize=7)
        ax.set_xticks(widths, [f"{b}-bit" for b in widths])
        ax.set_title(f"{what}: {whole:,}")
        ax.set_ylim(0, 112)
    axes[0].set_ylabel("% of all")
    return fig


def history_figure(h: SearchHistory, title: str) -> Figure:
    """The best QE-score over the search's iterations."""
    fig = Figure(figsize=(WIDTH_IN, 3.5), layout="constrained")
    ax = fig.subplots()
    fig.suptitle(title)
    ax.step(h.iterations, h.best_qe, where="post", color=_BITS_A)
    ax.xaxis.set_major_locator(MaxNLocator(10, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("iterations")
    ax.set_ylabel("best QE-score")
    ax.grid(alpha=0.3)
    return fig


def pareto_figure(points: list[tuple[float, float]], reference: tuple[float, float] | None,
                  title: str) -> Figure:
    """QE-score against latency in ms: a search's Pareto front (a line of points) and a
    reference network (a star)."""
    fig = Figure(figsize=(WIDTH_IN, 5.0), layout="constrained")
    ax = fig.subplots()
    fig.suptitle(title)
    ax.step([p[0] for p in points], [p[1] for p in points], where="post", color=_BITS_A, marker="o",
            markersize=4, label="searched networks (Pareto front)")
    if reference is not None:
        ax.plot(*reference, marker="*", markersize=14, color=_BUDGET, linestyle="none",
                label="the paper's Table 1 network")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("latency per picture (ms, estimate)")
    ax.set_ylabel("QE-score")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    return fig
