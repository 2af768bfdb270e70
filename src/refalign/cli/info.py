"""``refalign info PATH``: what a checkpoint holds."""

from __future__ import annotations

import json
import textwrap
from typing import Optional

import typer

from refalign.cli._common import allow_quick_exit, handle_errors, quiet_libraries, resolve_model

#: Width of ``info``'s lines: fits an 80-column terminal.
WIDTH = 80
INDENT = " " * 13


@handle_errors
def info(
    path: Optional[str] = typer.Argument(None, help="Checkpoint folder (default: the shipped model)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Print a checkpoint's components, parameter counts and alignment defaults."""
    from refalign.pipelines.summary import summarize_checkpoint

    quiet_libraries()  # no "Loading pipeline components" bar or library logs unless -v
    summary = summarize_checkpoint(resolve_model(path))
    allow_quick_exit()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _line(f"checkpoint   {summary['path']}")
    _line(f"preset       {summary['preset']}  (resolution {summary['resolution']} px)")
    for name, comp in summary["components"].items():
        params = f"{comp['parameters']:>12,} params" if comp["parameters"] is not None else ""
        _line(f"  {name:<18} {comp['class']:<26} {params}")
    _line(f"total        {summary['total_parameters']:,} parameters")
    a = summary["alignment"]
    score = f", searched mIoU {a['score']:.3f}" if a.get("score") is not None else ""
    _line(f"alignment    step {a['step']} of {a['num_inference_steps']}, layer {a['layer']} of "
          f"{summary['num_cross_attention_layers']} cross-attention layers{score}")
    _line(f"token grid   {summary['token_grid'][0]}x{summary['token_grid'][1]} reference tokens")
    r = summary["refinement"]
    steps = f"{r['num_inference_steps']} step{'s' if r['num_inference_steps'] != 1 else ''}"
    samples = f" x {r['num_samples']} samples averaged" if r.get("num_samples", 1) > 1 else ""
    detail = " with reference detail" if r["detail_transfer"] else ""
    _line(f"refinement   {steps}{samples} ({summary['timestep_spacing']} spacing), guidance "
          f"{r['guidance_scale']}, strength {r['strength']} ({r['masked_content']} start), {r['paste_mode']} paste"
          f"{detail}, predicts {summary['prediction_type']}, masked input "
          f"{summary['masked_fill']}, warped-reference guidance {'on' if summary['warped_guidance'] else 'off'}")
    if summary.get("training"):
        _line(f"trained with {training_line(summary['training'])}")


def _line(text: str) -> None:
    """One ``info`` entry, wrapped at word boundaries to :data:`WIDTH` columns, continuation lines indented."""
    typer.echo(textwrap.fill(text, WIDTH, subsequent_indent=INDENT, break_long_words=False, break_on_hyphens=False))


def training_line(training: dict) -> str:
    """The training settings that identify a run, in words; ``--json`` prints all of them."""
    data = training.get("data") or {}
    sources = sorted({str(s.get("path")) for s in data.get("sources") or [] if s.get("path")})
    parts = [f"{training.get('max_steps')} steps", f"batch {training.get('batch_size')}",
             f"seed {training.get('seed')}"]
    init = (training.get("model") or {}).get("init_from")
    if init:
        parts.append(f"from {init}")
    if sources:
        parts.append(f"data {', '.join(sources)}")
    return ", ".join(parts) + " (all settings: refalign info --json)"
