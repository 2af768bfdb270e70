"""``refalign train``: train a refiner in both modes of paper §3.4 (also ``accelerate launch -m refalign.cli train``)."""

from __future__ import annotations

from typing import List, Optional

import typer

from refalign.cli._common import handle_errors


@handle_errors
def train(
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Training YAML (e.g. configs/tiny.yaml)."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Where checkpoints, logs and final/ go."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps to train for."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Save checkpoint-N every N steps."),
    resume: Optional[str] = typer.Option(None, "--resume", help="'latest' or a checkpoint-N folder."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: --set optim.lr_unet=1e-4."),
) -> None:
    """Train a refiner (flags override the YAML; the resolved config is saved beside every checkpoint)."""
    from refalign.training.config import load_config
    from refalign.training.trainer import train as run

    sets = list(overrides or [])
    for key, value in (("output_dir", output_dir), ("max_steps", max_steps), ("checkpoint_every", checkpoint_every)):
        if value is not None:
            sets.append(f"{key}={value}")
    cfg = load_config(config, sets)
    final = run(cfg, resume=resume)
    typer.echo(f"final model: {final}")
