"""Window primitives (paper §3.4, after PAL): squares around masked regions, crops, resizes, and the model frame.

Pure numpy functions shared by inference (alignment and refinement windows), training (zoom-in crops around the
artifact) and evaluation. A :class:`Window` is a square in image coordinates that may stick out of the image; crops
pad the outside by edge replication and report which part of the crop is real image (``valid``).
:class:`ModelFrame` is a window seen at the model's resolution: the one model ↔ image pixel conversion. Planning
the windows of a mask and pasting the refined ones back is :mod:`refalign.pipelines.zoom`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Window:
    """Square ``size × size`` window with its top-left corner at ``(top, left)`` in image pixels."""

    top: int
    left: int
    size: int

    @property
    def bottom(self) -> int:
        return self.top + self.size

    @property
    def right(self) -> int:
        return self.left + self.size

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.top, self.left, self.size)


def window_to_source(window: Window, resolution: int) -> np.ndarray:
    """3×3 affine map from the pixels of ``window`` resized to ``resolution`` (its frame) back to the source image
    it was cropped from (pixel-centre aligned, like ``cv2.resize``)."""
    s = window.size / float(resolution)
    return np.array(
        [[s, 0.0, window.left + 0.5 * s - 0.5], [0.0, s, window.top + 0.5 * s - 0.5], [0.0, 0.0, 1.0]]
    )


@dataclass(frozen=True)
class ModelFrame:
    """A window as the model sees it, resized to ``resolution``: the one place where lengths given in *model
    pixels* (dilation, feather, ramp, margins — fixed fractions of every window) become *image pixels*."""

    window: Window
    resolution: int

    def image_px(self, model_px: float) -> float:
        """A length of ``model_px`` model pixels in image pixels: ``model_px · size / resolution``."""
        return model_px * self.window.size / self.resolution

    def radius(self, model_px: float) -> int:
        """``ceil`` of :meth:`image_px`, at least 1: a dilation or blend radius in whole image pixels."""
        return max(1, int(math.ceil(self.image_px(model_px))))

    def reference_radius(self, model_px: float, area_scale: float) -> int:
        """``model_px`` model pixels in *reference* pixels, where a homography magnifies area by ``area_scale``
        (lengths by its square root) at the window."""
        return int(np.ceil(model_px * (self.window.size / self.resolution * np.sqrt(max(area_scale, 1e-6)))))

    def centre(self) -> tuple[float, float]:
        """``(x, y)`` in image pixels of the model-frame point ``(resolution / 2, resolution / 2)`` — the window's
        centre to within half a model pixel (where the registration's local scale is read)."""
        half = self.resolution / 2.0
        return tuple(self.to_source()[:2] @ [half, half, 1.0])

    def to_source(self, size: int | None = None) -> np.ndarray:
        """:func:`window_to_source` of this window seen at ``size`` pixels (default: the model's resolution)."""
        return window_to_source(self.window, self.resolution if size is None else size)


def photo_scale(image_hw: tuple[int, ...], reference_hw: tuple[int, ...]) -> float:
    """How many reference pixels one image pixel spans when both photos frame the object alike: the ratio of their
    longer sides (a reference photographed with three times the pixels most likely shows the object three times
    larger)."""
    return max(reference_hw[:2]) / max(image_hw[:2])


def area_ratio(region: np.ndarray, artifact: np.ndarray) -> float:
    """How many times the artifact's area a region of the reference covers: ``region`` (reference-sized bool) over
    ``artifact`` (image-sized bool) brought to the reference's scale (:func:`photo_scale`)."""
    scale = photo_scale(artifact.shape, region.shape)
    return float(region.sum()) / max(1.0, float(artifact.sum()) * scale * scale)


def mask_bbox(mask: np.ndarray, margin: int = 0) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the true pixels of ``mask`` (bottom/right exclusive), grown by ``margin``
    pixels on every side and clipped to the mask. From the rows and columns that hold any: 20× faster than listing
    the pixels on a 1024² mask, and the registration asks for a hole's box once per candidate model."""
    mask = np.asarray(mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask is empty")
    h, w = mask.shape[:2]
    return (max(0, int(rows[0]) - margin), max(0, int(cols[0]) - margin), min(h, int(rows[-1]) + 1 + margin),
            min(w, int(cols[-1]) + 1 + margin))


def square_window(
    bbox: tuple[int, int, int, int], image_hw: tuple[int, int], *, context: float = 2.0, min_size: int = 64
) -> Window:
    """The square window for a region: side ``max(min_size, context · longest bbox side)``, centred on the
    region and shifted to lie inside the image where the image is large enough (so border regions keep real
    context instead of padding). The side never exceeds the image's longer side."""
    top, left, bottom, right = bbox
    h, w = image_hw
    side = int(np.ceil(max(min_size, context * max(bottom - top, right - left))))
    side = max(1, min(side, max(h, w)))
    cy, cx = (top + bottom) / 2.0, (left + right) / 2.0
    t = int(round(cy - side / 2.0))
    l = int(round(cx - side / 2.0))
    t = _shift_inside(t, side, h)
    l = _shift_inside(l, side, w)
    return Window(t, l, side)


def _shift_inside(start: int, side: int, extent: int) -> int:
    if side <= extent:
        return min(max(start, 0), extent - side)
    return -((side - extent) // 2)  # centre the image inside an oversized window


def crop(array: np.ndarray, window: Window) -> np.ndarray:
    """Cut ``window`` out of an ``(H, W[, C])`` array, replicating edge pixels where it sticks out."""
    h, w = array.shape[:2]
    pt, pl = max(0, -window.top), max(0, -window.left)
    pb, pr = max(0, window.bottom - h), max(0, window.right - w)
    t0, l0 = max(0, window.top), max(0, window.left)
    t1, l1 = min(h, window.bottom), min(w, window.right)
    part = array[t0:t1, l0:l1]
    if pt or pl or pb or pr:
        pad = [(pt, pb), (pl, pr)] + [(0, 0)] * (array.ndim - 2)
        part = np.pad(part, pad, mode="edge")
    return np.ascontiguousarray(part)


def valid_region(image_hw: tuple[int, int], window: Window) -> np.ndarray:
    """``(size, size)`` bool: which pixels of the window's crop are inside the image."""
    h, w = image_hw
    ys = np.arange(window.top, window.bottom)
    xs = np.arange(window.left, window.right)
    return ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]


def resize_image(array: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an image (area-averaging when shrinking, bicubic when enlarging); ``size`` is a side or ``(h, w)``."""
    oh, ow = (size, size) if isinstance(size, int) else size
    h, w = array.shape[:2]
    if (h, w) == (oh, ow):
        return array.copy()
    interp = cv2.INTER_AREA if oh * ow < h * w else cv2.INTER_CUBIC
    out = cv2.resize(array, (ow, oh), interpolation=interp)
    if out.ndim == 2 and array.ndim == 3:
        out = out[..., None]
    return out


def resize_mask(mask: np.ndarray, size: int | tuple[int, int], *, conservative: bool = True) -> np.ndarray:
    """Resize a bool mask. ``conservative`` marks a target pixel when any source pixel under it is marked, so a
    thin artifact never vanishes when a window is shrunk."""
    oh, ow = (size, size) if isinstance(size, int) else size
    m = mask.astype(np.float32)
    if (m.shape[0], m.shape[1]) == (oh, ow):
        return mask.astype(bool).copy()
    if conservative and oh * ow < m.size:
        return cv2.resize(m, (ow, oh), interpolation=cv2.INTER_AREA) > 0
    return cv2.resize(m, (ow, oh), interpolation=cv2.INTER_LINEAR) >= 0.5


def connected_regions(mask: np.ndarray, *, merge_distance: int = 0) -> list[np.ndarray]:
    """Split a mask into its connected regions (8-connectivity), largest first. Regions closer than
    ``merge_distance`` pixels are treated as one."""
    m = mask.astype(np.uint8)
    probe = m
    if merge_distance > 0:
        k = 2 * merge_distance + 1
        probe = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels = cv2.connectedComponents(probe, connectivity=8)
    regions = [(labels == i) & mask.astype(bool) for i in range(1, n)]
    regions = [r for r in regions if r.any()]
    return sorted(regions, key=lambda r: -int(r.sum()))


def square_box(bbox: tuple[int, int, int, int], scale: float = 1.0) -> Window:
    """The square centred on ``bbox`` with side ``scale ×`` its longer side (at least 2), *not* shifted into the
    image: the geometry of every reference crop (training samples, alignment and refinement), which must agree."""
    t, l, b, r = bbox
    side = max(2, int(np.ceil(max(b - t, r - l) * scale)))
    return Window(int(round((t + b - side) / 2.0)), int(round((l + r - side) / 2.0)), side)


def crop_square(array: np.ndarray, box: Window, fill) -> np.ndarray:
    """Cut ``box`` out of an ``(H, W[, C])`` array, filling the part outside the array with the constant ``fill``."""
    h, w = array.shape[:2]
    out = np.full((box.size, box.size) + array.shape[2:], fill, dtype=array.dtype)
    t0, l0, t1, l1 = max(0, box.top), max(0, box.left), min(h, box.bottom), min(w, box.right)
    if t1 > t0 and l1 > l0:
        out[t0 - box.top : t1 - box.top, l0 - box.left : l1 - box.left] = array[t0:t1, l0:l1]
    return out


def paste_square(square: np.ndarray, box: Window, out_hw: tuple[int, int], fill) -> np.ndarray:
    """Inverse of :func:`crop_square`: an ``out_hw`` array holding the part of ``square`` that lies inside it."""
    h, w = out_hw
    out = np.full((h, w) + square.shape[2:], fill, dtype=square.dtype)
    t0, l0, t1, l1 = max(0, box.top), max(0, box.left), min(h, box.bottom), min(w, box.right)
    if t1 > t0 and l1 > l0:
        out[t0:t1, l0:l1] = square[t0 - box.top : t1 - box.top, l0 - box.left : l1 - box.left]
    return out
