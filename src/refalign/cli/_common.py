"""Shared plumbing of the CLI: error handling (one line, exit 2), logging, model and device resolution."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from refalign.errors import RefalignError

EXIT_USER_ERROR = 2
#: a batch command (``refine --cases``, ``bench``) ran but some cases failed; each failure is recorded per case
EXIT_CASES_FAILED = 1


def fail(message: str) -> None:
    """Print one error line and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USER_ERROR)


def handle_errors(fn: Callable) -> Callable:
    """Turn :class:`RefalignError` into one line on stderr and exit code 2; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RefalignError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)

    return wrapper


def setup_logging(verbose: bool = False) -> None:
    """Route refalign's (and accelerate's) loggers to stderr; quiet the libraries' chatter unless verbose."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("diffusers", "transformers", "PIL", "matplotlib", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        if not verbose:
            dlog.set_verbosity_error()
            tlog.set_verbosity_error()
            dlog.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def default_model_path() -> Optional[Path]:
    """The model shipped inside the package, if this installation has one."""
    from importlib.resources import files

    path = Path(str(files("refalign") / "default_model"))
    return path if (path / "model_index.json").is_file() else None


def resolve_model(model: Optional[str]) -> str:
    """``--model`` or the shipped default model."""
    if model:
        return model
    path = default_model_path()
    if path is None:
        raise RefalignError("no default model is installed with this refalign; pass --model PATH to a checkpoint")
    return str(path)


def resolve_device(device: Optional[str]) -> str:
    """``--device`` or the best available one (cuda, mps, cpu)."""
    import torch

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
    """Load a checkpoint (or the default model) onto a device, with a clear error for a bad folder."""
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline

    pipe = RefineByAlignPipeline.from_pretrained(resolve_model(model))
    pipe.to(resolve_device(device))
    pipe.set_progress_bar_config(leave=False)
    return pipe


ModelOption = typer.Option(None, "--model", "-m", help="Checkpoint folder (default: the model shipped with refalign).")
DeviceOption = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps (default: best available).")
OverwriteOption = typer.Option(False, "--overwrite", help="Replace output files that already exist.")
VerboseOption = typer.Option(False, "--verbose", "-v", help="Show debug logs of refalign and its libraries.")
