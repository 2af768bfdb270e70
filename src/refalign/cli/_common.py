"""Shared plumbing of the CLI: error handling (one line, exit 2), logging, output checks and writing, model and
device resolution, the per-run summary.

Start-up (measured in ``benchmarks/bench_startup.py``): importing torch, diffusers and transformers takes seconds,
so this module and the command modules import only typer, numpy, PIL and refalign's light modules at the top;
each command validates its inputs and outputs first and imports the pipeline (:func:`load_pipeline`) after. That
deferral is what keeps an error for a bad input under half a second.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Optional

import typer

from refalign.errors import OutputError, RefalignError
from refalign.shipped import default_model_path

EXIT_USER_ERROR = 2
#: a batch command (``refine --cases``, ``bench``) ran but some cases failed; each failure is recorded per case
EXIT_CASES_FAILED = 1
#: Libraries whose INFO chatter is hidden unless ``-v``.
NOISY_LOGGERS = ("diffusers", "transformers", "accelerate", "PIL", "matplotlib", "httpx", "urllib3", "gradio")

_verbose = False
_quick_exit = False


def fail(message: str) -> None:
    """Print one error line and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USER_ERROR)


def os_error_line(exc: OSError) -> str:
    """One line for a failed file operation: the path, what the system said, and what to do."""
    path = exc.filename if exc.filename is not None else "file"
    why = exc.strerror or str(exc) or type(exc).__name__
    return f"{path}: {why}; check the path, its folder's permissions and the free space"


def handle_errors(fn: Callable) -> Callable:
    """Turn :class:`RefalignError` and any ``OSError`` (an unwritable folder, a full disk) into one line on stderr
    and exit code 2; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RefalignError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(os_error_line(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)

    return wrapper


def setup_logging(verbose: bool = False) -> None:
    """Route refalign's loggers to stderr: warnings only (and training's progress lines), or debug logs of refalign
    and its libraries with ``-v``.
    Imports nothing heavy: the libraries' own verbosity is set when the model loads (:func:`quiet_libraries`)."""
    global _verbose
    _verbose = verbose
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:  # read by diffusers / transformers when they are imported (by whichever command needs them)
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # training is long work whose INFO lines (data found, resumed at step N, time limit reached) are its report
    logging.getLogger("refalign.training").setLevel(logging.DEBUG if verbose else logging.INFO)


def quiet_libraries() -> None:
    """diffusers and transformers keep their own log level and progress bars: errors only unless ``-v``. Called
    once they are imported anyway (when the model loads)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    if not _verbose:
        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
        dlog.disable_progress_bar()


def resolve_model(model: Optional[str]) -> str:
    """``--model`` or the shipped default model."""
    return model if model else str(default_model_path())


def resolve_device(device: Optional[str]) -> str:
    """``--device`` or the best available one (cuda, mps, cpu)."""
    import torch  # deferred: see the module docstring

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RefalignError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_pipeline(model: Optional[str], device: Optional[str] = None):
    """Load a checkpoint (or the default model) onto a device, with a clear error for a bad folder. The progress
    bar shows only on a terminal (piped output gets no carriage-return residue) and clears its line when done."""
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline  # deferred: module docstring

    quiet_libraries()
    pipe = RefineByAlignPipeline.from_pretrained(resolve_model(model))
    pipe.to(resolve_device(device))
    pipe.set_progress_bar_config(leave=False, disable=not sys.stderr.isatty())
    return pipe


def allow_quick_exit() -> None:
    """Called by a command whose work is complete (outputs written, nothing left to clean up): the process may then
    end without the interpreter's teardown of torch/diffusers modules (:func:`exit_process`)."""
    global _quick_exit
    _quick_exit = True


def exit_process(code: int) -> None:
    """End the process with ``code``. After :func:`allow_quick_exit`, flush and leave with ``os._exit``: the
    interpreter's teardown of the torch/diffusers/transformers modules comes after all the work and is pure waiting
    (measured on this project's 2 shared cores, load average 10: importing them and exiting took 11.3-12.3 s with
    the teardown, 8.6-9.8 s without; the cold-start table is in the README)."""
    if _quick_exit:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


# ------------------------------------------------------------------------------------------------------ outputs


def check_writable(folder: Path) -> Path:
    """Refuse, before any model work, an output folder that cannot take a new file: write and remove a probe file
    there (this sees read-only mounts and permissions as the later write would)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist; create it first"
        raise OutputError(f"{folder}: {what}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".refalign-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write here ({exc.strerror or exc}); choose another output") from None
    return folder


def check_output_folder(folder: Path, names: tuple[str, ...], *, overwrite: bool) -> Path:
    """Check a command's output folder before any model work: not a file, its parent writable (or itself, when it
    exists), and none of ``names`` already there unless ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file; give a folder")
    clash = [n for n in names if (folder / n).exists()]
    if clash and not overwrite:
        raise OutputError(f"{folder / clash[0]}: already exists; choose another folder or pass --overwrite")
    check_writable(folder if folder.exists() else folder.parent)
    return folder


def write_outputs(items: Mapping[Path, object]) -> list[Path]:
    """Write a command's outputs as one set: every image (``path -> array``) through
    :func:`refalign.files.save_image`; if one write fails, the files this call created are removed again and the
    error is raised (one line: :func:`handle_errors`). Returns the paths written."""
    from refalign.files import save_image

    written: list[Path] = []
    try:
        for path, image in items.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists()
            save_image(image, path)
            if not existed:
                written.append(path)
    except OSError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return list(map(Path, items))


# ------------------------------------------------------------------------------------------------------ reports


def run_summary(out, seconds: float) -> str:
    """The run's summary: a line with the number of windows and the time, then one line per window — where its
    pixels came from (the reference's own, the model, or kept as they were) and the registration behind it with its
    confidence (``RefineOutput.reports``)."""
    n = len(out.windows)
    kinds = ", ".join(f"{out.sources.count(k)} {k}" for k in dict.fromkeys(out.sources))
    head = f"refined {n} window{'s' if n != 1 else ''} in {seconds:.1f} s ({kinds})"
    return "\n".join([head] + [f"  {line}" for line in out.reports])


ModelOption = typer.Option(None, "--model", "-m", help="Checkpoint folder (default: the model shipped with refalign).")
DeviceOption = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps (default: best available).")
OverwriteOption = typer.Option(False, "--overwrite", help="Replace output files that already exist.")
VerboseOption = typer.Option(False, "--verbose", "-v", help="Show debug logs of refalign and its libraries.")
