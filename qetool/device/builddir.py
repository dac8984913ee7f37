"""Reading build/ (docs/formats.md): every command after compile starts here, and takes the
board from the manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from qetool.compiler.lower import LoweredModel
from qetool.compiler.render import BOARD_FILE, MANIFEST_FORMAT
from qetool.errors import QetoolError
from qetool.device.boards import Board, load_board, load_board_file


@dataclass
class BuildDir:
    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not (self.path / "manifest.json").is_file():
            raise QetoolError(f"{self.path}: no manifest.json (run `qetool compile ... -o {self.path}`)")
        if self.manifest.get("format") != MANIFEST_FORMAT:
            raise QetoolError(f"{self.path}/manifest.json: not a {MANIFEST_FORMAT} build")

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    @cached_property
    def report(self) -> dict:
        return json.loads((self.path / "report.json").read_text())

    @cached_property
    def model(self) -> LoweredModel:
        return LoweredModel.load(self.path / "lowered.npz")

    @cached_property
    def board(self) -> Board:
        board_file = self.manifest.get("board_file")
        if board_file is None:
            return load_board(self.manifest["board"])
        if board_file != BOARD_FILE:
            raise QetoolError(f"{self.path}/manifest.json: board_file: {board_file!r} is not {BOARD_FILE!r}")
        return load_board_file(self.path / BOARD_FILE)

    @property
    def input_bytes(self) -> int:
        return self.manifest["input"]["bytes"]

    def elf(self, name: str) -> Path:
        """build/<name>.elf, or a clear error telling how to build it."""
        path = self.path / f"{name}.elf"
        if not path.is_file():
            raise QetoolError(f"{self.path}: no {name}.elf (compile with --build)")
        return path
