"""``checkpoint-N`` folders: each a complete ``RefineByAlignPipeline.save_pretrained`` folder (EMA weights when EMA
is on; ``refalign.json`` → ``training`` holds the resolved config and the step) plus ``accelerate/`` with the raw
weights, optimizer, scheduler, EMA and RNG state for ``--resume latest``."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from refalign.errors import InputError

logger = logging.getLogger(__name__)
PREFIX = "checkpoint-"
STATE_DIR = "accelerate"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-N`` folders (with accelerate state), oldest first."""
    out = []
    for p in Path(output_dir).glob(f"{PREFIX}*"):
        m = re.fullmatch(rf"{PREFIX}(\d+)", p.name)
        if m and p.is_dir() and (p / STATE_DIR).is_dir() and (p / "refalign.json").is_file():
            out.append((int(m.group(1)), p))
    return [p for _, p in sorted(out)]


def checkpoint_step(path: Path) -> int:
    return int(path.name[len(PREFIX) :])


def resolve_resume(output_dir: str | Path, resume: str | None) -> Path | None:
    """``None`` → no resume; ``latest`` → the newest checkpoint (``None`` if there is none yet: a fresh start);
    a path → that checkpoint folder."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            logger.info("--resume latest: no checkpoint in %s yet, starting from step 0", output_dir)
            return None
        return found[-1]
    path = Path(resume)
    if not (path / STATE_DIR).is_dir():
        raise InputError(f"{path}: not a training checkpoint (no {STATE_DIR}/ folder); use --resume latest or a checkpoint-N folder")
    return path


def rotate(output_dir: str | Path, limit: int | None) -> None:
    """Delete the oldest checkpoints beyond ``limit``."""
    if not limit or limit < 1:
        return
    found = list_checkpoints(output_dir)
    for old in found[: max(0, len(found) - limit)]:
        logger.info("removing old checkpoint %s (checkpoints_total_limit=%d)", old, limit)
        shutil.rmtree(old, ignore_errors=True)


def save_pipeline(pipe, model, ema, folder: Path, training: dict) -> None:
    """Write the pipeline folder with the current (or EMA) weights and the training record."""
    params = [p for p in model.parameters() if p.requires_grad]
    if ema is not None:
        ema.store(params)
        ema.copy_to(params)
    try:
        pipe.refalign_config.training = training
        pipe.save_pretrained(folder)
    finally:
        if ema is not None:
            ema.restore(params)
