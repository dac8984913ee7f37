"""Pictures and the HTML report (docs/report.md): `score --plot` writes a non-blank PNG or SVG of
the documented size; `report` writes one self-contained page that embeds every figure and
references nothing outside it, with or without a profile, for arch.json and imported builds; a
real browser shows every figure drawn and the summary's figures; bad input is one error line.

The emulator part (a real profile) and the browser part skip where their tools are missing,
except in CI (CI=true), where a skip is a failure."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT
from PIL import Image, ImageStat
from test_host_exact import matrix_archs

from qetool import arch as A
from qetool.compiler.compile import compile_model
from qetool.compiler.pack import model_flash
from qetool.compiler.plan import plan
from qetool.device.boards import load_board
from qetool.device.builddir import BuildDir
from qetool.search.summary import score_report
from qetool.view import data as D
from qetool.view.page import gather

QETOOL = [sys.executable, "-m", "qetool"]
PAPER = str(EXAMPLES / "paper_256k_1m.json")
PERSON = ROOT.parent / "shared" / "models" / "person_detect.tflite"
CI = os.environ.get("CI") == "true"


def qetool(*args):
    return subprocess.run(QETOOL + [str(a) for a in args], capture_output=True, text=True)


def _need(ok: bool, why: str) -> None:
    """Skip with the reason, or fail in CI."""
    if not ok:
        (pytest.fail if CI else pytest.skip)(why)


def _one_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
    return lines[0]


def _drawn(img: Image.Image) -> None:
    """Not blank: over 1 % of the pixels far from white, many colours (text, bars, lines) and
    contrast (a blank figure or a broken-image box has none of these)."""
    rgb = img.convert("RGB")
    assert (np.asarray(rgb).min(axis=2) < 200).mean() > 0.01
    assert len(rgb.getcolors(1 << 24)) > 50
    assert max(ImageStat.Stat(rgb).stddev) > 15


# score --plot


def test_score_plot_png_is_drawn_at_its_size(tmp_path):
    out = tmp_path / "qbr.png"
    r = qetool("score", PAPER, "--board", "stm32f746", "--plot", out)
    assert r.returncode == 0, r.stderr
    assert f"QBR figure -> {out}" in r.stdout and "QE-score" in r.stdout
    img = Image.open(out)
    # docs/report.md: 12 in at 100 dpi wide; 2.5 in per panel + 1.5 in: four panels with the
    # estimated latency (the F746 has a latency calibration)
    assert img.format == "PNG" and img.size == (1200, 1150)
    _drawn(img)
    colours = {c for _, c in img.convert("RGB").getcolors(1 << 24)}
    for bar in ((0x4C, 0x72, 0xB0), (0xDD, 0x84, 0x52), (0x55, 0xA8, 0x68)):  # bits_a, bits_w, memory
        assert bar in colours


def test_score_plot_svg_and_json(tmp_path):
    out = tmp_path / "qbr.svg"
    r = qetool("score", PAPER, "--board", "stm32f412", "--plot", out, "--json")
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # --json stays pure JSON
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg") and root.get("width") == "864pt" and root.get("height") == "828pt"
    n_blocks = len(A.blocks(A.load(PAPER))) + 1
    bars = [e for e in root.iter() if e.tag.endswith("g") and (e.get("id") or "").startswith("patch_")]
    assert len(bars) >= 4 * n_blocks  # bits_a, bits_w, SRAM and Flash bars per block (and the backgrounds)
    assert b"Date" not in out.read_bytes()
    again = tmp_path / "again.svg"
    assert qetool("score", PAPER, "--board", "stm32f412", "--plot", again).returncode == 0
    assert again.read_bytes() == out.read_bytes()  # reproducible: make docs-figures commits it


def test_score_plot_refuses_other_formats_and_writes_nothing(tmp_path):
    out = tmp_path / "qbr.jpg"
    assert ".png or .svg" in _one_error(qetool("score", PAPER, "--plot", out))
    assert not out.exists()
    assert "cannot write /proc/qbr.png" in _one_error(qetool("score", PAPER, "--plot", "/proc/qbr.png"))


def test_qbr_data_adds_up_to_the_model():
    """The figure's bars are the model: Flash per block plus code is model Flash, the largest
    peak is the arena; the arena chart's live totals peak at the arena."""
    arch = A.load(PAPER)
    board = load_board("stm32f746")
    q = D.qbr_of_score(score_report(arch, board), "t")
    assert q.flash_total == model_flash(arch, board.core.cpu).total
    assert max(r.peak_sram_bytes for r in q.rows) == plan(arch).arena_bytes
    assert (q.sram_budget, q.flash_budget) == (board.budget_sram_bytes, board.budget_flash_bytes)


# report


class _Page(HTMLParser):
    """The tags, attributes and text of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _check_page(path: Path, figures: int) -> _Page:
    """Parses; embeds `figures` SVG figures as data: URIs that parse; references nothing else."""
    text = path.read_text()
    p = _Page()
    p.feed(text)
    p.close()
    tags = [t for t, _ in p.tags]
    assert tags[:2] == ["html", "head"] and "body" in tags
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(tags)
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == figures == tags.count("figure")
    for a in imgs:
        src = a["src"]
        assert src.startswith("data:image/svg+xml;base64,") and a.get("alt")
        svg = base64.b64decode(src.split(",", 1)[1])
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg")
        for e in root.iter():  # the SVG's own links stay inside it
            for k, v in e.attrib.items():
                if k.endswith("href"):
                    assert v.startswith("#"), v
    for t, a in p.tags:
        for k, v in a.items():
            if k in ("src", "href", "srcset", "poster", "action", "data"):
                assert v is None or v.startswith(("data:", "#")), (t, k, v)
    assert not re.search(r"url\((?!#)|@import|https?://(?!www\.w3\.org)", text.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""))
    return p


def _words(p: _Page) -> str:
    return " ".join(" ".join(p.text).split())


def test_report_without_a_profile(tmp_path):
    build = tmp_path / "b"
    compile_model(PAPER, load_board("stm32f746"), build)
    out = tmp_path / "report.html"
    r = qetool("report", build, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "not profiled" in r.stdout and f"report -> {out}" in r.stdout
    p = _check_page(out, figures=4)  # QBR, arena, latency (the estimate alone), bits
    words = _words(p)
    rep = json.loads((build / "report.json").read_text())
    assert f"{rep['arena_bytes']:,} B" in words and f"{rep['model_flash_bytes']:,} B" in words
    assert "not profiled" in words and rep["model_hash"] in words
    assert f"{rep['latency_instructions']:,} instructions" in words
    assert words.count("b18.project") >= 1 and "Layers" in words


def test_report_of_an_imported_model_per_node(tmp_path):
    _need(PERSON.is_file(), f"{PERSON} is missing (../shared/models)")
    build = tmp_path / "b"
    assert qetool("compile", PERSON, "--board", "stm32f746", "-o", build).returncode == 0
    r = gather(build)
    rep = BuildDir(build).report
    assert [q.name for q in r.qbr.rows] == [layer["id"] for layer in rep["layers"]]
    assert r.qbr.flash_total == rep["model_flash_bytes"]
    assert max(r.arena.live_bytes) <= rep["arena_bytes"] == r.arena.arena_bytes
    assert r.bits.weights == {8: sum(layer["params"] for layer in rep["layers"])}
    out = tmp_path / "r.html"
    assert qetool("report", build, "-o", out).returncode == 0
    assert "imported .tflite" in _words(_check_page(out, figures=3))


def test_report_bad_input_is_one_line_and_writes_nothing(tmp_path):
    build = tmp_path / "b"
    compile_model(PAPER, load_board("stm32f746"), build)
    out = tmp_path / "r.html"
    assert "no manifest.json" in _one_error(qetool("report", tmp_path / "nothing", "-o", out))
    assert "cannot write" in _one_error(qetool("report", build, "-o", "/proc/r.html"))
    assert "directory" in _one_error(qetool("report", build, "-o", tmp_path))
    bad = tmp_path / "profile.json"
    bad.write_text(json.dumps({"model_hash": "0" * 16}))
    assert "model_hash" in _one_error(qetool("report", build, "-o", out, "--profile", bad))
    bad.write_text("{")
    _one_error(qetool("report", build, "-o", out, "--profile", bad))
    _one_error(qetool("report", build, "-o", out, "--history", bad))
    bad.write_text(json.dumps({"format": "qetool-search-history/1", "board": "x", "seed": 0,
                               "iterations": [0, 5, 3], "best_qe": [1, 2, 3]}))
    assert "increase" in _one_error(qetool("report", build, "-o", out, "--history", bad))
    assert "Pareto" in _one_error(qetool("report", build, "-o", out, "--pareto", bad))
    (build / "lowered.npz").unlink()
    _one_error(qetool("report", build, "-o", out))
    assert not out.exists()


def _profiled_build(tmp: Path) -> Path:
    """A small mixed-width network compiled with --build, profiled in QEMU into profile.json."""
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    _need(not missing, f"{', '.join(missing)} not installed (make test installs them)")
    path = tmp / "small.json"
    A.save(matrix_archs()[2], path)
    build = tmp / "b"
    compile_model(path, load_board("stm32f746"), build, seed=1, force=True, build_firmware=True)
    r = qetool("profile", build, "--emulator", "-o", build / "profile.json")
    assert r.returncode == 0, r.stderr
    return build


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """A report with every figure: a profiled build and a search history."""
    tmp = tmp_path_factory.mktemp("report")
    build = _profiled_build(tmp)
    history, front = tmp / "history.json", tmp / "front.json"
    r = qetool("search", "--board", "stm32f746", "--iterations", 1500, "--population", 16,
               "-o", tmp / "a.json", "--history", history, "--pareto", front)
    assert r.returncode == 0, r.stderr
    out = tmp / "report.html"
    r = qetool("report", build, "-o", out, "--history", history, "--pareto", front)
    assert r.returncode == 0, r.stderr
    return build, out, json.loads((build / "profile.json").read_text()), json.loads(history.read_text())


def test_report_with_a_profile_and_a_history(full_report):
    build, out, prof, hist = full_report
    assert hist["iterations"] == [0, 500, 1000, 1500] and hist["best_qe"] == sorted(hist["best_qe"])
    rep = json.loads((build / "report.json").read_text())  # profile puts the estimate beside each count
    assert [layer["estimate"] for layer in prof["layers"]] == [layer["latency_instructions"] for layer in rep["layers"]]
    assert prof["estimate_latency_instructions"] == rep["latency_instructions"]
    words = _words(_check_page(out, figures=6))
    assert f"{prof['instructions']:,} instructions per inference (emulator, exact)" in words
    assert f"{prof['elf_flash_bytes']:,} B" in words and f"{prof['sram_bytes']:,} B" in words
    assert f"{hist['best_qe'][-1]:.6f}" in words
    r = gather(build)
    arch = BuildDir(build).model.arch
    assert r.qbr.latency_unit == "instructions"
    counts = {layer["id"]: layer["instructions"] for layer in prof["layers"]}
    assert [q.latency for q in r.qbr.rows] == [
        sum(counts[layer.id] for layer in A.layers(arch) if layer.block == b)
        for b in range(len(A.blocks(arch)) + 1)]


def _browser():
    chromium = shutil.which("chromium")
    _need(chromium is not None, "chromium is not installed (make test installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed (pip install -e '.[test]')")
    return chromium, sync_playwright


def test_a_browser_shows_every_figure_and_the_summary(full_report):
    """Headless Chromium renders the page as a person sees it: every figure decoded and drawn
    in its region of a full-page screenshot, the summary's figures in the page's text."""
    chromium, sync_playwright = _browser()
    build, out, prof, _ = full_report
    rep = json.loads((build / "report.json").read_text())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            requests: list[str] = []
            page.on("request", lambda req: requests.append(req.url))
            page.goto(out.resolve().as_uri())
            shot = Image.open(io.BytesIO(page.screenshot(full_page=True)))
            figures = page.evaluate("""[...document.images].map(i => {
                const r = i.getBoundingClientRect();
                return {alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                        x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; })""")
            text = " ".join(page.inner_text("body").split())
        finally:
            browser.close()
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert len(figures) == 6
    for f in figures:
        assert f["ok"], f"{f['alt']}: a broken image"
        assert f["w"] > 1000 and f["h"] > 200, f
        _drawn(shot.crop((int(f["x"]), int(f["y"]), int(f["x"] + f["w"]), int(f["y"] + f["h"]))))
    for figure in (f"{rep['arena_bytes']:,} B", f"{rep['model_flash_bytes']:,} B", "stm32f746",
                   f"{prof['instructions']:,} instructions per inference"):
        assert figure in text


def test_matplotlib_is_imported_by_plots_alone():
    """Only qetool/view/plots.py imports matplotlib, and the CLI, the report's data and page
    modules load without it (qetool --help stays fast: test_boards)."""
    importers = [p.relative_to(ROOT).as_posix() for p in (ROOT / "qetool").rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+matplotlib", p.read_text(), re.M)]
    assert importers == ["qetool/view/plots.py"]
    code = ("import sys; import qetool.cli, qetool.view.page, qetool.view.data; "
            "assert 'matplotlib' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_readme_figure_is_what_make_figures_draws(tmp_path):
    """docs/qbr_paper_256k_1m.png is regenerated by `make figures`, not drawn by hand: the
    same command draws the same bytes (matplotlib is pinned); after a change to the network's
    costs, run `make figures`."""
    out = tmp_path / "qbr.png"
    r = qetool("score", PAPER, "--board", "stm32f412", "--plot", out)
    assert r.returncode == 0, r.stderr
    make = (ROOT / "Makefile").read_text()
    assert "--board stm32f412 --plot docs/qbr_paper_256k_1m.png" in make
    assert out.read_bytes() == (ROOT / "docs" / "qbr_paper_256k_1m.png").read_bytes(), "run make figures"
