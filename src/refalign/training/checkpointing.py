"""``checkpoint-N`` folders: each a complete ``RefineByAlignPipeline.save_pretrained`` folder (EMA weights when EMA
is on; ``refalign.json`` → ``training`` holds the resolved config and the step) plus ``accelerate/`` with the raw
weights, optimizer, scheduler, EMA and RNG state for ``--resume latest``."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from refalign.errors import InputError, RefalignError

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
    a path → that checkpoint folder. The training state of the chosen checkpoint is checked file by file
    (:func:`check_training_state`) before anything is built or written; when the newest is damaged, the error
    names the previous complete one to resume from instead."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            logger.info("--resume latest: no checkpoint in %s yet, starting from step 0", output_dir)
            return None
        path = found[-1]
    else:
        path = Path(resume)
        if not path.exists():
            raise InputError(f"{path}: no such checkpoint folder; use --resume latest or a checkpoint-N folder")
        if not (path / STATE_DIR).is_dir() or _step_or(path, -1) < 0:
            raise InputError(f"{path}: not a training checkpoint (a {PREFIX}N folder with {STATE_DIR}/ in it); use "
                             "--resume latest or a checkpoint-N folder")
    try:
        check_training_state(path)
    except InputError as exc:
        older = [p for p in list_checkpoints(path.parent)
                 if checkpoint_step(p) < _step_or(path, 1 << 62) and _is_complete(p)]
        offer = f"resume from the previous complete checkpoint with --resume {older[-1]}" if older else \
            "start again without --resume"
        raise InputError(f"{exc}; {offer}, or delete {path}") from None
    return path


def _step_or(path: Path, default: int) -> int:
    m = re.fullmatch(rf"{PREFIX}(\d+)", path.name)
    return int(m.group(1)) if m else default


def _is_complete(path: Path) -> bool:
    try:
        check_training_state(path)
    except InputError:
        return False
    return True


def check_training_state(folder: Path) -> None:
    """Refuse a checkpoint whose ``accelerate/`` training state is missing or has an empty, truncated or corrupt
    file (safetensors: header and size; ``torch.save`` files: their zip directory and every member's CRC), with
    one line naming the file — instead of a traceback from deep inside ``accelerate.load_state``."""
    import pickletools
    import zipfile

    from refalign.pipelines.checkpoint import check_safetensors

    state = Path(folder) / STATE_DIR
    files = sorted(p for p in state.rglob("*") if p.is_file()) if state.is_dir() else []
    if not files:
        raise InputError(f"{state}: training state missing or empty; the checkpoint is incomplete")
    for f in files:
        if f.suffix == ".safetensors":
            try:
                check_safetensors(f)
            except RefalignError as exc:
                raise InputError(str(exc).split("; ")[0] + " (training state is damaged)") from None
        elif f.suffix in (".bin", ".pkl", ".pt"):
            try:
                if zipfile.is_zipfile(f):  # torch.save's format
                    with zipfile.ZipFile(f) as z:
                        bad = z.testzip()
                    if bad is not None:
                        raise ValueError(f"member {bad} fails its checksum")
                else:  # a plain pickle: read its opcodes to STOP without running any of them
                    with f.open("rb") as fh:
                        for _ in pickletools.genops(fh):
                            pass
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise InputError(f"{f}: truncated or corrupt training state file ({exc})") from None


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
