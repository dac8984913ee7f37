"""The qetool command line: click commands only (parse, call one function, print).

User errors print one line `error: ...` to stderr and exit 2. Imports are deferred into the
commands so that `qetool --help` stays fast and never loads numpy or torch.
"""

from __future__ import annotations

import json
import sys

import click

from qetool import __version__
from qetool.errors import QetoolError


class _Size(click.ParamType):
    """A byte size: 256KB, 1MB, 327680."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from qetool.units import parse_size

        try:
            return parse_size(value)
        except QetoolError as e:
            self.fail(str(e), param, ctx)


SIZE = _Size()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qetool")
def cli() -> None:
    """Entropy-driven mixed-precision networks for Cortex-M: search, compile, run."""


@cli.command()
@click.option("--board", required=True, help="Board name (boards/NAME.toml); budgets come from it.")
@click.option("--sram", type=SIZE, help="SRAM budget for the arena, e.g. 256KB (default: the board's).")
@click.option("--flash", type=SIZE, help="Flash budget for the model, e.g. 1MB (default: the board's).")
@click.option("--resolution", type=click.IntRange(16, 1024), default=160, show_default=True,
              help="Input resolution in px.")
@click.option("--classes", type=click.IntRange(2, 1000), default=2, show_default=True)
@click.option("--population", type=click.IntRange(1), default=512, show_default=True)
@click.option("--iterations", type=click.IntRange(0), default=500_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Where to write the best arch.json.")
def search(board, sram, flash, resolution, classes, population, iterations, seed, output):
    """Evolve a network and its bit widths for a board's budgets (QE-score + QBR)."""
    from qetool.arch import save
    from qetool.search.evolve import SearchConfig
    from qetool.search.run import run_with_progress
    from qetool.target.boards import load_board

    b = load_board(board)
    cfg = SearchConfig(sram_budget=sram or b.budget_sram_bytes,
                       flash_budget=flash or b.budget_flash_bytes, resolution=resolution,
                       num_classes=classes, population=population, iterations=iterations,
                       seed=seed)
    result = run_with_progress(cfg)
    save(result.arch(cfg), output)
    best = result.best
    state = "interrupted: best so far" if result.interrupted else "done"
    click.echo(f"{state} after {result.iterations_done:,} iterations "
               f"({result.accepted:,} accepted): QE-score {best.qe_score:.6f}, "
               f"Flash {best.flash_bytes:,} B of {cfg.flash_budget:,}, "
               f"SRAM {best.peak_sram_bytes:,} B of {cfg.sram_budget:,} -> {output}")


@cli.command()
@click.argument("arch_json", type=click.Path(dir_okay=False))
@click.option("--board", help="Show the board's search budgets and what is left.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def score(arch_json, board, as_json):
    """QE-score, model Flash and peak SRAM of an arch.json, per block."""
    from qetool.arch import load
    from qetool.search.summary import score_report
    from qetool.target.boards import load_board

    report = score_report(load(arch_json), load_board(board) if board else None)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.table())


@cli.command("compile")
@click.argument("arch_json", type=click.Path(dir_okay=False))
@click.option("--board", required=True, help="Target board (boards/NAME.toml).")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Weights file (model.npz); default: seeded random weights, calibrated.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@click.option("--force", is_flag=True, help="Compile even when over the board's budgets.")
@click.option("-o", "--output", type=click.Path(file_okay=False), default="build", show_default=True)
def compile_cmd(arch_json, board, weights, seed, force, output):
    """Lower a network to integer C with packed sub-byte tensors and a static arena."""
    from qetool.compiler.compile import compile_model, over_budget, report_table

    c = compile_model(arch_json, board, output, weights, seed, force)
    click.echo(report_table(c.report))
    for line in over_budget(c.report):
        click.echo(f"warning: {line} (compiled with --force)", err=True)
    click.echo(f"model {c.model.model_hash} -> {output}/")


def main() -> None:
    """Entry point: run the CLI; a user error is one line on stderr and exit code 2."""
    try:
        cli.main(standalone_mode=False)
    except QetoolError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
