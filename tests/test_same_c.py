"""qetool's own networks compile to the same C as before the graph IR and the TFLite front end
came in: the digests below were taken from the tree at commit baee32b (the last one before
them) with the code of this test, comment lines aside. A kernel or template change that alters
the C of arch.json builds on purpose updates them, and says so in its commit."""

import hashlib
from pathlib import Path

import pytest

from qetool.compiler.compile import compile_model
from qetool.device.boards import load_board

ROOT = Path(__file__).resolve().parent.parent
BEFORE = {"paper_256k_1m": "e1da75f35af31dfbf6c1dda592e61a7c",
          "searched_f746": "5b992af51cc731b5c6f699f69794fb9d"}


def source_digest(build: Path) -> str:
    """SHA-256 (32 hex digits) over build/src, file by file, without comment lines."""
    h = hashlib.sha256()
    for f in sorted(p for p in (build / "src").rglob("*") if p.is_file()):
        text = "\n".join(line for line in f.read_text().splitlines()
                         if not line.lstrip().startswith(("/*", "*", "//")))
        h.update(str(f.relative_to(build / "src")).encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()[:32]


@pytest.mark.parametrize("example", sorted(BEFORE))
def test_arch_builds_render_the_c_they_rendered_before(example, tmp_path):
    compile_model(ROOT / "examples" / f"{example}.json", load_board("stm32f746"), tmp_path / "b", force=True)
    assert source_digest(tmp_path / "b") == BEFORE[example]
