"""``refalign bench``: methods over folders of cases (library: :mod:`refalign.eval.runner`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from refalign.checks import check_seed, check_steps, num_train_timesteps
from refalign.cli._common import DeviceOption, handle_errors


@handle_errors
def bench(
    cases: List[Path] = typer.Argument(..., help="Folder(s) of case folders (see `refalign make-cases`)."),
    methods: List[str] = typer.Option(..., "--method", help="identity, telea, ns, paste, oracle (warp cases: the "
                                      "reference through the true geometry, colour-fitted), verified-paste "
                                      "(crossview cases: through the homography make-cases verified them with, "
                                      "unchecked), refalign, "
                                      "refalign-region (told where the artifact's content lies in the reference, as "
                                      "--reference-mask tells it; warp and crossview cases), "
                                      "refalign-single, refalign-noguide (a guided model with its warped-reference "
                                      "input off). Repeat to compare methods in one run: each writes OUTPUT/METHOD/."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for refined images, results.jsonl, summary.md."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint for the refalign methods (and for "
                                        "paste's alignment when a case has no correspondence.png); its recorded "
                                        "training sources split the tables into objects it saw and never saw."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion steps (default: the checkpoint's)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed of the refalign methods."),
    clip: Optional[str] = typer.Option(None, "--clip", help="CLIP weights (folder or hub id) for CLIP-I and CLIP-T."),
    dino: Optional[str] = typer.Option(None, "--dino", help="DINOv2 weights (folder or hub id) for the DINO score."),
    blip: Optional[str] = typer.Option(None, "--blip", help="BLIP-2 weights (folder or hub id) captioning for CLIP-T."),
    ocr: bool = typer.Option(True, "--ocr/--no-ocr", help="OCR agreement on text cases (RapidOCR from the `ocr` "
                             "extra, else tesseract; skipped when neither is installed)."),
    report: bool = typer.Option(False, "--report", help="Also write OUTPUT/report.html: per case crops of the input, "
                                "the reference with the correspondence used, each method's result and the truth, "
                                "sorted by gain over the best baseline, with the summary tables and plots."),
    device: Optional[str] = DeviceOption,
    settings: Optional[list[str]] = typer.Option(
        None, "--set", help="Change a setting of the checkpoint's refalign.json for this run, e.g. --set "
        "refinement.num_samples=1 (repeatable; for ablations)."
    ),
) -> None:
    """Run methods over folders of cases and report the paper's metrics and pixel metrics over the artifact. Reruns
    skip cases that already have results; a failing case is recorded in results.jsonl and never stops the run."""
    from refalign.cli._common import default_model_path, resolve_device, resolve_model
    from refalign.errors import InputError
    from refalign.eval.baselines import MODEL_METHODS
    from refalign.cli._common import EXIT_CASES_FAILED
    from refalign.eval.runner import RESULTS, BenchConfig, list_all_cases, load_results, run_bench, run_comparison

    methods = list(dict.fromkeys(m for arg in methods for m in arg.split(",") if m))
    uses_model = [m for m in methods if m in MODEL_METHODS]
    check_seed(seed)
    if uses_model:
        model = resolve_model(model)
        check_steps(steps, num_train_timesteps(model))  # before any case runs, not when the model first loads
    if settings:
        from pathlib import Path

        from refalign.pipelines.config import FILE_NAME, RefalignConfig, apply_overrides

        if not uses_model:
            raise InputError(f"--set changes the model's settings; method {methods[0]} uses no model")
        # a bad key, value or combination stops here, before any output: checked on the checkpoint's own
        # refalign.json when it is a local folder (read without loading the model), else on the defaults
        local = Path(model) / FILE_NAME
        base = RefalignConfig.load(local) if local.is_file() else RefalignConfig()
        apply_overrides(base, list(settings), check_effect=local.is_file())
    default = default_model_path()
    seen_model = model or (str(default) if default is not None else None)
    cfg = BenchConfig(cases=list(cases), method=methods[0], output=output, model=model, steps=steps, seed=seed,
                      clip=clip, dino=dino, blip=blip, ocr=ocr, device=resolve_device(device) if device else None,
                      overrides=list(settings or []), seen_model=seen_model)
    case_dirs = list_all_cases(cfg.cases)
    names = {p.name for p in case_dirs}
    if len(methods) > 1:
        out = run_comparison(cfg, methods, report=report)
        folders = {m: out / m for m in methods}
    else:
        out = run_bench(cfg)
        folders = {cfg.method: out}
        if report:
            from refalign.eval.runner import write_report_page

            records = {n: r for n, r in load_results(out / RESULTS).items() if n in names}
            write_report_page(out, case_dirs, {cfg.method: (out, records)}, (out / "summary.md").read_text())
    typer.echo(f"wrote {out / 'summary.md'}" + (f" and {out / 'report.html'}" if report else ""))
    failed = sorted({f"{name} ({m})" if len(methods) > 1 else name for m, folder in folders.items()
                     for name, r in load_results(folder / RESULTS).items() if name in names and r.get("error")})
    if failed:  # the exit-code convention of every batch command (README: exit codes); skipped cases do not count
        typer.echo(f"{len(failed)} case(s) failed (the error is in results.jsonl): {', '.join(failed)}", err=True)
        raise typer.Exit(EXIT_CASES_FAILED)
