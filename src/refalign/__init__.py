"""refalign — reference-guided artifact refinement after *Refine-by-Align* (Song et al., ICLR 2025).

Importing the package does no work: the heavy names below load on first access.
"""

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "RefineByAlignPipeline": "refalign.pipelines.pipeline_refine_by_align",
    "RefalignConfig": "refalign.pipelines.config",
    "AlignmentDefaults": "refalign.pipelines.config",
    "ReferenceEncoder": "refalign.models.reference_encoder",
    "PixelUnshuffleCodec": "refalign.models.codecs",
    "build_components": "refalign.models.presets",
    "RefalignError": "refalign.errors",
    "InputError": "refalign.errors",
    "CheckpointError": "refalign.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'refalign' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from refalign.errors import CheckpointError, InputError, RefalignError
    from refalign.models.codecs import PixelUnshuffleCodec
    from refalign.models.presets import build_components
    from refalign.models.reference_encoder import ReferenceEncoder
    from refalign.pipelines.config import AlignmentDefaults, RefalignConfig
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline
