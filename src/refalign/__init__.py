"""refalign — reference-guided artifact refinement after *Refine-by-Align* (Song et al., ICLR 2025).

Importing the package does no work: the names below load on first access (``dir(refalign)`` lists them).

>>> import refalign
>>> pipe = refalign.RefineByAlignPipeline.from_pretrained()  # the model shipped with refalign
>>> example = refalign.load_example()  # a real photo pair: a backpack's label, its print damaged
>>> result = pipe(example.image, example.mask, example.reference, seed=0)
>>> result.image.shape
(640, 640, 3)
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
    "default_model_path": "refalign.shipped",
    "load_example": "refalign.examples",
    "load_image": "refalign.files",
    "save_image": "refalign.files",
    "RefalignError": "refalign.errors",
    "InputError": "refalign.errors",
    "CheckpointError": "refalign.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'refalign' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from refalign.errors import CheckpointError, InputError, RefalignError
    from refalign.examples import load_example
    from refalign.files import load_image, save_image
    from refalign.models.codecs import PixelUnshuffleCodec
    from refalign.models.presets import build_components
    from refalign.models.reference_encoder import ReferenceEncoder
    from refalign.pipelines.config import AlignmentDefaults, RefalignConfig
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline
    from refalign.shipped import default_model_path
