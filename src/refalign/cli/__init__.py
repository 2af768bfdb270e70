"""The ``refalign`` command line: thin typer wrappers over the library.

Each command lives in its own module here and imports heavy libraries only when it runs, so ``--help`` is fast.
Errors caused by the user's input print one line and exit with code 2 (DESIGN §5).
"""

from __future__ import annotations

import typer

from refalign import __version__
from refalign.cli import align, bench, demo, detect, example, info, make_cases, refine, train
from refalign.cli._common import exit_process, setup_logging

app = typer.Typer(
    name="refalign",
    help="Repair small artifacts of generated images from a reference photo (Refine-by-Align).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: wraps to the terminal and never cuts an option name
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"refalign {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs from refalign and its libraries."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    setup_logging(verbose)


app.command("example")(example.example)
app.command("refine")(refine.refine)
app.command("align")(align.align)
app.command("align-search")(align.align_search)
app.command("train")(train.train)
app.command("bench")(bench.bench)
app.command("make-cases")(make_cases.make_cases)
app.command("detect")(detect.detect)
app.command("demo")(demo.demo)
app.command("info")(info.info)


def main() -> None:
    """Console-script entry point. Commands that finished their work skip the interpreter's teardown of the deep
    learning libraries (:func:`refalign.cli._common.exit_process`); errors and other commands exit normally."""
    try:
        app()
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            exit_process(code or 0)
        raise
