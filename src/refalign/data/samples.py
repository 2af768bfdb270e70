"""Training-sample builders for the two modes of paper §3.4, matching the inference geometry.

Every builder returns numpy arrays (uint8 images, bool masks):

``image`` (R, R, 3)      the clean target window ``I_o`` (the model sees it with ``mask`` blanked out);
``mask`` (R, R)          the artifact mask ``M_a`` in the window;
``reference`` (Rr, Rr, 3) the reference the encoder reads;
``correspondence`` (Rr, Rr) the region of ``reference`` that matches the artifact: ``M_a`` pushed through the same
                          crop, resize and ``T`` as the reference pixels (exact bookkeeping, §3.4);
``warped`` (R, R, 3), ``warp_valid`` (R, R)  warped-reference guidance (:mod:`refalign.guidance`, ours): the
                          reference pulled onto the window through the exact T (jittered by a pixel or so, as
                          registration would be), grey and invalid outside the reference region; dropped (all grey,
                          invalid) at rate ``warp_drop`` and always for multiview pairs, whose geometry is unknown;
``mode``                 :data:`MODES` id.

Geometry (shared with inference through :func:`refalign.windows.square_window`):

* **alignment** — window around the artifact with context ``align_context`` (4× its bbox, as the alignment stage
  uses), reference ``S(T(I_o ⊗ M_o))``: the whole object, background neutral grey, cropped to its bbox and padded
  square;
* **refinement** — zoom-in window with context ``refine_context`` (2×), reference ``S(T(I_o ⊗ M))`` with ``M`` the
  artifact mask (randomly dilated, since the inferred ``M*`` is a coarse blob), pixels outside ``M`` neutral grey,
  cropped to ``M``'s bbox and padded square — what the refinement stage feeds the encoder;
* **multiview** (refinement with a second photo) — the eroded object of photo B is the artifact; photo A's object
  is the reference. Its ``correspondence`` is A's whole object (approximate: views differ), hence its own id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from refalign.data.masks import MaskSpec, sample_artifact_mask
from refalign.data.perturb import (
    ColorSpec,
    GeometrySpec,
    apply_color,
    sample_color,
    sample_geometry,
    warp_image,
    warp_mask,
)
from refalign.fill import GREY
from refalign.guidance import empty_guidance, jitter, warp_to_window
from refalign.mask_ops import dilate
from refalign.windows import (
    Window, crop, crop_square, mask_bbox, resize_image, resize_mask, square_box, square_window, window_to_source,
)

MODES = {"alignment": 0, "refinement": 1, "multiview": 2}


@dataclass
class ObjectPhoto:
    """One photo of an object: ``image`` (H, W, 3) uint8, ``mask`` (H, W) bool object mask, ``group`` (photos of
    the same object share it), ``name`` and where the mask came from (``file``, ``grabcut``, ``annotation``,
    ``procedural``). ``detail`` is the optional detail map used to place artifacts over unpredictable content."""

    image: np.ndarray
    mask: np.ndarray
    group: str
    name: str
    mask_source: str = "file"
    detail: np.ndarray | None = None


@dataclass
class SampleSpec:
    """Sizes and randomness of sample synthesis.

    ``resolution`` is the model's window side R, ``reference_size`` the encoder's input side Rr. The window
    geometry the pipeline must share — ``align_context``, ``refine_context``, ``min_window`` (the smallest window
    in source pixels) and the neutral ``fill`` grey — is read from the model's ``refalign.json``
    (:func:`refalign.training.data_setup.sample_spec`), which training writes."""

    resolution: int = 64
    reference_size: int = 64
    align_context: float = 4.0
    refine_context: float = 2.0
    min_window: int = 64
    refine_dilate_max: float = 0.15  # dilation of the refinement reference region, fraction of the artifact bbox
    multiview_erode: tuple[float, float] = (0.03, 0.1)  # erosion radius, fraction of the object bbox side
    masks: MaskSpec = field(default_factory=MaskSpec)
    color: ColorSpec = field(default_factory=ColorSpec)
    geometry: GeometrySpec = field(default_factory=GeometrySpec)
    warp_drop: float = 0.3  # share of samples whose warped-reference guidance is dropped
    warp_jitter: float = 1.0  # registration error simulated on the guidance warp, window pixels
    fill: int = GREY  # grey outside the reference region, of the padding and of missing guidance


def resize_mask_exact(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a bool mask the way its pixels are resized: a target pixel is marked when at least half of it is
    covered (area average when shrinking, bilinear when enlarging)."""
    m = mask.astype(np.float32)
    if m.shape == (size, size):
        return mask.astype(bool).copy()
    interp = cv2.INTER_AREA if size * size < m.size else cv2.INTER_LINEAR
    return cv2.resize(m, (size, size), interpolation=interp) >= 0.5


def square_crop_of_region(region: np.ndarray, pad_frac: float = 0.0) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square around ``region``'s bbox (centred, may stick out of the image)."""
    return square_box(mask_bbox(region), 1.0 + pad_frac).as_tuple()


def make_reference(
    image: np.ndarray,
    region: np.ndarray,
    tracked: list[np.ndarray],
    size: int,
    rng: np.random.Generator | None,
    spec: SampleSpec,
    *,
    geometric: bool = True,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """``S(T(image ⊗ region))``: grey outside ``region``, cropped to its bbox, padded square, resized to ``size``,
    warped by a random T and colour-perturbed by S. Each mask in ``tracked`` goes through the same crop, resize and
    T (and is limited to the region). ``rng=None`` applies no perturbation.

    Returns ``(reference, tracked masks, matrix)`` with ``matrix`` the 3×3 map from ``image`` pixel coordinates to
    reference pixel coordinates (crop, resize and T composed)."""
    top, left, side = square_crop_of_region(region)
    matrix = np.linalg.inv(window_to_source(Window(top, left, side), size))
    seg = np.where(region[..., None], image, np.uint8(spec.fill)).astype(np.uint8)
    ref = resize_image(crop_square(seg, Window(top, left, side), spec.fill), size)
    keep = resize_mask_exact(crop_square(region, Window(top, left, side), False), size)
    masks = [resize_mask_exact(crop_square(m & region, Window(top, left, side), False), size) for m in tracked]
    if rng is not None and geometric:
        h = sample_geometry(rng, spec.geometry, size)
        warped = [warp_mask(m, h, size) for m in masks]
        if all(w.any() for w, m in zip(warped, masks) if m.any()):  # never push the correspondence out of frame
            ref = warp_image(ref, h, size, spec.fill)
            keep = warp_mask(keep, h, size)
            masks = warped
            matrix = h @ matrix
    if rng is not None:
        ref = apply_color(ref, sample_color(rng, spec.color), keep=keep)
    return ref, masks, matrix


def window_sample(
    photo: ObjectPhoto, artifact: np.ndarray, context: float, spec: SampleSpec
) -> tuple[np.ndarray, np.ndarray, Window]:
    """The window of ``context`` × the artifact's box at the model's resolution: ``(image, mask, window)``."""
    win = square_window(mask_bbox(artifact), artifact.shape, context=context, min_size=spec.min_window)
    image = resize_image(crop(photo.image, win), spec.resolution)
    mask = resize_mask(crop(artifact, win), spec.resolution, conservative=True)
    return image, mask, win


def _guidance(ref: np.ndarray, region: np.ndarray, matrix: np.ndarray, win: Window, rng: np.random.Generator,
              spec: SampleSpec) -> dict:
    """``warped``/``warp_valid`` of a sample: ``region`` of ``ref`` pulled onto the window (photo → reference
    ``matrix``), jittered, or dropped at rate ``spec.warp_drop``."""
    if rng.random() < spec.warp_drop:
        warped, valid = empty_guidance(spec.resolution, spec.fill)
        return {"warped": warped, "warp_valid": valid}
    to_ref = jitter(matrix @ window_to_source(win, spec.resolution), rng, spec.warp_jitter, spec.resolution)
    return guidance_through(ref, region, to_ref, spec)


def guidance_through(ref: np.ndarray, region: np.ndarray, to_ref: np.ndarray, spec: SampleSpec) -> dict:
    """``warped``/``warp_valid``: ``region`` of ``ref`` pulled onto the window through ``to_ref`` (window frame →
    reference; :func:`refalign.guidance.warp_to_window`)."""
    warped, valid = warp_to_window(ref, region, to_ref, spec.resolution, spec.fill)
    return {"warped": warped, "warp_valid": valid}


def alignment_sample(photo: ObjectPhoto, rng: np.random.Generator, spec: SampleSpec) -> dict:
    """Alignment mode (§3.4): the whole perturbed object references an artifact inside it."""
    artifact = sample_artifact_mask(photo.mask, rng, spec.masks, photo.detail)
    image, mask, win = window_sample(photo, artifact, spec.align_context, spec)
    ref, (corr, obj), matrix = make_reference(photo.image, photo.mask, [artifact, photo.mask], spec.reference_size,
                                              rng, spec)
    return {"image": image, "mask": mask, "reference": ref, "correspondence": corr, "mode": MODES["alignment"],
            **_guidance(ref, obj, matrix, win, rng, spec)}


def refinement_sample(photo: ObjectPhoto, rng: np.random.Generator, spec: SampleSpec) -> dict:
    """Refinement mode (§3.4): only the perturbed local region references the artifact (zoom-in window)."""
    artifact = sample_artifact_mask(photo.mask, rng, spec.masks, photo.detail)
    image, mask, win = window_sample(photo, artifact, spec.refine_context, spec)
    t, l, b, r = mask_bbox(artifact)
    radius = int(round(rng.uniform(0, spec.refine_dilate_max) * max(b - t, r - l)))
    region = dilate(artifact, radius)
    ref, (corr, keep), matrix = make_reference(photo.image, region, [artifact, region], spec.reference_size, rng, spec)
    return {"image": image, "mask": mask, "reference": ref, "correspondence": corr, "mode": MODES["refinement"],
            **_guidance(ref, keep, matrix, win, rng, spec)}


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    out = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
    return out if out.any() else mask.copy()


def multiview_sample(ref_photo: ObjectPhoto, photo: ObjectPhoto, rng: np.random.Generator, spec: SampleSpec) -> dict:
    """Multi-view refinement (§3.4, MVObj): ``photo``'s eroded object is the artifact, ``ref_photo``'s object
    the reference."""
    t, l, b, r = mask_bbox(photo.mask)
    artifact = erode(photo.mask, int(rng.uniform(*spec.multiview_erode) * max(b - t, r - l)))
    image, mask, _ = window_sample(photo, artifact, spec.refine_context, spec)
    ref, (corr,), _ = make_reference(ref_photo.image, ref_photo.mask, [ref_photo.mask], spec.reference_size, rng, spec)
    warped, valid = empty_guidance(spec.resolution)  # the views' geometry is unknown
    return {"image": image, "mask": mask, "reference": ref, "correspondence": corr, "mode": MODES["multiview"],
            "warped": warped, "warp_valid": valid}
