"""`qetool profile`: what the model really uses on the target, next to the board's physical
limits and the compiler's estimates.

Flash = the ELF's allocated sections in Flash (vectors, text + rodata, exidx, .data's load image).
SRAM = .data + .bss (the arena among them) + the stack high-water mark read from the device (the
linker's stack reservation is not counted as used). Latency: cycles (board) or exact instructions
(emulator), total and per layer, with instructions or cycles per MAC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qetool.compiler.render import model_symbols
from qetool.table import render
from qetool.device.builddir import BuildDir
from qetool.device.protocol import Counter
from qetool.device.session import Result, Session
from qetool.preprocess import sample_pixels


@dataclass(frozen=True)
class ElfSizes:
    """Bytes of an ELF image: Flash (text, rodata, vectors, data load image) and static SRAM."""

    flash_bytes: int
    data_bytes: int
    bss_bytes: int


def elf_sizes(elf: Path) -> ElfSizes:
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    flash = data = bss = 0
    with open(elf, "rb") as f:
        for s in ELFFile(f).iter_sections():
            if not s["sh_flags"] & SH_FLAGS.SHF_ALLOC or s.name == ".stack":
                continue
            if s.name == ".bss":
                bss += s["sh_size"]
            elif s.name == ".data":
                data += s["sh_size"]
                flash += s["sh_size"]
            else:
                flash += s["sh_size"]
    return ElfSizes(flash, data, bss)




def symbol_sizes(elf: Path, names: tuple[str, ...]) -> dict[str, int]:
    """Bytes of each named symbol in the ELF, with the compiler's clones of it (NAME.isra.0,
    NAME.constprop.1); 0 for one it does not have."""
    from elftools.elf.elffile import ELFFile

    out = dict.fromkeys(names, 0)
    with open(elf, "rb") as f:
        for sym in ELFFile(f).get_section_by_name(".symtab").iter_symbols():
            base = sym.name.split(".")[0]
            if base in out:
                out[base] += sym["st_size"]
    return out


def model_code_bytes(elf: Path, name: str) -> int:
    """Bytes of model `name`'s code in the ELF (pack.code_table estimates them): its kernels,
    its functions, its layer table, and libc's memset."""
    return sum(symbol_sizes(elf, (*model_symbols(name), "memset")).values())


def profile(session: Session, elf: Path) -> dict:
    """Measure: ELF sizes, one inference of the sample picture, the stack high-water mark."""
    build: BuildDir = session.build
    board = build.board
    sizes = elf_sizes(elf)
    prog = build.program
    result: Result = session.infer(sample_pixels(prog.picture_size))
    stats = session.device.stats()
    report = build.report
    unit = None if result.count is None else "cycles" if result.counter == Counter.CYCLES else "instructions"
    layers = []
    for i, layer in enumerate(prog.layers):
        count = result.layer_counts[i] if result.layer_counts else None
        macs = layer.macs
        est = report["layers"][i].get("latency_instructions")
        layers.append({"id": layer.id, "op": layer.op, "bits_in": layer.bits_in, "bits_w": layer.bits_w,
                       "macs": macs, unit or "count": count,
                       "per_mac": round(count / macs, 3) if count and macs else None,
                       **({"estimate": est} if est is not None else {})})
    sram = sizes.data_bytes + sizes.bss_bytes + stats.stack_used_bytes
    doc = {
        "board": board.name, "target": "emulator" if session.emulator else "board",
        "elf": str(elf), "model_hash": build.manifest["model_hash"],
        "elf_flash_bytes": sizes.flash_bytes, "data_bytes": sizes.data_bytes,
        "bss_bytes": sizes.bss_bytes, "stack_bytes": stats.stack_used_bytes,
        "stack_reserved_bytes": stats.stack_bytes, "sram_bytes": sram,
        "arena_bytes": report["arena_bytes"],
        "limit_flash_bytes": board.flash_bytes, "limit_sram_bytes": board.sram_bytes,
        "clock_hz": board.clock_hz,
        "estimate_flash_bytes": report["model_flash_bytes"] + board.reserved_flash_bytes,
        "estimate_sram_bytes": report["arena_bytes"] + board.reserved_sram_bytes,
        "model_flash_bytes": report["model_flash_bytes"],
        "model_code_bytes": model_code_bytes(elf, build.name), "estimate_code_bytes": report["code_flash_bytes"],
        "runtime_flash_bytes": sizes.flash_bytes - report["model_flash_bytes"],
        "runtime_sram_bytes": sram - report["arena_bytes"],
        "macs": sum(l["macs"] for l in layers),
        "counter": unit or "none", "estimated": result.counter == Counter.SYSTICK, "layers": layers}
    if "latency_instructions" in report:
        doc.update({"estimate_latency_instructions": report["latency_instructions"],
                    "estimate_latency_ms": report["latency_ms"]})
    if unit:
        doc[unit] = result.count
    if result.counter == Counter.SYSTICK:
        doc["note"] = ("the counting plugin could not be built (no host gcc): instructions are "
                       "a SysTick estimate under -icount, one tick per 40")
    return doc


def over_limits(doc: dict) -> list[str]:
    return [f"{what} {doc[k]:,} B is over the {doc['board']} limit {doc[lim]:,} B"
            for what, k, lim in (("Flash", "elf_flash_bytes", "limit_flash_bytes"),
                                 ("SRAM", "sram_bytes", "limit_sram_bytes")) if doc[k] > doc[lim]]


def profile_table(doc: dict) -> str:
    """The profile as text: memory against limits and estimates, then latency per layer."""
    def pct(a: int, b: int) -> str:
        return f"{100 * a / b:.1f}%"

    mem = [("Flash (ELF)", f"{doc['elf_flash_bytes']:,}", f"{doc['limit_flash_bytes']:,}",
            pct(doc["elf_flash_bytes"], doc["limit_flash_bytes"]), f"{doc['estimate_flash_bytes']:,}"),
           ("SRAM (data+bss+stack)", f"{doc['sram_bytes']:,}", f"{doc['limit_sram_bytes']:,}",
            pct(doc["sram_bytes"], doc["limit_sram_bytes"]), f"{doc['estimate_sram_bytes']:,}"),
           ("  arena", f"{doc['arena_bytes']:,}", "", "", f"{doc['arena_bytes']:,}"),
           ("  stack high-water", f"{doc['stack_bytes']:,}", f"{doc['stack_reserved_bytes']:,}",
            pct(doc["stack_bytes"], doc["stack_reserved_bytes"]), "")]
    out = [f"{doc['board']} ({doc['target']}), model {doc['model_hash']}", "",
           render(("memory", "measured B", "limit B", "used", "estimate B"), mem), "",
           f"model code {doc['model_code_bytes']:,} B (estimate {doc['estimate_code_bytes']:,} B); "
           f"runtime beside the model: Flash {doc['runtime_flash_bytes']:,} B, "
           f"SRAM {doc['runtime_sram_bytes']:,} B"]
    unit = doc["counter"]
    est = "estimate_latency_instructions" in doc and unit == "instructions"
    if unit != "none":
        def vs(e: int | None, m: int) -> tuple[str, ...]:
            return (f"{e:,}", f"{100 * (e / m - 1):+.1f}%" if m else "-") if est else ()

        rows = [(l["id"], l["op"], f"a{l['bits_in']}/w{l['bits_w']}", f"{l['macs']:,}",
                 f"{l[unit]:,}", f"{l['per_mac']:.2f}" if l["per_mac"] is not None else "-",
                 *vs(l.get("estimate"), l[unit])) for l in doc["layers"]]
        total = doc[unit]
        foot = [("total", "", "", f"{doc['macs']:,}", f"{total:,}", f"{total / doc['macs']:.2f}",
                 *vs(doc.get("estimate_latency_instructions"), total))]
        head = f"{unit} (estimate)" if doc["estimated"] else unit
        out += ["", render(("layer", "op", "bits", "MACs", head, "per MAC",
                            *(("model", "error") if est else ())), rows, foot)]
        if unit == "cycles":
            out.append(f"\nlatency {total / doc['clock_hz'] * 1e3:.1f} ms at {doc['clock_hz'] / 1e6:.0f} MHz")
    else:
        out.append("no counter on this target")
    if "note" in doc:
        out.append(doc["note"])
    return "\n".join(out)
