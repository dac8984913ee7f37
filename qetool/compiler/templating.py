"""The Jinja environment of the C templates (templates/*.j2) and the naming of C symbols: number
formatting only; what the C says lives in the templates, what it holds in the renderers."""

from __future__ import annotations

import jinja2

from qetool.paths import TEMPLATES


def _hexrows(data: bytes, per_line: int = 16) -> list[str]:
    """Byte rows for a C initializer: `0x12, 0x34, ...`."""
    return [", ".join(f"0x{b:02x}" for b in data[i:i + per_line])
            for i in range(0, len(data), per_line)]


def _introws(values: list[int], per_line: int = 16) -> list[str]:
    """Integer rows for a C initializer: `-3, 17, ...`."""
    return [", ".join(str(v) for v in values[i:i + per_line]) for i in range(0, len(values), per_line)]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    env.filters["hexrows"] = _hexrows
    env.filters["introws"] = _introws
    return env


def render_files(sources: dict[str, str], name: str, ctx: dict) -> dict[str, str]:
    """Each template (templates/T.j2) rendered to its file, {} in the file name standing for the
    model's name."""
    env = environment()
    return {out.format(name): env.get_template(f"{t}.j2").render(**ctx) for t, out in sources.items()}


def symbol(name: str, node_id: str) -> str:
    """C symbol prefix of a layer or node: `b3.expand` of model `qe_model` -> `qe_model_b3_expand`."""
    return f"{name}_{node_id.replace('.', '_')}"
