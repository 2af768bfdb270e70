"""Zoom-in planning and pasting (paper §3.4–3.5, after PAL): which windows to refine, what the model sees of each,
how its answer goes back into the image, and the reference-region crop ``I_r ⊗ M*``. The window primitives
themselves (:class:`~refalign.windows.Window`, crops, resizes, the model ↔ image pixel frame) live in
:mod:`refalign.windows`.

Everything here is pure numpy on image-scale arrays; the pipeline only ever sends window crops resized to the
model's resolution to the networks, so the cost of the model and the codec does not depend on the image's size.

Definitions used throughout:

* **region** — a connected part of the artifact mask (8-connectivity), or several merged together;
* **window** — the square (:class:`~refalign.windows.Window`) a region is refined in: side
  ``max(min_size, context · longest bbox side)``, shifted inside the image when possible (border regions keep
  real context), padded by edge replication where it must stick out;
* **dilated mask** — the pixels within Euclidean distance ``r`` of the region, with
  ``r = ceil(dilation · window.size / resolution)`` image pixels (``dilation`` is given in model pixels, so the
  blend band is the same fraction of every window; :class:`~refalign.windows.ModelFrame`). The model inpaints the
  dilated mask; the paste weight is 1 on the artifact and falls linearly to ``1/(r+1)`` at distance ``r``; beyond
  ``r`` it is exactly 0, so every pixel outside the dilated mask keeps its input value bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from refalign.checks import require_finite
from refalign.fill import GREY, telea_fill
from refalign.mask_ops import dilate, distance_to
from refalign.transfer.source import paste_hole
from refalign.windows import (
    ModelFrame, Window, crop, mask_bbox, resize_image, resize_mask, square_box, square_window, valid_region,
)

BBox = tuple[int, int, int, int]  # (top, left, bottom, right), bottom/right exclusive


@dataclass(frozen=True)
class Region:
    """A connected artifact region: its bounding box and its pixels inside that box."""

    bbox: BBox
    mask: np.ndarray  # (bottom - top, right - left) bool

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class ZoomWindow:
    """One window to refine: the window and the region(s) it repaints (their union ``bbox`` and members)."""

    window: Window
    bbox: BBox
    regions: tuple[Region, ...]

    def region_mask(self) -> np.ndarray:
        """``(size, size)`` bool: the pixels of this window's own regions (not of other windows' regions)."""
        out = np.zeros((self.window.size, self.window.size), bool)
        for r in self.regions:
            _paste_box(out, r.bbox, r.mask, self.window)
        return out

    def full_mask(self, image_hw: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` bool: this window's regions in image coordinates (what the alignment stage reads)."""
        out = np.zeros(image_hw, bool)
        for r in self.regions:
            t, l, b, rr = r.bbox
            out[t:b, l:rr] |= r.mask
        return out


def _paste_box(out: np.ndarray, bbox: BBox, mask: np.ndarray, window: Window) -> None:
    t, l, b, r = bbox
    ys, xs = slice(t - window.top, b - window.top), slice(l - window.left, r - window.left)
    out[ys, xs] |= mask


def find_regions(mask: np.ndarray) -> list[Region]:
    """Connected regions of ``mask`` (8-connectivity), largest first — the same regions as
    :func:`refalign.windows.connected_regions`, but each kept as a box-sized crop, so memory stays ``O(H·W)``
    however many regions there are."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return []
    oy, ox = int(rows[0]), int(cols[0])  # label only the masked box: a small artifact in a huge image stays cheap
    sub = mask[oy : rows[-1] + 1, ox : cols[-1] + 1].astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(sub, connectivity=8)
    regions = []
    for i in range(1, n):
        x, y, w, h, _area = stats[i]
        box = (oy + int(y), ox + int(x), oy + int(y + h), ox + int(x + w))
        regions.append(Region(box, labels[y : y + h, x : x + w] == i))
    return sorted(regions, key=lambda r: -r.area)


def _union(a: BBox, b: BBox) -> BBox:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _overlap(a: Window, b: Window) -> bool:
    return a.top < b.bottom and b.top < a.bottom and a.left < b.right and b.left < a.right


def plan_windows(
    mask: np.ndarray, *, context: float = 2.0, min_size: int = 64, merge_growth: float = 2.5
) -> list[ZoomWindow]:
    """Plan the zoom-in windows of an artifact mask.

    Each region gets a :func:`~refalign.windows.square_window`. Two windows that overlap are merged into the
    window of their union when that window is at most ``merge_growth`` times the larger side (close regions are
    refined together); otherwise they stay separate (far-apart regions keep their zoom). Largest window first.
    """
    hw = mask.shape[:2]
    groups = [(r.bbox, (r,)) for r in find_regions(mask)]
    wins = [square_window(b, hw, context=context, min_size=min_size) for b, _ in groups]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if not _overlap(wins[i], wins[j]):
                    continue
                bbox = _union(groups[i][0], groups[j][0])
                win = square_window(bbox, hw, context=context, min_size=min_size)
                if win.size <= merge_growth * max(wins[i].size, wins[j].size):
                    groups[i] = (bbox, groups[i][1] + groups[j][1])
                    wins[i] = win
                    del groups[j], wins[j]
                    merged = True
                    break
            if merged:
                break
    plans = [ZoomWindow(w, b, regs) for w, (b, regs) in zip(wins, groups)]
    return sorted(plans, key=lambda p: -p.window.size)


def paste_radius(window: Window, resolution: int, dilation: float, feather: float | None = None) -> int:
    """How far beyond the artifact the paste of a window reaches, in image pixels: the ``feather`` band (model
    pixels), or the inpainting ``dilation`` when no feather is set."""
    return ModelFrame(window, resolution).radius(dilation if feather is None else feather)


def paste_weights(region_mask: np.ndarray, radius: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Feathered paste weight in ``[0, 1]``: 1 on the region, ``1 - d/(r+1)`` at distance ``d ≤ r``, 0 beyond ``r``
    (and 0 where ``valid`` is false — padding outside the image)."""
    d = distance_to(region_mask)
    w = np.where(d <= radius, 1.0 - d / (radius + 1.0), 0.0).astype(np.float32)
    if valid is not None:
        w *= valid
    return w


def paste(image: np.ndarray, patch: np.ndarray, weights: np.ndarray, window: Window) -> None:
    """Blend ``patch`` (the refined window at image scale, ``(size, size, 3) uint8``) into ``image`` in place with
    ``weights``; pixels of weight 0 are not written at all, so they stay bit-identical. A patch or weights with a
    NaN or infinite value are refused (:class:`~refalign.checks.NonFiniteError`) before anything is written."""
    require_finite(patch, "the refined window"), require_finite(weights, "the paste weights")
    h, w = image.shape[:2]
    t0, l0 = max(0, window.top), max(0, window.left)
    t1, l1 = min(h, window.bottom), min(w, window.right)
    ys, xs = slice(t0 - window.top, t1 - window.top), slice(l0 - window.left, l1 - window.left)
    wgt = weights[ys, xs]
    sel = wgt > 0
    if not sel.any():
        return
    old = image[t0:t1, l0:l1]
    new = patch[ys, xs].astype(np.float32)
    a = wgt[sel][:, None]
    blended = np.clip(np.round(a * new[sel] + (1.0 - a) * old[sel].astype(np.float32)), 0, 255).astype(np.uint8)
    old[sel] = blended


def reference_detail(pixels: np.ndarray, valid: np.ndarray, frame: ModelFrame) -> np.ndarray:
    """The band of a warped reference (at image scale, the window's frame) that a model working at the frame's
    resolution cannot carry: ``pixels`` minus their round trip through that resolution (area down, bilinear up —
    the path of the model's own change in :func:`residual_patch`). Zero where the warp is invalid or within two
    model pixels of its edge (there the round trip mixed in the grey fill). ``(size, size, 3) float32``.
    """
    size, resolution = pixels.shape[0], frame.resolution
    low = cv2.resize(pixels, (resolution, resolution), interpolation=cv2.INTER_AREA)
    low = cv2.resize(low, (size, size), interpolation=cv2.INTER_LINEAR)
    inner = ~dilate(~valid, frame.radius(2.0))
    return (pixels.astype(np.float32) - low.astype(np.float32)) * inner[..., None]


class ClassicalFill(NamedTuple):
    """A window's one classical fill (:func:`classical_fill`): ``base`` at image scale, ``model`` at the model's
    resolution, and the ``hole`` it filled (image scale, the window's frame)."""

    base: np.ndarray
    model: np.ndarray
    hole: np.ndarray


def classical_fill(image: np.ndarray, mask: np.ndarray, plan: "ZoomWindow", resolution: int) -> ClassicalFill:
    """One classical (Telea) fill of a window at image scale and its copy at model resolution.

    Returns ``(base, fill_win, hole)``: ``base`` ``(size, size, 3) uint8`` is the window with ``hole`` — every
    artifact pixel in it, not grown (the pixels around the mask are real and stay so; grown by one pixel, the ring
    of true pixels replaced by the fill cost 0.6 dB and 9 seam points on the benchmark) — filled at full
    resolution; ``fill_win`` is ``base`` area-resized to ``resolution``. The model's masked-image input, the
    ``fill`` start and the residual paste all use this one fill, so the paste's low band (model) and high band
    (``base``) are split by the same resize (:func:`residual_patch`).
    """
    hole = crop(mask, plan.window) | plan.region_mask()
    base = telea_fill(crop(image, plan.window), hole)
    return ClassicalFill(base, resize_image(base, resolution), hole)


def transferred_fill(
    image: np.ndarray, hole: np.ndarray, transfer: tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]],
    plan: "ZoomWindow", resolution: int,
) -> ClassicalFill:
    """The window with its ``hole`` (``(H, W)`` bool, this window's regions) replaced by the transferred reference
    (``(pixels, valid, box)`` of :func:`refalign.transfer.source.transfer_source`), at image scale and at the
    model's resolution — the source the refiner harmonizes, in place of :func:`classical_fill`'s Telea fill. Hole
    pixels the transfer does not reach are Telea-filled, as in training (:func:`refalign.training.trainer.sourced_fill`)."""
    pixels, valid, box = transfer
    full = image.copy()
    pasted = paste_hole(full, pixels, hole, box, valid)
    base = crop(full, plan.window)
    rest = crop(hole & ~pasted, plan.window)
    if rest.any():
        base = telea_fill(base, rest)
    return ClassicalFill(base, resize_image(base, resolution), crop(hole, plan.window))


def residual_patch(
    base: np.ndarray, refined: np.ndarray, fill_win: np.ndarray, detail: np.ndarray | None = None,
    hole: np.ndarray | None = None, ramp: float = 0.0,
) -> np.ndarray:
    """The refined window at image scale by *residual upsampling* (ours): a Laplacian split whose low band is the
    model's window and whose high band is the full-resolution classical fill (plus, optionally, the registered
    reference's fine band).

    ``patch = base + up(refined − fill_win) [+ detail]`` with ``(base, fill_win)`` from :func:`classical_fill`,
    i.e. ``up(refined) + (base − up(down(base)))``. Pasting the upsampled window itself (the paper's zoom-in)
    replaces sharp, correct pixels around the artifact by their low-resolution copies and blurs the mask border;
    here a model that returns its input changes nothing but the hole, which gets the full-resolution fill.
    ``detail`` (:func:`reference_detail`, zero outside the fill's ``hole``) is added on top. With ``ramp > 0``
    (image pixels) the model's change fades in from 0 at the edge of ``hole`` to full ``ramp`` pixels inside it:
    the classical fill is continuous with the surroundings at that edge, and an upsampled change that is not zero
    there draws a seam.
    Returns ``(size, size, 3) uint8`` in the window's frame (paste it with :func:`paste`).
    """
    size = base.shape[0]
    delta = refined.astype(np.float32) - fill_win.astype(np.float32)
    delta = cv2.resize(delta, (size, size), interpolation=cv2.INTER_LINEAR)
    if ramp > 0:
        if hole is None:
            raise ValueError("residual_patch: a ramp needs the hole it fades in from")
        delta *= np.clip(distance_to(~hole) / ramp, 0.0, 1.0)[..., None]
    patch = base.astype(np.float32) + delta
    if detail is not None:
        patch += detail
    return np.clip(np.round(require_finite(patch, "the residual patch")), 0, 255).astype(np.uint8)


def window_inputs(
    image: np.ndarray, mask: np.ndarray, plan: ZoomWindow, resolution: int, dilation: float,
    feather: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the model sees for one window, and how to paste its answer.

    Returns ``(image_window, inpaint_mask, weights)``: the window crop resized to ``resolution``; the mask to
    inpaint at ``resolution`` — every artifact pixel of the window (this window's regions and any other region
    inside it, so no unrefined artifact serves as context), dilated by ``r``; and the paste weights of this
    window's own regions at image scale (see :func:`paste_weights`).
    """
    win = plan.window
    r = ModelFrame(win, resolution).radius(dilation)
    own = plan.region_mask()
    everything = crop(mask, win) | own
    inpaint = dilate(everything, r)
    image_win = resize_image(crop(image, win), resolution)
    inpaint_win = resize_mask(inpaint, resolution, conservative=True)
    weights = paste_weights(own, paste_radius(win, resolution, dilation, feather), valid_region(image.shape[:2], win))
    return image_win, inpaint_win, weights


# --------------------------------------------------------------------------------------------- reference region


def masked_reference(reference: np.ndarray, region: np.ndarray, fill: int = GREY) -> np.ndarray:
    """``I_r ⊗ M*`` (paper §3.5): the reference with every pixel outside ``region`` set to the neutral ``fill``
    grey (the value the training sample builder must use for the same product)."""
    out = np.full_like(reference, fill)
    out[region] = reference[region]
    return out


def reference_window(region: np.ndarray, *, context: float = 1.0) -> Window:
    """The square centred on ``M*``'s bounding box, side ``context ×`` its longer side (may stick out of the
    reference; the outside is padded with the fill). Centred and unshifted, like the training references
    (:func:`refalign.data.samples.make_reference`), so the refiner sees the layout it was trained on."""
    return square_box(mask_bbox(region), context)


def crop_reference(
    reference: np.ndarray, region: np.ndarray | None, size: int, *, context: float = 1.0, fill: int = GREY
) -> np.ndarray:
    """The reference the refinement stage is conditioned on, ``(size, size, 3) uint8``: ``I_r ⊗ M*`` cropped to
    the square around ``M*`` (padding with ``fill``) and resized to the encoder's input. ``region=None`` uses the
    whole reference, padded square (the paper's single-stage ablation)."""
    h, w = reference.shape[:2]
    if region is None:
        region = np.ones((h, w), bool)
        win = reference_window(region)
    else:
        win = reference_window(region, context=context)
    masked = masked_reference(reference, region, fill)
    out = crop(masked, win)
    out[~valid_region((h, w), win)] = fill
    return resize_image(out, size)
