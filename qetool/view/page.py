"""`qetool report BUILD -o report.html`: one self-contained page per build (docs/report.md).

The page holds a summary (board, model, Flash and SRAM against budgets and limits, latency),
the QBR figure, the arena over time, per-layer latency, the bits histogram, a search's history
when given, and the per-layer table. Every figure is an SVG inside a data: URI; the style sheet is
inline; nothing is loaded from anywhere else (no script, font, link or remote image).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, replace
from pathlib import Path

from qetool import arch as A
from qetool.device.builddir import BuildDir
from qetool.fileio import read_json, write_text
from qetool.search.history import SearchHistory, load_history, load_pareto
from qetool.search.latency import per_block
from qetool.search.summary import score_report
from qetool.table import is_number, render
from qetool.units import fmt_size
from qetool.view import data as D

PROFILE_FILE = "profile.json"
"""The profile `report` reads from the build folder when --profile is not given."""

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1240px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 32px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { padding: 3px 10px; border-bottom: 1px solid #e3e3e3; text-align: right; }
td:first-child, th:first-child, .t { text-align: left; }
th { background: #f3f3f3; } tfoot td { font-weight: 600; border-top: 2px solid #999; }
figure { margin: 12px 0; } figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: 13px; }
.over { color: #b00020; font-weight: 600; }
"""


@dataclass(frozen=True)
class Figures:
    """The page's figures as SVG bytes (None: nothing to draw)."""

    qbr: bytes
    arena: bytes
    bits: bytes
    latency: bytes | None
    history: bytes | None
    pareto: bytes | None


@dataclass(frozen=True)
class ReportInputs:
    """Everything the page shows, gathered from a build folder and the optional files."""

    build: BuildDir
    qbr: D.QbrData
    arena: D.ArenaData
    latency: D.LatencyData
    bits: D.BitsData
    measured: D.Profiled | None
    history: SearchHistory | None
    pareto: list[tuple[float, float]] | None


def gather(build_dir: str | Path, profile: str | Path | None = None,
           history: str | Path | None = None, pareto: str | Path | None = None) -> ReportInputs:
    """Read and check the build, its profile (`profile`, else BUILD/profile.json when present),
    a search's history and Pareto front."""
    build = BuildDir(build_dir)
    prog, board, rep = build.program, build.board, build.report
    if profile is None and (build.path / PROFILE_FILE).is_file():
        profile = build.path / PROFILE_FILE
    measured = D.load_profile(read_json(profile), str(profile), prog) if profile else None
    counts = measured.counts if measured and measured.unit else None
    arena = D.arena_of_plan([n.name for n in prog.graph.nodes], prog.plan, board.budget_sram_bytes)
    if build.imported:
        rows = tuple(D.QbrRow(r["id"], r["bits_out"], r["bits_w"], r["bytes"], arena.live_bytes[i],
                              counts[r["id"]] if counts else None)
                     for i, r in enumerate(rep["layers"]))
        qbr = D.QbrData("per node (an imported model)", rows, rep["code_flash_bytes"],
                        board.budget_sram_bytes, board.budget_flash_bytes,
                        measured.unit if counts else None, "measured")
    else:
        arch = build.model.arch
        qbr = D.qbr_of_score(score_report(arch, board), "per block")
        if counts:
            qbr = D.QbrData(qbr.title, tuple(
                D.QbrRow(r.name, r.bits_a, r.bits_w, r.flash_bytes, r.peak_sram_bytes, t)
                for r, t in zip(qbr.rows, per_block(arch, [counts[layer.id] for layer in A.layers(arch)]))),
                qbr.code_bytes, qbr.sram_budget, qbr.flash_budget, measured.unit, "measured")
    latency = D.LatencyData(tuple(D.LatencyRow(l.id, l.op, l.macs, counts[l.id] if counts else None,
                                               r.get("latency_instructions"))
                                  for l, r in zip(prog.layers, rep["layers"])),
                            measured.unit if counts else None, board.clock_hz)
    hist = load_history(read_json(history), str(history)) if history else None
    front = load_pareto(read_json(pareto), str(pareto)) if pareto else None
    return ReportInputs(build, qbr, arena, latency, D.bits_of_program(prog), measured, hist, front)


def draw(r: ReportInputs) -> Figures:
    """The figures as SVG (matplotlib is imported here, not before)."""
    from qetool.view import plots

    def svg(fig) -> bytes:
        return plots.to_bytes(fig, "svg")

    name = r.build.name
    return Figures(
        qbr=svg(plots.qbr_figure(replace(r.qbr, title=f"{name}: QBR {r.qbr.title} on {r.build.board.name}"))),
        arena=svg(plots.arena_figure(r.arena, f"{name}: the arena over the plan's steps")),
        bits=svg(plots.bits_figure(r.bits, f"{name}: bit widths")),
        latency=svg(plots.latency_figure(r.latency, f"{name}: latency per layer")) if (
            r.latency.unit or r.latency.has_estimate) else None,
        history=svg(plots.history_figure(r.history, f"search on {r.history.board}, seed "
                                         f"{r.history.seed}")) if r.history else None,
        pareto=svg(plots.pareto_figure(r.pareto, None, "the search's QE/latency Pareto front"))
        if r.pareto else None)


def _esc(v: object) -> str:
    return html.escape(str(v))


def _figure(svg: bytes, alt: str, caption: str) -> str:
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    return (f'<figure><img src="{uri}" alt="{_esc(alt)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _cells(row: list[object]) -> str:
    """Table cells: numbers right-aligned, text left-aligned (class t)."""
    return "".join(f"<td>{_esc(c)}</td>" if is_number(str(c)) else f'<td class="t">{_esc(c)}</td>'
                   for c in row)


def _table(headers: list[str], rows: list[list[object]], foot: list[object] | None = None) -> str:
    """An HTML table; each header is aligned as the first row's cell below it."""
    first = rows[0] if rows else headers
    head = "".join(f"<th>{_esc(h)}</th>" if is_number(str(c)) else f'<th class="t">{_esc(h)}</th>'
                   for h, c in zip(headers, first))
    body = "".join(f"<tr>{_cells(row)}</tr>" for row in rows)
    tail = f"<tfoot><tr>{_cells(foot)}</tr></tfoot>" if foot else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>{tail}</table>"


def _use(used: int, budget: int | None, limit: int) -> list[str]:
    """Used bytes, against the budget (None: the limit only) and the physical limit."""
    def share(of: int) -> str:
        return f"{100 * used / of:.1f} %" + (" OVER" if used > of else "")

    return [f"{used:,} B ({fmt_size(used)})", f"{budget:,} B" if budget else "",
            share(budget) if budget else "", f"{limit:,} B", share(limit)]


def estimate_text(rep: dict) -> str:
    """The latency model's estimate for the summary."""
    if "latency_instructions" not in rep:
        return "not available: no latency calibration for this board's core (qetool calibrate)"
    return (f"{rep['latency_instructions']:,} instructions, {rep['latency_ms']:,.1f} ms "
            f"({rep['latency_note']})")


def measured_text(m: D.Profiled | None, clock_hz: int) -> str:
    """The measured latency of one inference, for the summary."""
    if m is None:
        return "not profiled (qetool profile BUILD --emulator -o BUILD/profile.json)"
    if m.unit is None:
        return f"no counter on the {m.target}"
    kind = "SysTick estimate" if m.estimated else "exact" if m.unit == "instructions" else "DWT"
    text = f"{m.total:,} {m.unit} per inference ({m.target}, {kind})"
    if m.unit == "cycles":
        text += f" = {1e3 * m.total / clock_hz:,.1f} ms at {clock_hz / 1e6:.0f} MHz"
    return text


def summary_rows(r: ReportInputs) -> list[list[str]]:
    """The summary table's rows: what, then values."""
    rep, b = r.build.report, r.build.board
    return [["board", f"{b.name}: {b.description}"],
            ["model", f"{r.build.name}, hash {rep['model_hash']}, "
                      f"{'imported .tflite' if r.build.imported else 'arch.json'}, "
                      f"{len(r.latency.rows)} layers, {sum(l.macs for l in r.latency.rows):,} MACs"],
            ["latency, estimated", estimate_text(rep)],
            ["latency, measured", measured_text(r.measured, b.clock_hz)]]


def memory_rows(r: ReportInputs) -> list[list[str]]:
    rep, b, m = r.build.report, r.build.board, r.measured
    rows = [["model Flash (estimate)", *_use(rep["model_flash_bytes"], rep["budget_flash_bytes"],
                                              rep["limit_flash_bytes"])],
            ["arena SRAM", *_use(rep["arena_bytes"], rep["budget_sram_bytes"], rep["limit_sram_bytes"])]]
    if m is not None:
        rows += [["ELF Flash (measured)", *_use(m.elf_flash_bytes, None, b.flash_bytes)],
                 ["SRAM: data + bss + stack (measured)", *_use(m.sram_bytes, None, b.sram_bytes)]]
    return rows


def layer_rows(r: ReportInputs) -> list[list[object]]:
    out = []
    for row, lat in zip(r.build.report["layers"], r.latency.rows):
        a = row["arena"]
        out.append([row["id"], row["op"], f"a{row['bits_in']}/w{row['bits_w']}", f"{row['params']:,}",
                    f"{row['weight_bytes']:,}", f"{row['channel_bytes']:,}",
                    f"{a['offset']:,}-{a['offset'] + a['bytes']:,}" if a else "-",
                    f"{row['scratch_bytes']:,}", f"{lat.macs:,}",
                    f"{lat.measured:,}" if lat.measured is not None else "-",
                    f"{lat.measured / lat.macs:.2f}" if lat.measured and lat.macs else "-"])
    return out


def page(r: ReportInputs, figs: Figures) -> str:
    """The report as one HTML document."""
    rep = r.build.report
    lat = r.latency
    unit = lat.unit or "count"
    parts = [f"<h1>{_esc(r.build.name)} on {_esc(r.build.board.name)}</h1>",
             f'<p class="note">qetool report of {_esc(r.build.path)}</p>',
             "<h2>Summary</h2>", _table(["", ""], summary_rows(r)),
             "<h2>Memory</h2>",
             _table(["", "used", "budget", "of budget", "limit", "of limit"], memory_rows(r)),
             "<h2>QBR: bits, SRAM and Flash per block</h2>",
             _figure(figs.qbr, "QBR figure",
                     "Bars: bit widths, peak SRAM (largest live arena total over the steps), Flash; "
                     "dashed: the board's budgets" + (f"; last panel: {r.qbr.latency_kind} latency"
                                                      if r.qbr.latency_unit else "")),
             "<h2>The arena over time</h2>",
             _figure(figs.arena, "memory plan Gantt chart",
                     f"Arena {rep['arena_bytes']:,} B. Shaded: the peak step "
                     f"({r.arena.steps[r.arena.peak_step]}, {r.arena.live_bytes[r.arena.peak_step]:,} B live)."),
             "<h2>Latency per layer</h2>"]
    if figs.latency is not None:
        parts.append(_figure(figs.latency, "latency per layer",
                             "Bars: measured per layer where profiled, the latency model's estimate "
                             f"beside it; dots: per MAC. Measured: {measured_text(r.measured, lat.clock_hz)}. "
                             f"Estimated: {estimate_text(rep)}."))
    else:
        parts.append(f'<p class="note">Measured: {_esc(measured_text(r.measured, lat.clock_hz))}. '
                     f"Estimated: {_esc(estimate_text(rep))}.</p>")
    parts += ["<h2>Bit widths</h2>",
              _figure(figs.bits, "bits histogram", "Share of the weights and of the activation values "
                      "at each width; the labels are counts.")]
    if figs.history is not None or figs.pareto is not None:
        parts.append("<h2>Search</h2>")
    if figs.history is not None:
        parts.append(_figure(figs.history, "search history",
                             f"Best QE-score over {r.history.iterations[-1]:,} iterations: "
                             f"{r.history.best_qe[-1]:.6f}."))
    if figs.pareto is not None:
        parts.append(_figure(figs.pareto, "Pareto front",
                             f"The final population's {len(r.pareto)} networks that no other beats on "
                             "both QE-score and estimated latency."))
    total_params = sum(row["params"] for row in rep["layers"])
    parts += ["<h2>Layers</h2>",
              _table(["layer", "op", "bits", "params", "weights B", "channel B", "arena slice",
                      "scratch B", "MACs", unit, "per MAC"], layer_rows(r),
                     ["total", "", "", f"{total_params:,}", f"{rep['weights_flash_bytes']:,}",
                      f"{rep['channel_data_bytes']:,}", f"{rep['arena_bytes']:,}", "",
                      f"{sum(l.macs for l in lat.rows):,}",
                      f"{sum(l.measured for l in lat.rows):,}" if lat.unit else "-", ""])]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_esc(r.build.name)} on {_esc(r.build.board.name)}: qetool report</title>"
            f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write_report(build_dir: str | Path, out: str | Path, profile: str | Path | None = None,
                 history: str | Path | None = None, pareto: str | Path | None = None) -> ReportInputs:
    """Gather, draw and write the page to `out` (atomically). Returns what it showed."""
    r = gather(build_dir, profile, history, pareto)
    write_text(out, page(r, draw(r)))
    return r


def summary_text(r: ReportInputs) -> str:
    """The summary and memory tables as text (what `qetool report` prints)."""
    lines = [render(("", ""), summary_rows(r)), "",
             render(("", "used", "budget", "of budget", "limit", "of limit"), memory_rows(r))]
    return "\n".join(lines)
