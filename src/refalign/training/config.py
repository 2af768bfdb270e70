"""Typed training configuration. YAML files (``configs/*.yaml``) are its serialised form; the resolved config is
saved beside every checkpoint (``refalign.json`` → ``training``) and as ``<output_dir>/config.yaml``.

Overrides use dotted keys, e.g. ``--set optim.lr_unet=1e-4 --set data.alignment_ratio=0.7``; values are parsed
as YAML. Unknown keys and wrongly typed values are errors naming the key and the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from refalign.checks import check_train_config
from refalign.data.masks import MaskSpec
from refalign.data.perturb import ColorSpec, GeometrySpec
from refalign.errors import InputError
from refalign.files import write_bytes_atomic
from refalign.typed_config import build_typed, set_dotted

SOURCE_KINDS = ("procedural", "multiview", "coco", "engine")


PREDICTION_TYPES = (None, "epsilon", "v_prediction", "sample")


@dataclass
class ModelConfig:
    """Which model to build (:func:`refalign.models.presets.build_components`) or fine-tune (``init_from``)."""
    preset: str = "tiny"
    pretrained_model: str | None = None
    pretrained_dinov2: str | None = None
    init_from: str | None = None
    unet: dict[str, Any] = field(default_factory=dict)
    dinov2: dict[str, Any] = field(default_factory=dict)
    codec: dict[str, Any] = field(default_factory=dict)
    use_cls_token: bool = False
    #: the U-Net's output (scheduler ``prediction_type``): ``epsilon`` (the paper's, eq. 2), ``v_prediction`` or
    #: ``sample``; ``None`` keeps the preset's / ``init_from``'s. Saved with the scheduler, so inference follows.
    prediction_type: str | None = None
    #: extra U-Net inputs: the reference warped onto the window and its validity (refalign.guidance; ours)
    warped_guidance: bool = False
    #: the U-Net's masked-image input under the mask: zero (SD inpainting, the paper) or telea (refalign.fill; ours);
    #: None keeps the preset's / init_from's
    masked_fill: str | None = None
    #: x₀ = masked-image input + U-Net output (needs ``prediction_type: sample``; the output layer is zeroed when
    #: this is switched on, so training starts from the fill itself); None keeps the preset's / init_from's
    residual_prediction: bool | None = None
    #: the sampler's timestep spacing saved with the scheduler (``leading``, ``trailing``, ``linspace``); ``trailing``
    #: starts every schedule at the last training timestep, which few-step sampling needs; None keeps the current
    timestep_spacing: str | None = None


@dataclass
class SourceConfig:
    """One data source. ``procedural``: ``count`` objects × ``views``; ``multiview``: folder ``path``;
    ``coco``: annotation json ``path`` and image folder ``images``; ``engine``: ``count`` attempts of the transfer
    engine on the photos of folder ``path`` (:mod:`refalign.data.engine_pairs`; drawn at ``data.engine_ratio``).
    ``repeat`` weights a source by repetition (not ``engine``)."""
    kind: str = "procedural"
    path: str | None = None
    images: str | None = None
    count: int = 200
    views: int = 2
    size: int = 192
    seed: int = 0
    min_area: float = 0.02
    max_objects: int | None = None
    repeat: int = 1


@dataclass
class DataConfig:
    """Sources and synthesis settings (see :mod:`refalign.data.samples`)."""
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    max_side: int = 384
    cache_dir: str | None = None
    alignment_ratio: float = 0.5
    multiview_ratio: float = 0.2
    align_context: float = 4.0
    refine_context: float = 2.0
    min_window: int = 64
    refine_dilate_max: float = 0.15
    masks: MaskSpec = field(default_factory=MaskSpec)
    color: ColorSpec = field(default_factory=ColorSpec)
    geometry: GeometrySpec = field(default_factory=GeometrySpec)
    warp_drop: float = 0.3  # warped-reference guidance dropped for this share of samples (model.warped_guidance)
    warp_jitter: float = 1.0  # registration error simulated on the guidance warp, window pixels
    engine_ratio: float = 0.5  # share of samples drawn from the engine sources' pool (when there is one)
    num_workers: int = 0
    val_holdout: float = 0.1
    val_samples: int = 64
    val_seed: int = 1_000_003


@dataclass
class OptimConfig:
    """AdamW with separate learning rates for the reference encoder (projector, unconditional tokens, and the
    backbone when it is trainable) and the U-Net (paper §A.3)."""
    lr_unet: float = 1e-4
    lr_encoder: float = 1e-4
    weight_decay: float = 1e-2
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    lr_schedule: str = "constant_with_warmup"
    warmup_steps: int = 100
    max_grad_norm: float = 1.0


@dataclass
class TrainConfig:
    """Everything ``refalign train`` needs."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: str = "runs/tiny"
    seed: int = 0
    max_steps: int = 1000
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"  # auto = bf16 on GPU, no on CPU
    embedding_dropout: float = 0.1
    ema: bool = True
    ema_decay: float = 0.999
    #: weight of latent cells under the artifact mask in the diffusion loss, relative to 1 for the rest (1 = the
    #: paper's uniform eq. 2). Outside the mask the target is nearly given by the masked-image channels.
    mask_loss_weight: float = 1.0
    #: share of each batch whose timestep is drawn from the last 10 % of the schedule instead of uniformly (0 = the
    #: paper's uniform eq. 2). Few-step sampling evaluates the model there — one step only at t = T — so a model
    #: meant for it should learn to ignore the pure-noise input at high t (measured: noise leaking into a 1-step
    #: x₀ prediction showed as colour blotches).
    high_timestep_share: float = 0.0
    align_loss_weight: float = 0.0
    align_loss: str = "ce"  # ce | soft_iou
    align_layers: list[int] | None = None  # None = layers whose query grid equals the token grid
    checkpoint_every: int = 500
    checkpoints_total_limit: int | None = 3
    log_every: int = 10
    validate_every: int = 200
    time_limit_minutes: float | None = None  # stop (validate, save final) after this long; None = max_steps only
    progress: bool = True

    def validate(self, source: str = "config") -> None:
        checks = [
            (self.model.preset in ("tiny", "sd"), "model.preset must be tiny or sd"),
            (all(s.kind in SOURCE_KINDS for s in self.data.sources), f"data.sources[].kind must be one of {SOURCE_KINDS}"),
            (any(s.kind != "engine" for s in self.data.sources),
             "data.sources has no photo source; add a procedural, multiview or coco source"),
            (all(s.path for s in self.data.sources if s.kind in ("multiview", "engine")),
             "data.sources[]: a multiview or engine source needs a path (a folder of <object>/<photo> images)"),
            (self.batch_size >= 1 and self.gradient_accumulation_steps >= 1, "batch sizes must be >= 1"),
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (self.mixed_precision in ("auto", "no", "fp16", "bf16"), "mixed_precision must be auto, no, fp16 or bf16"),
            (self.align_loss in ("ce", "soft_iou"), "align_loss must be ce or soft_iou"),
            (self.model.prediction_type in PREDICTION_TYPES, f"model.prediction_type must be one of {PREDICTION_TYPES}"),
            (self.model.masked_fill in (None, "zero", "telea"), "model.masked_fill must be zero or telea"),
            (not self.model.residual_prediction or self.model.prediction_type in (None, "sample"),
             "model.residual_prediction needs model.prediction_type: sample"),
            (self.model.timestep_spacing in (None, "leading", "trailing", "linspace"),
             "model.timestep_spacing must be leading, trailing or linspace"),
            (self.mask_loss_weight > 0, "mask_loss_weight must be > 0 (1 = uniform loss)"),
            (0.0 <= self.high_timestep_share <= 1.0, "high_timestep_share must be in [0, 1]"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"{source}: {message}")
        check_train_config(self, source)


# ------------------------------------------------------------------------------------------ (de)serialisation
def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict (lists for tuples) suitable for YAML and JSON."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def from_dict(data: dict[str, Any], source: str = "config") -> TrainConfig:
    config = build_typed(TrainConfig, data, "", source)
    config.validate(source)
    return config


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (``None``: the defaults), apply overrides, check it."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise InputError(f"{path}: no such config file; see configs/tiny.yaml for an example") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    set_dotted(data, overrides or [])
    return from_dict(data, source)


def save_config(config: TrainConfig, path: str | Path) -> None:


    write_bytes_atomic(path, yaml.safe_dump(to_dict(config), sort_keys=False).encode())
