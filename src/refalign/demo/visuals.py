"""Pictures the web demo shows: the correspondence on the reference (paper Fig. 6) and a before/after panel.

Pure numpy/OpenCV functions on ``uint8 (H, W, 3)`` images and ``bool (H, W)`` masks; nothing here knows about
gradio or the model. The Fig. 6 overlay itself is :func:`refalign.attention.correspondence_overlay` (shared with
the alignment stage); this module only combines the windows' soft maps for it and adds the before/after panel.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

#: Colour of the region contour on the reference and of the artifact contour on the before/after panel (RGB).
CONTOUR_COLOR = (255, 230, 0)


def combine_soft_maps(maps: Iterable[np.ndarray]) -> np.ndarray | None:
    """Union of the soft maps of several zoom windows, each already on the reference (``(H_ref, W_ref)`` in
    ``[0, 1]``, :meth:`AlignmentOutput.soft_on_reference`): the per-pixel maximum. ``None`` when there is none."""
    maps = [np.asarray(m, dtype=np.float32) for m in maps if m is not None]
    if not maps:
        return None
    shape = maps[0].shape
    for m in maps[1:]:
        if m.shape != shape:
            raise ValueError(f"soft maps of different sizes: {shape} and {m.shape}")
    return np.maximum.reduce(maps) if len(maps) > 1 else maps[0]


def contour_thickness(hw: tuple[int, int]) -> int:
    """Line width that stays visible at any image size: about 1/200 of the shorter side, at least 1 pixel."""
    return max(1, int(round(min(hw) / 200)))


def draw_contour(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = CONTOUR_COLOR, thickness: int | None = None) -> np.ndarray:
    """A copy of ``image`` with the outline of every connected part of ``mask`` drawn on it."""
    out = np.ascontiguousarray(image.copy())
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != out.shape[:2]:
        raise ValueError(f"mask is {mask.shape} but image is {out.shape[:2]}")
    if not mask.any():
        return out
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness or contour_thickness(mask.shape))
    return out


def demo_overlay(reference: np.ndarray, soft: np.ndarray | None, region: np.ndarray | None) -> np.ndarray:
    """The picture of "where the model looked" for one request, drawn by
    :func:`refalign.attention.correspondence_overlay` (paper Fig. 6: reference dimmed outside ``M*``, soft map as a
    heat tint, ``M*`` outlined). ``region=None`` means the whole reference conditioned the refinement (alignment
    skipped): nothing is dimmed and the outline is the reference's border."""
    from refalign.attention.overlay import correspondence_overlay

    ref = np.asarray(reference)
    if region is None:
        region = np.ones(ref.shape[:2], bool)
    return correspondence_overlay(ref, np.asarray(region, dtype=bool), soft, contour_color=CONTOUR_COLOR)


def before_after(
    image: np.ndarray,
    refined: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    gap: int = 8,
    color: tuple[int, int, int] = CONTOUR_COLOR,
    background: int = 255,
) -> np.ndarray:
    """Input and refined image side by side (input left), ``gap`` pixels apart, with the artifact mask outlined
    on both so the eye finds the changed part. Returns ``uint8 (H, 2W + gap, 3)``."""
    a, b = np.asarray(image), np.asarray(refined)
    if a.shape != b.shape:
        raise ValueError(f"image is {a.shape} but refined is {b.shape}")
    if mask is not None:
        a, b = draw_contour(a, mask, color), draw_contour(b, mask, color)
    h, w = a.shape[:2]
    panel = np.full((h, 2 * w + gap, 3), background, np.uint8)
    panel[:, :w] = a
    panel[:, w + gap :] = b
    return panel
