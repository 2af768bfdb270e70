"""The built-in examples that ``refalign example`` refines.

* ``photo`` (the default): two real photos of one backpack shipped with the package (``assets/example/``, credit
  and licence in ``CREDITS.md`` there). The print of the woven label on one photo gets a deterministic generative
  artifact (:func:`damage_print`: the strokes melted and smeared, blurred, with colour noise) and plays the
  generated image; the other photo, taken elsewhere from another viewpoint, is the reference. The undamaged photo
  is kept as the target, so the example can report how much refinement helped.
* ``procedural``: :func:`make_example` renders a procedural object (:mod:`refalign.data.procedural`: a mosaic of
  unique local patterns with printed glyphs) in two views on different backgrounds; view A gets a synthetic
  artifact (:mod:`refalign.eval.synth`: shuffled detail over a detailed part), view B is the reference. The objects
  come from a seed outside the range the default model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np

from refalign.data.procedural import render_view, textured_object
from refalign.eval.synth import apply_artifact, detail_map, free_form_mask, pick_detailed_location
from refalign.files import load_image

EXAMPLE_SEED = 20250124
EXAMPLE_KINDS = ("photo", "procedural")

#: The photo pair: the image whose print is damaged, and the reference (another photo of the same backpack).
PHOTO_IMAGE = "backpack-02.jpg"
PHOTO_REFERENCE = "backpack-03.jpg"
#: The print of the woven label on ``PHOTO_IMAGE`` (640x640): centre ``(y, x)`` and half-axes ``(x, y)`` of the
#: ellipse painted over it as the artifact mask.
PRINT_CENTRE = (511, 466)
PRINT_AXES = (24, 16)


@dataclass
class Example:
    image: np.ndarray  # (H, W, 3) uint8, the photo/view with the artifact
    mask: np.ndarray  # (H, W) bool, the artifact
    reference: np.ndarray  # (H', W', 3) uint8, another photo/view of the object
    reference_mask: np.ndarray | None  # (H', W') bool, the object in the reference (None: not known)
    target: np.ndarray  # (H, W, 3) uint8, the image before the artifact
    artifact_kind: str
    description: str = ""


def assets_dir() -> Path:
    """The folder of the shipped example photos and their ``CREDITS.md``."""
    return Path(str(files("refalign") / "assets" / "example"))


def load_example(kind: str = "photo") -> Example:
    """The example of ``kind`` (one of :data:`EXAMPLE_KINDS`), built deterministically."""
    if kind == "photo":
        return photo_example()
    if kind == "procedural":
        return make_example()
    raise ValueError(f"unknown example kind {kind!r}; choose from {', '.join(EXAMPLE_KINDS)}")


def print_mask(shape: tuple[int, int], centre: tuple[int, int] = PRINT_CENTRE,
               axes: tuple[int, int] = PRINT_AXES) -> np.ndarray:
    """The artifact mask of the photo example: a filled ellipse over the label's print, as a user would paint it."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.ellipse(mask, (int(centre[1]), int(centre[0])), (int(axes[0]), int(axes[1])), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def damage_print(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, noise: float = 14.0) -> np.ndarray:
    """A generative model's typical failure on small print, inside ``mask`` only: the strokes melted and smeared
    (the ``garbled`` artifact of :mod:`refalign.eval.synth`: a smooth random displacement field, then a blur), a
    further blur (σ = 1.5 px) and colour noise (a smooth per-channel field of amplitude ``noise`` plus a third of
    that as fine grain). Pixels outside ``mask`` are untouched."""
    smeared = apply_artifact("garbled", image, mask, rng).astype(np.float32)
    smeared = cv2.GaussianBlur(smeared, (0, 0), 1.5)
    h, w = mask.shape
    field = cv2.GaussianBlur(rng.standard_normal((h, w, 3)).astype(np.float32), (0, 0), 4.0)
    field *= noise / max(1e-6, float(np.abs(field[mask]).max()))
    grain = rng.standard_normal((h, w, 3)).astype(np.float32) * (noise / 3.0)
    damaged = np.clip(np.round(smeared + field + grain), 0, 255).astype(np.uint8)
    out = image.copy()
    out[mask] = damaged[mask]
    return out


def photo_example(seed: int = EXAMPLE_SEED) -> Example:
    """The real photo pair with the label's print damaged on one photo (about 0.3 % of the image)."""
    folder = assets_dir()
    target = load_image(folder / PHOTO_IMAGE)
    reference = load_image(folder / PHOTO_REFERENCE, what="reference")
    mask = print_mask(target.shape[:2])
    image = damage_print(target, mask, np.random.default_rng(seed))
    return Example(image=image, mask=mask, reference=reference, reference_mask=None, target=target,
                   artifact_kind="smeared print",
                   description="a backpack's woven label, its print smeared, repaired from another photo")


def make_example(seed: int = EXAMPLE_SEED, *, size: int = 512, artifact_kind: str = "shuffled") -> Example:
    """Render the procedural example deterministically from ``seed``; the artifact covers about 1.5–3 % of the
    image."""
    rng = np.random.default_rng(seed)
    texture, obj = textured_object(rng, size=size // 2)
    target, obj_a = render_view(texture, obj, rng, size, jitter=True)
    reference, obj_b = render_view(texture, obj, rng, size, jitter=True)
    radius = max(8, int(0.11 * size))
    centre = pick_detailed_location(detail_map(target, obj_a, radius), rng, top_fraction=0.2)
    mask = free_form_mask(target.shape[:2], centre, radius, rng) & obj_a
    image = apply_artifact(artifact_kind, target, mask, rng)
    return Example(image=image, mask=mask, reference=reference, reference_mask=obj_b, target=target,
                   artifact_kind=artifact_kind,
                   description="a procedural object, a patch of its detail shuffled, repaired from a second view")
