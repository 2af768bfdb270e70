"""``refalign bench``: one method over a folder of cases (library: :mod:`refalign.eval.runner`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from refalign.cli._common import DeviceOption, handle_errors


@handle_errors
def bench(
    cases: Path = typer.Argument(..., help="Folder of case folders (see `refalign make-cases`)."),
    method: str = typer.Option(..., "--method", help="identity, telea, ns, paste, refalign, refalign-single, refalign-noguide (a guided model with its warped-reference input off)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for refined images, results.jsonl, summary.md."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint for the refalign methods (and for "
                                        "paste's alignment when a case has no correspondence.png)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion steps (default: the checkpoint's)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed of the refalign methods."),
    clip: Optional[str] = typer.Option(None, "--clip", help="CLIP weights (folder or hub id) for CLIP-I and CLIP-T."),
    dino: Optional[str] = typer.Option(None, "--dino", help="DINOv2 weights (folder or hub id) for the DINO score."),
    blip: Optional[str] = typer.Option(None, "--blip", help="BLIP-2 weights (folder or hub id) captioning for CLIP-T."),
    ocr: bool = typer.Option(True, "--ocr/--no-ocr", help="OCR agreement on text cases (needs tesseract)."),
    device: Optional[str] = DeviceOption,
    settings: Optional[list[str]] = typer.Option(
        None, "--set", help="Change a setting of the checkpoint's refalign.json for this run, e.g. --set "
        "refinement.num_samples=1 (repeatable; for ablations)."
    ),
) -> None:
    """Run a method over a folder of cases and report the paper's metrics and pixel metrics. Reruns skip cases that
    already have results; a failing case is recorded in results.jsonl and never stops the run."""
    from refalign.cli._common import resolve_device, resolve_model
    from refalign.errors import InputError
    from refalign.eval.baselines import MODEL_METHODS
    from refalign.cli._common import EXIT_CASES_FAILED
    from refalign.eval.runner import BenchConfig, load_results, run_bench

    if settings:
        from refalign.pipelines.config import RefalignConfig, apply_overrides

        if method not in MODEL_METHODS:
            raise InputError(f"--set changes the model's settings; method {method} uses no model")
        # a bad key or value stops here, before any output (the effect is checked on the checkpoint's own settings)
        apply_overrides(RefalignConfig(), list(settings), check_effect=False)
    if method in MODEL_METHODS:
        model = resolve_model(model)
    cfg = BenchConfig(cases=cases, method=method, output=output, model=model, steps=steps, seed=seed, clip=clip,
                      dino=dino, blip=blip, ocr=ocr, device=resolve_device(device) if device else None,
                      overrides=list(settings or []))
    out = run_bench(cfg)
    typer.echo(f"wrote {out / 'summary.md'}")
    failed = sorted(name for name, r in load_results(out / "results.jsonl").items() if r.get("error"))
    if failed:  # the exit-code convention of every batch command (README: exit codes)
        typer.echo(f"{len(failed)} case(s) failed (the error is in results.jsonl): {', '.join(failed)}", err=True)
        raise typer.Exit(EXIT_CASES_FAILED)
