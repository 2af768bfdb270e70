"""``refalign info PATH``: what a checkpoint holds."""

from __future__ import annotations

import json
from typing import Optional

import typer

from refalign.cli._common import handle_errors, resolve_model


@handle_errors
def info(
    path: Optional[str] = typer.Argument(None, help="Checkpoint folder (default: the shipped model)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Print a checkpoint's components, parameter counts and alignment defaults."""
    from refalign.pipelines.summary import summarize_checkpoint

    summary = summarize_checkpoint(resolve_model(path))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"checkpoint   {summary['path']}")
    typer.echo(f"preset       {summary['preset']}  (resolution {summary['resolution']} px)")
    for name, comp in summary["components"].items():
        params = f"{comp['parameters']:>12,} params" if comp["parameters"] is not None else ""
        typer.echo(f"  {name:<18} {comp['class']:<26} {params}")
    typer.echo(f"total        {summary['total_parameters']:,} parameters")
    a = summary["alignment"]
    score = f", searched mIoU {a['score']:.3f}" if a.get("score") is not None else ""
    typer.echo(f"alignment    step {a['step']} of {a['num_inference_steps']}, layer {a['layer']} of "
               f"{summary['num_cross_attention_layers']} cross-attention layers{score}")
    typer.echo(f"token grid   {summary['token_grid'][0]}x{summary['token_grid'][1]} reference tokens")
    r = summary["refinement"]
    steps = f"{r['num_inference_steps']} step{'s' if r['num_inference_steps'] != 1 else ''}"
    samples = f" x {r['num_samples']} samples averaged" if r.get("num_samples", 1) > 1 else ""
    detail = " with reference detail" if r["detail_transfer"] else ""
    typer.echo(f"refinement   {steps}{samples} ({summary['timestep_spacing']} spacing), guidance "
               f"{r['guidance_scale']}, strength {r['strength']} ({r['masked_content']} start), {r['paste_mode']} paste"
               f"{detail}, predicts {summary['prediction_type']}, masked input "
               f"{summary['masked_fill']}, warped-reference guidance {'on' if summary['warped_guidance'] else 'off'}")
    if summary.get("training"):
        typer.echo(f"trained with {json.dumps(summary['training'])[:200]}")
