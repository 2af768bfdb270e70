"""Checks of numbers before any work: finiteness and range of options and config values, and of model outputs.

A NaN or infinite option (``--guidance inf``, ``--set optim.lr_unet=.nan``) does not fail loudly by itself: it
flows through the sampler or the optimizer and comes out as a black blob or NaN weights with exit code 0. Every
number a user can set is therefore checked here, where it enters, and refused with one line that names the option
and the accepted range (:class:`~refalign.errors.InputError`, exit code 2; DESIGN §5). Arrays the model returns
are checked before they are pasted (:func:`require_finite`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

import numpy as np

from refalign.errors import InputError, RefalignError

#: Seeds accepted by ``torch.Generator.manual_seed`` (and the CLI's ``--seed``): ``0 ≤ seed ≤ 2^64 − 1``.
MAX_SEED = 2**64 - 1


class NonFiniteError(RefalignError):
    """A model output or a training loss that is NaN or infinite; nothing is written from it."""


def _interval(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return "a finite number"


def check_number(
    value: Any,
    name: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
    error: type[RefalignError] = InputError,
) -> Any:
    """Return ``value`` when it is a finite number (a whole one with ``integer``) inside the interval; otherwise
    raise ``error`` with one line naming ``name``, the value and the accepted range. ``None`` passes through
    (an option left at its default)."""
    if value is None:
        return None
    kind = "a whole number" if integer else "a number"
    accepted = _interval(lo, hi, lo_open, hi_open)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise error(f"{name} {value!r}: must be {kind} {accepted}".rstrip())
    if integer and not isinstance(value, (int, np.integer)):
        raise error(f"{name} {value!r}: must be {kind} {accepted}")
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise error(f"{name} {value}: must be a finite number {accepted}; NaN and infinity are not accepted")
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        raise error(f"{name} {value}: out of range; accepted: {accepted}")
    return value


def check_seed(seed: Any, name: str = "--seed") -> Any:
    """A seed ``torch.Generator.manual_seed`` accepts: a whole number from 0 to 2^64 − 1."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise InputError(f"{name} {seed}: must be a whole number from 0 to 2^64-1 ({MAX_SEED})")
    return seed


def check_steps(steps: Any, num_train_timesteps: int, name: str = "--steps") -> Any:
    """Sampling steps: at least 1, at most the scheduler's training timesteps (a DDIM schedule cannot have more)."""
    return check_number(steps, name, lo=1, hi=num_train_timesteps, integer=True)


def num_train_timesteps(model_folder: str | Any) -> int:
    """The ``num_train_timesteps`` of a checkpoint's scheduler, read from its JSON without loading anything
    (1000, diffusers' default, when the file does not say)."""
    import json
    from pathlib import Path

    path = Path(model_folder) / "scheduler" / "scheduler_config.json"
    try:
        value = json.loads(path.read_text()).get("num_train_timesteps", 1000)
    except (OSError, ValueError, AttributeError):
        return 1000  # the checkpoint check that follows names a missing or broken file
    return int(value) if isinstance(value, int) and value >= 1 else 1000


def _field_types(hint) -> tuple[set[type], bool]:
    """The plain types a field annotation allows, and whether it allows ``None``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        kinds: set[type] = set()
        for a in args:
            if a is not type(None):
                kinds |= _field_types(a)[0]
        return kinds, type(None) in args
    return ({hint} if isinstance(hint, type) else set()), False


def check_fields(obj: Any, source: str, *, prefix: str = "", error: type[RefalignError] = InputError) -> None:
    """Walk a (nested) dataclass and refuse any field whose value does not have its annotated type (``int`` for an
    ``int`` field, a number for a ``float`` one, ...), and any non-finite float, with one line naming
    ``source`` and the dotted key. Fields typed otherwise (dicts, ``Any``) are only checked for finiteness."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_fields(value, source, prefix=f"{key}.", error=error)
            continue
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    check_fields(item, source, prefix=f"{key}[{i}].", error=error)
                else:
                    _check_finite(item, f"{key}[{i}]", source, error)
            continue
        kinds, optional = _field_types(hints.get(f.name, Any))
        if value is None and optional:
            continue
        if kinds & {int, float, bool, str}:
            ok = (
                (bool in kinds and isinstance(value, bool))
                or (int in kinds and isinstance(value, int) and not isinstance(value, bool))
                or (float in kinds and isinstance(value, (int, float)) and not isinstance(value, bool))
                or (str in kinds and isinstance(value, str))
            )
            if not ok:
                names = " or ".join(sorted(k.__name__ for k in kinds)) + (" or null" if optional else "")
                raise error(f"{source}: {key} must be {names}, got {value!r}")
        _check_finite(value, key, source, error)


def _check_finite(value: Any, key: str, source: str, error: type[RefalignError]) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"{source}: {key} is {value}; give a finite number")


def require_finite(array: Any, what: str) -> Any:
    """Return ``array`` (numpy or torch) when every element is finite; otherwise raise :class:`NonFiniteError`
    naming ``what`` and the share of bad values. Used on every model output before it is decoded or pasted."""
    values = array.detach().float().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
    if values.dtype.kind in "fc":
        bad = ~np.isfinite(values)
        if bad.any():
            raise NonFiniteError(
                f"{what}: {100.0 * bad.mean():.1f}% of the values are NaN or infinite; nothing was pasted. The model's "
                "weights or the sampling settings (--guidance, --steps) are broken; check them or use another model"
            )
    return array


def finite_or_none(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a metrics record with NaN and infinite floats as ``None``, so ``json.dumps(..., allow_nan=False)``
    writes strict JSON (``NaN`` is not JSON; strict readers reject the whole line)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


#: Accepted ranges of the numbers in ``refalign.json`` (``key: (lo, hi, lo_open)``; ``None`` = unbounded).
REFALIGN_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "resolution": (8, None, False),
    "alignment.step": (0, None, False),
    "alignment.layer": (0, None, False),
    "alignment.num_inference_steps": (1, None, False),
    "alignment.noise_z": (0.0, None, False),
    "alignment.threshold": (0.0, 1.0, False),
    "alignment.context": (0.0, None, True),
    "alignment.min_window": (1, None, False),
    "alignment.seed": (0, MAX_SEED, False),
    "refinement.num_inference_steps": (1, None, False),
    "refinement.guidance_scale": (0.0, None, False),
    "refinement.context": (0.0, None, True),
    "refinement.min_window": (1, None, False),
    "refinement.dilation": (0.0, None, False),
    "refinement.merge_growth": (1.0, None, False),
    "refinement.reference_context": (0.0, None, True),
    "refinement.reference_fill": (0, 255, False),
    "refinement.strength": (0.0, 1.0, True),
    "refinement.feather": (0.0, None, False),
    "refinement.num_samples": (1, None, False),
    "refinement.ramp": (0.0, None, False),
}


def check_refalign_config(config: Any, source: str, error: type[RefalignError] = InputError) -> None:
    """Types (from the field annotations), finiteness and ranges of a ``RefalignConfig``'s numbers, each refused
    with one line naming ``source``, the key and the accepted range — so ``"num_inference_steps": "ten"`` fails
    when the checkpoint is read, not as a ``ValueError`` in the middle of sampling."""
    check_fields(config, source, error=error)
    check_ranges(config, REFALIGN_RANGES, source, error)
    a = config.alignment
    if a.step >= a.num_inference_steps:
        raise error(f"{source}: alignment.step {a.step} must be below alignment.num_inference_steps "
                    f"{a.num_inference_steps}")


def check_ranges(config: Any, ranges: dict[str, tuple[float | None, float | None, bool]], source: str,
                 error: type[RefalignError] = InputError) -> None:
    """Check each dotted ``key`` of ``ranges`` (``(lo, hi, lo_open)``) on ``config``; ``None`` values pass."""
    for key, (lo, hi, lo_open) in ranges.items():
        node = config
        for part in key.split("."):
            node = getattr(node, part)
        check_number(node, f"{source}: {key}", lo=lo, hi=hi, lo_open=lo_open, error=error)


#: Accepted ranges of the training config's numbers (types and finiteness are checked for every field).
TRAIN_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "seed": (0, MAX_SEED, False),
    "optim.lr_unet": (0.0, 1.0, False),
    "optim.lr_encoder": (0.0, 1.0, False),
    "optim.weight_decay": (0.0, None, False),
    "optim.adam_beta1": (0.0, 1.0, False),
    "optim.adam_beta2": (0.0, 1.0, False),
    "optim.adam_epsilon": (0.0, None, True),
    "optim.warmup_steps": (0, None, False),
    "optim.max_grad_norm": (0.0, None, False),
    "embedding_dropout": (0.0, 1.0, False),
    "ema_decay": (0.0, 1.0, False),
    "align_loss_weight": (0.0, None, False),
    "log_every": (1, None, False),
    "validate_every": (1, None, False),
    "time_limit_minutes": (0.0, None, True),
    "data.alignment_ratio": (0.0, 1.0, False),
    "data.multiview_ratio": (0.0, 1.0, False),
    "data.engine_ratio": (0.0, 1.0, False),
    "data.warp_drop": (0.0, 1.0, False),
    "data.warp_jitter": (0.0, None, False),
    "data.val_holdout": (0.0, 1.0, False),
    "data.max_side": (8, None, False),
    "data.min_window": (1, None, False),
    "data.num_workers": (0, None, False),
}


def check_train_config(config: Any, source: str) -> None:
    """Types, finiteness and ranges of a ``TrainConfig`` (``--set optim.lr_unet=.nan`` is refused here, before
    anything is built, instead of training to all-NaN weights)."""
    check_fields(config, source)
    check_ranges(config, TRAIN_RANGES, source)
