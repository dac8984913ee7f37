"""Reading build/ (docs/formats.md): every command after compile starts here, and takes the
board from the manifest.

Nothing in build/ is trusted for what can be derived: the lowered model must give the manifest's
model hash, the manifest must be the one compile writes for that model, and the plan and the
report are computed again from the model (report.json is for people and tools, not an input).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable
from pathlib import Path

from qetool import fileio
from qetool.checkpoint import check_class_names
from qetool.compiler.compile import build_report
from qetool.compiler.compile_graph import MODEL_FILE, CompiledGraph, compile_graph, graph_manifest
from qetool.compiler.lower import LoweredModel
from qetool.compiler.plan import Plan, plan
from qetool.compiler.program import Program, arch_program
from qetool.compiler.render import BOARD_FILE, MANIFEST_FORMAT, check_name, manifest
from qetool.device.boards import Board, load_board, load_board_file
from qetool.errors import QetoolError
from qetool.fileio import read_bytes


@dataclass
class BuildDir:
    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not (self.path / "manifest.json").is_file():
            raise QetoolError(f"{self.path}: no manifest.json (run `qetool compile ... -o {self.path}`)")
        doc = self.manifest
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise QetoolError(f"{self.path}/manifest.json: not a {MANIFEST_FORMAT} build")
        for key in ("board", "model_hash"):
            if not isinstance(doc.get(key), str):
                raise QetoolError(f"{self.path}/manifest.json: {key}: missing or not text")

    @cached_property
    def manifest(self) -> dict:
        return fileio.read_json(self.path / "manifest.json")

    @property
    def imported(self) -> bool:
        """True for a build of a .tflite file (the graph IR), False for an arch.json build."""
        return self.manifest.get("source") == "tflite"

    @cached_property
    def graph(self) -> CompiledGraph:
        """build/model.tflite converted again, checked against the manifest."""
        if self.manifest.get("model_file") != MODEL_FILE:
            raise QetoolError(f"{self.path}/manifest.json: model_file: not {MODEL_FILE!r}")
        data = read_bytes(self.path / MODEL_FILE)
        c = compile_graph(data, str(self.path / MODEL_FILE), self.board, self.name)
        self._check(MODEL_FILE, c.model_hash, c.graph.output_tensor().elements,
                    lambda names: graph_manifest(c, self.manifest["board"], self.manifest.get("board_file"),
                                                 names, self.name))
        return c

    def _check(self, source: str, model_hash: str, num_classes: int,
               regenerate: Callable[[list[str] | None], dict]) -> None:
        """The model read from `source` must be the manifest's: its hash, its class names, and
        the whole manifest as compile writes it (`regenerate(class_names)`)."""
        if model_hash != self.manifest["model_hash"]:
            raise QetoolError(f"{self.path}: {source} holds model {model_hash}, manifest.json "
                              f"names {self.manifest['model_hash']}: compile again")
        names = self.manifest.get("class_names")
        if names is not None:
            check_class_names(names, num_classes, f"{self.path}/manifest.json: class_names")
        if self.manifest != regenerate(names):
            raise QetoolError(f"{self.path}/manifest.json: does not match {source} (edited or "
                              "damaged): compile again")

    @cached_property
    def program(self) -> Program:
        """The model as the device side sees it, whichever front end built it."""
        return self.graph.program if self.imported else arch_program(self.model, self.plan)

    @cached_property
    def model(self) -> LoweredModel:
        """lowered.npz, checked against the manifest."""
        if self.imported:
            raise QetoolError(f"{self.path} holds an imported .tflite model: this needs an "
                              "arch.json build")
        model = LoweredModel.load(self.path / "lowered.npz")
        seed = self.manifest.get("random_weights_seed")
        if seed is not None and not isinstance(seed, int):
            raise QetoolError(f"{self.path}/manifest.json: random_weights_seed: {seed!r} is not a seed")
        self._check("lowered.npz", model.model_hash, model.arch.num_classes,
                    lambda names: manifest(model, plan(model.arch), self.manifest["board"],
                                           self.manifest.get("board_file"), names, self.name, seed))
        return model

    @property
    def name(self) -> str:
        """The model's C name (the prefix of its symbols and files)."""
        return check_name(self.manifest.get("name"), f"{self.path}/manifest.json: name")

    @cached_property
    def plan(self) -> Plan:
        return plan(self.model.arch)

    @cached_property
    def report(self) -> dict:
        """The report of this model on this board, as compile wrote it to report.json."""
        if self.imported:
            return self.graph.report
        return build_report(self.model, self.plan, self.board)

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
        return self.program.input_bytes

    def elf(self, name: str) -> Path:
        """build/<name>.elf, or a clear error telling how to build it."""
        path = self.path / f"{name}.elf"
        if not path.is_file():
            raise QetoolError(f"{self.path}: no {name}.elf (compile with --build)")
        return path
