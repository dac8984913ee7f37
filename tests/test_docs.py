"""docs/ is the design: its constants are the code's, the paths it names exist, and nothing in
the project points outside the repository for its design."""

import re
import subprocess

from conftest import ROOT

from qetool import arch, checkpoint
from qetool.compiler import kernels, lower, pack, render
from qetool.device import protocol as P

DOCS = ROOT / "docs"


def _doc(name: str) -> str:
    return (DOCS / name).read_text()


def test_format_tags_are_the_codes():
    for page, tag in (("network.md", arch.FORMAT), ("formats.md", checkpoint.FORMAT),
                      ("formats.md", render.MANIFEST_FORMAT), ("formats.md", lower.LOWERED_FORMAT),
                      ("formats.md", render.BOARD_FILE)):
        assert f"`{tag}`" in _doc(page), (page, tag)
    assert pack.CODE_SIZES.name in _doc("memory.md")


def test_protocol_page_is_the_protocol():
    text = _doc("protocol.md")
    assert f'magic `"{P.MAGIC.decode()}"`' in text
    assert f"at most {P.MAX_PAYLOAD}" in text and f"Protocol version {P.VERSION}." in text
    assert f"more than {P.FRAME_TIMEOUT_MS} ms late" in text
    for t in P.Type:
        assert f"{t.name} {t.value:#04x}" in text
    for e in P.Error:
        assert f"{e.name} {e.value}" in text
    for c in P.Counter:
        assert f"{c.name} {c.value}" in text
    assert f"type | {P.RESPONSE:#x}" in text and f"type {P.ERROR_TYPE:#X}".replace("0X", "0x") in text


def test_memory_page_numbers_are_the_codes():
    text = _doc("memory.md")
    assert f"{pack.CHANNEL_BYTES} bytes a channel" in text
    assert f"plus {pack.RESIDUAL_CHANNEL_BYTES} a channel on a residual project" in text
    assert f"T = {kernels.CONV1X1_TILE} pixels" in text
    assert f"{pack.code_table('cortex-m7')['layer']} bytes per" in text


def test_paths_named_in_docs_and_readme_exist():
    named = set()
    for page in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        named |= set(re.findall(r"`((?:qetool|templates|firmware|boards|tools|tests|bench|examples|docs)/[\w./]+?)`",
                                page.read_text()))
    assert len(named) > 20
    missing = [p for p in named if "NAME" not in p and "<" not in p and not (ROOT / p.rstrip("/")).exists()]
    assert not missing, missing


def test_nothing_points_outside_for_the_design():
    r = subprocess.run(["grep", "-rn", "-e", "shared/notes", "-e", "contracts section",
                        "qetool", "templates", "firmware", "README.md", "docs", "boards", "tests", "tools"],
                       cwd=ROOT, capture_output=True, text=True)
    hits = [line for line in r.stdout.splitlines() if not line.startswith("tests/test_docs.py")]
    assert not hits, hits
