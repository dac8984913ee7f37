"""A search's outputs for reports (docs/formats.md): its history (`qetool search --history
FILE`: the best candidate's QE-score after each number of iterations) and the reading of its
Pareto front (`--pareto FILE`), for `qetool report --history/--pareto`."""

from __future__ import annotations

import json
from dataclasses import dataclass

from qetool.errors import QetoolError
from qetool.fileio import write_text


@dataclass(frozen=True)
class SearchHistory:
    """The best candidate's QE-score after each number of iterations (increasing, from 0), and
    the board and seed the search ran with."""

    iterations: tuple[int, ...]
    best_qe: tuple[float, ...]
    board: str
    seed: int


HISTORY_FORMAT = "qetool-search-history/1"


def write_history(path: str, points: list[tuple[int, float]], board: str, seed: int) -> None:
    """Write (iterations, best QE-score) points as a history file (atomically)."""
    doc = {"format": HISTORY_FORMAT, "board": board, "seed": seed,
           "iterations": [i for i, _ in points], "best_qe": [q for _, q in points]}
    write_text(path, json.dumps(doc) + "\n")


def load_history(doc: object, where: str) -> SearchHistory:
    """A history file's JSON, checked field by field."""
    if not isinstance(doc, dict) or doc.get("format") != HISTORY_FORMAT:
        raise QetoolError(f"{where}: not a search history ({HISTORY_FORMAT}; `qetool search --history FILE`)")
    its, qe = doc.get("iterations"), doc.get("best_qe")
    if not isinstance(doc.get("board"), str) or type(doc.get("seed")) is not int:
        raise QetoolError(f"{where}: board or seed missing or of the wrong type")
    if (not isinstance(its, list) or not isinstance(qe, list) or len(its) != len(qe) or not its
            or not all(type(i) is int and i >= 0 for i in its)
            or not all(type(q) in (int, float) and abs(q) < 1e9 for q in qe)):
        raise QetoolError(f"{where}: iterations and best_qe must be lists of equal, non-zero "
                          "length (counts, QE-scores)")
    if any(b <= a for a, b in zip(its, its[1:])):
        raise QetoolError(f"{where}: iterations must increase")
    return SearchHistory(tuple(its), tuple(float(q) for q in qe), doc["board"], doc["seed"])


PARETO_FORMAT = "qetool-pareto/1"


def load_pareto(doc: object, where: str) -> list[tuple[float, float]]:
    """A Pareto front file's (latency in ms, QE-score) points, checked field by field."""
    pts = doc.get("points") if isinstance(doc, dict) and doc.get("format") == PARETO_FORMAT else None
    if not isinstance(pts, list) or not pts:
        raise QetoolError(f"{where}: not a Pareto front ({PARETO_FORMAT}; `qetool search --pareto FILE`)")
    out = []
    for i, p in enumerate(pts):
        ms, qe = (p.get("latency_ms"), p.get("qe_score")) if isinstance(p, dict) else (None, None)
        if not all(type(v) in (int, float) and 0 <= v < 1e9 for v in (ms, qe)):
            raise QetoolError(f"{where}: points[{i}]: latency_ms and qe_score must be numbers")
        out.append((float(ms), float(qe)))
    return out
