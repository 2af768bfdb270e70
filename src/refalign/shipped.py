"""The model shipped inside the package (``refalign/default_model``, a ``tiny`` refiner; its model card is the
``README.md`` in that folder).

>>> from refalign import default_model_path
>>> (default_model_path() / "model_index.json").is_file()
True
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from refalign.errors import CheckpointError


def default_model_path() -> Path:
    """The folder of the shipped model, to pass to ``RefineByAlignPipeline.from_pretrained`` (which also loads it
    when called without an argument). Raises :class:`~refalign.errors.CheckpointError` when this installation of
    refalign has no model (a build without its package data)."""
    path = Path(str(files("refalign") / "default_model"))
    if not (path / "model_index.json").is_file():
        raise CheckpointError(f"{path}: this refalign is installed without its default model; reinstall it, or "
                              "give the path of a checkpoint folder")
    return path
