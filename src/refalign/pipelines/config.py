"""``refalign.json``: what a checkpoint needs beyond the diffusers components (DESIGN §4).

It holds the alignment defaults (which diffusion step and transformer layer to read, post-processing
thresholds), refinement defaults, the model's working resolution, and the training config that produced the
checkpoint. It is written beside ``model_index.json`` by ``RefineByAlignPipeline.save_pretrained``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refalign.errors import CheckpointError

FORMAT_VERSION = 1
FILE_NAME = "refalign.json"


@dataclass
class AlignmentDefaults:
    """Where and how the alignment stage (paper Algorithm 1) reads cross-attention.

    Attributes:
        step: index into the sampler's schedule of ``num_inference_steps`` steps (0 = the first, noisiest step)
            at which the map is read. The paper reads ``t = 0`` of 50 DDIM steps at inference.
        layer: transformer block, numbered in U-Net order down → mid → up from 0 (paper: ``l = 9`` of 16).
        num_inference_steps: length of the schedule that ``step`` indexes.
        noise_z: a token is a ViT noise peak (§A.4) when it exceeds its neighbourhood by this many robust
            standard deviations.
        threshold: fraction of the cleaned map's maximum above which a token belongs to ``M*``.
        score: mIoU of these settings on the set they were searched on (``None`` if never searched).
    """

    step: int = 0
    layer: int = 9
    num_inference_steps: int = 50
    noise_z: float = 4.0
    threshold: float = 0.5
    score: float | None = None


@dataclass
class RefinementDefaults:
    """Sampling defaults of the refinement stage (paper §3.5)."""

    num_inference_steps: int = 50
    guidance_scale: float = 2.5
    context: float = 2.0
    min_window: int = 64


@dataclass
class RefalignConfig:
    """Everything in ``refalign.json``."""

    preset: str = "tiny"
    resolution: int = 64
    alignment: AlignmentDefaults = field(default_factory=AlignmentDefaults)
    refinement: RefinementDefaults = field(default_factory=RefinementDefaults)
    training: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = FILE_NAME) -> "RefalignConfig":
        data = dict(data)
        version = data.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{source}: format version {version} is newer than this refalign supports; upgrade refalign")
        try:
            alignment = AlignmentDefaults(**data.pop("alignment", {}))
            refinement = RefinementDefaults(**data.pop("refinement", {}))
            return cls(alignment=alignment, refinement=refinement, **data)
        except TypeError as exc:
            raise CheckpointError(f"{source}: unexpected content ({exc}); re-save the checkpoint") from None

    def save(self, path: str | Path) -> None:
        from refalign.files import write_bytes_atomic

        write_bytes_atomic(path, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> "RefalignConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing; this folder is not a refalign checkpoint") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc}); re-save the checkpoint") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: expected a JSON object; re-save the checkpoint")
        return cls.from_dict(data, source=str(path))
