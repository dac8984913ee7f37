"""The qetool command line: click commands only (parse, call one function, print).

User errors print one line `error: ...` to stderr and exit 2. Imports are deferred into the
commands so that `qetool --help` stays fast and never loads numpy or torch.
"""

from __future__ import annotations

import json
import math
import signal
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


class _PositiveFloat(click.ParamType):
    """A finite number above 0 (not nan, not inf)."""

    name = "number"

    def convert(self, value, param, ctx):
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v) or v <= 0:
            self.fail(f"{value!r} is not a finite number above 0", param, ctx)
        return v


def _board_options(required: bool):
    """--board NAME (boards/NAME.toml) or --board-file PATH (a user's board, docs/boards.md)."""
    def add(f):
        f = click.option("--board-file", type=click.Path(dir_okay=False),
                         help="A board file of your own instead of --board (docs/boards.md).")(f)
        what = "Target board" if required else "Show the board's search budgets and what is left"
        return click.option("--board", help=f"{what}: a name from boards/ (e.g. stm32f746).")(f)
    return add


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qetool")
def cli() -> None:
    """Entropy-driven mixed-precision networks for Cortex-M: search, compile, run."""


@cli.command()
@_board_options(required=True)
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
@click.option("--history", type=click.Path(dir_okay=False),
              help="Also write the best QE-score over the iterations (JSON, for qetool report --history).")
@click.option("--latency-ms", type=_PositiveFloat(),
              help="Latency budget per picture in ms, from the board's latency model (default: the "
                   "board file's budget_ms, if any).")
@click.option("--no-latency-budget", is_flag=True, help="Ignore the board file's latency budget.")
@click.option("--macs", type=SIZE, help="At most this many multiply-accumulates per picture (e.g. 300M).")
@click.option("--max-blocks", type=click.IntRange(1), help="At most this many mbconv block instances.")
@click.option("--pareto", type=click.Path(dir_okay=False),
              help="Write the final population's QE/latency Pareto front (JSON).")
def search(board, board_file, sram, flash, resolution, classes, population, iterations, seed, output,
           history, latency_ms, no_latency_budget, macs, max_blocks, pareto):
    """Evolve a network and its bit widths for a board's budgets (QE-score + QBR), within a
    latency, MAC and block budget when given."""
    from qetool.search.run import search_command

    for line in search_command(board, board_file, sram, flash, resolution, classes, population,
                               iterations, seed, output, history, latency_ms, no_latency_budget,
                               macs, max_blocks, pareto,
                               warn=lambda text: click.echo(f"warning: {text}", err=True)):
        click.echo(line)


@cli.command()
@click.argument("arch_json", type=click.Path(dir_okay=False))
@_board_options(required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Also draw the paper's QBR figure (bits, peak SRAM and Flash per block against "
                   "the budgets) to this .png or .svg file.")
def score(arch_json, board, board_file, as_json, plot):
    """QE-score, model Flash and peak SRAM of an arch.json, per block."""
    from qetool.arch import load
    from qetool.device.boards import choose_board
    from qetool.compiler.tflite import tflite_file
    from qetool.search.summary import score_report

    chosen = choose_board(board, board_file) if board or board_file else None
    if tflite_file(arch_json):
        raise QetoolError(f"{arch_json}: a TFLite model; score works on arch.json networks "
                          "(qetool compile reports an imported model's memory)")
    report = score_report(load(arch_json), chosen)
    if plot:
        from pathlib import Path

        from qetool.view.plots import plot_score

        title = f"{Path(arch_json).name}: QBR per block" + (f" on {chosen.name}" if chosen else "")
        plot_score(report, title, plot)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.table())
    if plot and not as_json:
        click.echo(f"QBR figure -> {plot}")


@cli.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@_board_options(required=True)
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Weights file (model.npz); default: seeded random weights, calibrated.")
@click.option("--seed", type=int, help="Seed of the random weights (default 0).")
@click.option("--class-names", help="The classes' names, comma-separated (default: the weights file's).")
@click.option("--name", default="qe_model", show_default=True,
              help="Prefix of every generated C symbol and file (qe_model.h, qe_model_run()), so "
                   "that several models link into one firmware.")
@click.option("--force", is_flag=True, help="Compile even when over the board's budgets.")
@click.option("--build", "build_fw", is_flag=True,
              help="Also build the firmware: board.elf, board.bin and emu.elf (arm-none-eabi-gcc).")
@click.option("-o", "--output", type=click.Path(file_okay=False), default="build", show_default=True)
def compile_cmd(model, board, board_file, weights, seed, class_names, name, force, build_fw, output):
    """Lower an arch.json network (with a weights file) or an int8 .tflite model to integer C
    with a static arena."""
    from qetool.compiler.compile import compile_model
    from qetool.compiler.report import over_budget, report_table
    from qetool.device.boards import choose_board

    names = class_names.split(",") if class_names is not None else None
    c = compile_model(model, choose_board(board, board_file), output, weights, seed, force,
                      build_fw, class_names=names, name=name)
    click.echo(report_table(c.report))
    for line in over_budget(c.report):
        click.echo(f"warning: {line} (compiled with --force)", err=True)
    click.echo(f"model {c.report['model_hash']} -> {output}/")


def _target_options(f):
    f = click.option("--baud", type=int, default=115200, show_default=True, help="Board UART baud rate.")(f)
    f = click.option("--port", help="The board's serial port, e.g. /dev/ttyACM0.")(f)
    f = click.option("--emulator", is_flag=True, help="Start QEMU and run there.")(f)
    return f


@cli.command()
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.option("--host", is_flag=True, help="Run the golden model on this machine.")
@_target_options
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False),
              help="A picture to classify (repeatable); default: the built-in sample picture.")
@click.option("--input", "arrays", multiple=True, type=click.Path(dir_okay=False),
              help="A raw input tensor (.npy, the input's H x W x C codes; repeatable).")
@click.option("--check", is_flag=True, help="Compare with the golden model (and an imported model "
              "with TFLM's interpreter, node by node); exit 1 on any difference.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per input.")
def run(build_dir, host, emulator, port, baud, images, arrays, check, as_json):
    """Run inferences on the board, the emulator or the host and print class, output and count."""
    from qetool.device.run import run_inputs

    ok, imported = True, False
    for build, r in run_inputs(build_dir, host, emulator, port, baud, list(images), list(arrays), check):
        click.echo(json.dumps(r.to_json(build)) if as_json else r.line(build))
        ok &= r.same is not False
        imported = build.imported
    if not ok:
        click.echo("error: the device's output differs from the golden model, or the golden model "
                   "from TFLM's interpreter" if imported else
                   "error: the device's logits differ from the golden model", err=True)
        sys.exit(1)


@cli.command()
@click.argument("build_dir", type=click.Path(file_okay=False))
@_target_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Also write the JSON to this file (e.g. BUILD/profile.json, which qetool report reads).")
def profile(build_dir, emulator, port, baud, as_json, output):
    """Measured Flash, SRAM, stack and latency per layer, against the board's limits."""
    from qetool.device.builddir import BuildDir
    from qetool.device.profile import over_limits, profile as measure, profile_table
    from qetool.device.session import connect

    build = BuildDir(build_dir)
    with connect(build, emulator, port, baud) as session:
        doc = measure(session, build.elf("emu" if emulator else "board"))
    if output:
        from qetool.fileio import write_text

        write_text(output, json.dumps(doc, indent=2) + "\n")
    click.echo(json.dumps(doc, indent=2) if as_json else profile_table(doc))
    over = over_limits(doc)
    for line in over:
        click.echo(f"error: {line}", err=True)
    if over:
        sys.exit(1)


@cli.command()
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The HTML file to write (one self-contained page).")
@click.option("--profile", "profile_file", type=click.Path(dir_okay=False),
              help="A profile's JSON (qetool profile BUILD --emulator -o FILE); default: "
                   "BUILD/profile.json when present.")
@click.option("--history", type=click.Path(dir_okay=False),
              help="A search's history (qetool search --history FILE) to plot.")
@click.option("--pareto", type=click.Path(dir_okay=False),
              help="A search's Pareto front (qetool search --pareto FILE) to plot.")
def report(build_dir, output, profile_file, history, pareto):
    """One HTML page for a build: summary, QBR figure, the arena over time, per-layer latency,
    bit widths and the per-layer table; figures embedded, nothing loaded from elsewhere."""
    from qetool.view.page import summary_text, write_report

    r = write_report(build_dir, output, profile_file, history, pareto)
    click.echo(summary_text(r))
    click.echo(f"report -> {output}")


@cli.command()
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.option("--tool", type=click.Choice(["openocd", "st-flash", "pyocd"]),
              help="Flashing tool (default: the first one installed).")
@click.option("--dry-run", is_flag=True, help="Print the command instead of running it.")
def flash(build_dir, tool, dry_run):
    """Write the firmware to the board named in the manifest (board.elf with openocd, board.bin
    with st-flash or pyocd)."""
    from pathlib import Path

    from qetool.device.builddir import BuildDir
    from qetool.device.flash import flash as write

    build = BuildDir(build_dir)
    line = write(Path(build_dir), build.board, tool, dry_run)
    click.echo(line if dry_run else f"flashed {build.board.name}: {line}")


@cli.command()
@_board_options(required=True)
@_target_options
@click.option("--tool", type=click.Choice(["openocd", "st-flash", "pyocd"]),
              help="With --port: the flashing tool for each probe (default: the first installed).")
@click.option("--probes", type=click.IntRange(8), default=64, show_default=True,
              help="Probe networks to build and count.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the probe networks.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The calibration file (default: boards/NAME.latency.json of a shipped board).")
def calibrate(board, board_file, emulator, port, baud, tool, probes, seed, output):
    """Fit the board's latency model to exact counts of generated probe networks: instructions
    in the emulator, or DWT cycles on the board (each probe is flashed)."""
    from qetool.device.boards import choose_board
    from qetool.device.calibrate import calibrate_with_progress

    if emulator == (port is not None):
        raise QetoolError("give exactly one of --emulator and --port")
    b = choose_board(board, board_file)
    if output is None and b.file_text is not None:
        raise QetoolError("a board of your own needs -o FILE for its calibration")
    model, path = calibrate_with_progress(b, probes, seed, port, baud, tool, output)
    click.echo(f"{model.probes} probes on {model.target} ({model.counter}): largest error on a "
               f"probe network {100 * model.max_probe_error:.2f} % -> {path}")


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise QetoolError("training needs torch: pip install -e '.[train]' (torch==2.13.0)") from None


@cli.command()
@click.argument("arch_json", type=click.Path(dir_okay=False))
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The weights file to write (model.npz); training state goes to <output>.state.pt.")
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--lr", type=_PositiveFloat(), default=0.05, show_default=True, help="Peak learning rate (cosine schedule).")
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="Data loading processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from <output>.state.pt.")
def train(arch_json, data_dir, output, epochs, batch_size, lr, workers, seed, resume):
    """Quantization-aware training (LSQ) of an arch.json on an image folder (one folder per class)."""
    _need_torch()
    from qetool.nn.train import TrainConfig, train as run

    f = run(arch_json, data_dir, output, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                                                     workers=workers, seed=seed, resume=resume))
    if f["rank"] != 0:
        return
    if "loss" in f:
        click.echo(f"trained to epoch {f['epoch'] + 1}: loss {f['loss']:.4f}, held-out accuracy "
                   f"{100 * f['held_out_accuracy']:.2f} % -> {output}")
    else:
        click.echo(f"nothing to train: {output} is already trained to epoch {f['epoch'] + 1} of {epochs}")


@cli.command()
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="model.onnx")
def export(weights, output):
    """Export a weights file as ONNX (QuantizeLinear/DequantizeLinear around every quantized tensor)."""
    from qetool.nn.export import export as write

    click.echo(f"-> {write(weights, output)}")


@cli.command("eval")
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--host", is_flag=True, help="Run the golden model on this machine (whole sets).")
@_target_options
@click.option("--limit", type=click.IntRange(1), help="At most N images per class.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def eval_cmd(build_dir, data_dir, host, emulator, port, baud, limit, as_json):
    """Accuracy, confusion matrix and latency of a compiled model on an image folder."""
    from qetool.device.evaluate import evaluate

    if host + emulator + (port is not None) != 1:
        raise QetoolError("give exactly one of --host, --emulator and --port")
    r = evaluate(build_dir, data_dir, host, emulator, port, baud, limit)
    click.echo(json.dumps(r.to_json(), indent=2) if as_json else r.table())


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every context manager unwinds
    (an emulator is killed, temporary folders and half-written outputs are removed)."""


def _terminate(signum, frame) -> None:
    raise Terminated


def main() -> None:
    """Entry point: run the CLI; a user error is one line on stderr and exit code 2; SIGTERM
    exits with 143 after cleaning up."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(standalone_mode=False)
    except Terminated:
        click.echo("error: terminated", err=True)
        sys.exit(143)
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
