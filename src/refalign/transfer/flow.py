"""Dense-flow correction of a transferred source (issue 15 part 1: "dense optical flow only where it measurably
helps").

A homography (or affine map) registers a plane. Across views, a plushie's nose or a dog's fur is not one, and the
pasted reference lands a pixel or several off the known pixels around the hole: a sharp paste that is slightly off
costs more than a blur does. The known ring says by how much. DIS optical flow (Kroeger et al., ECCV 2016) from the
image (its hole holding the source) to the source is kept on the ring just outside the hole and spread into the hole
by normalised convolution (Knutsson & Westin 1993, :func:`refalign.transfer.colour.offset_field`); the source is
resampled through that smooth field.

Where the registration is already right, following the flow costs: −0.15 dB box PSNR on the 39 warp cases at
512 px (sub-pixel noise), and −2.8 dB on the built-in example's woven label (registered by features then), where
DIS reads the label's frame in the ring as a 1.4 px shift and bends the logo. So the flow is measured only where the registered model explains the
ring's gradients in part — its gradient correlation there below :data:`FLOW_MAX_CORRELATION` (warp windows score
0.86–0.99 at 512 and 1024 px, the example 0.91, the accepted cross-view windows 0.51–0.78) — and applied only when
its mean displacement over the hole reaches :data:`FLOW_MIN_SHIFT`, scaled with the image like the registration's
score (warp windows move at most 0.21 px at 512 px and 0.94 px at 1024; cross-view windows 1.2–11 px;
``benchmarks/bench_registration.py``).

**The ring's flow is spread robustly** (:func:`spread_flow`). DIS fits brightness differences with shifts of any
size where a shift cannot be seen — a flat area, a straight edge — and a fold of fabric can move otherwise than the
rest of the ring. On a real pair (a backpack's woven label, ``backpack/02`` repaired from ``backpack/03``, session
23) a tenth of the ring read shifts of 90 px and more, against a median of 1.3 px, and their plain average moved
the registered label 12 px off its place, tilted. So each ring pixel weighs by its texture (:func:`flow_confidence`)
and the spread is iteratively reweighted by each pixel's deviation from it. Against the plain spread, seven
development sets (413 cases, ``refalign bench``, both trees): the 10 registered cross-view windows 30.28 / 0.087 →
30.67 / 0.083 (box PSNR / GMSD; 7 better), the 5 multiview part windows whose flow lies near
:data:`FLOW_MIN_SHIFT` 19.58 / 0.181 → 19.27 / 0.183, no other window changes. On the label: hallucinated 13.83 →
16.31 dB, garbled and smeared 14.27 → 16.09, shuffled 14.22 → 14.43; a mouth whose reference photo has grass in
front of it, pasted with the grass either way, 16.65 → 14.02 (garbled) and 16.04 → 15.24 (smeared). The texture
weights alone left the benchmark as it was; the reweighting alone cost a dog's leg 2.7 dB, where the flow grows
towards the hole and the pixels near it are outvoted. It costs 72 ms per window where the flow is measured
(``ring_flow`` 34 → 106 ms on three registered windows, alternating in one process).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from refalign.transfer.colour import offset_field, tukey_weights
from refalign.transfer.register import EXPLAINED_CORRELATION, hole_frame, image_scale

#: Mean displacement over the hole (pixels, at a :data:`~refalign.transfer.register.SCORE_SIDE`-pixel image;
#: proportionally more on larger ones) from which the flow correction is applied.
FLOW_MIN_SHIFT = 1.0
#: The registration's ring gradient correlation (:class:`~refalign.transfer.register.WarpScore`) from which the
#: model is taken to explain the ring and the flow is not measured.
FLOW_MAX_CORRELATION = EXPLAINED_CORRELATION
#: Ring pixels closer than this to the hole are left out of the flow: DIS smooths across the hole's edge there.
EDGE_GAP = 2.0
#: Side (pixels) of the neighbourhood whose structure tensor weighs a ring pixel's flow (:func:`flow_confidence`).
TEXTURE_BLOCK = 7
#: Reweighting rounds of the robust spread (:func:`spread_flow`) ...
ROBUST_STEPS = 3
#: ... and the least robust scale of the deviations (pixels) it is measured against.
ROBUST_FLOOR = 0.5


@dataclass(frozen=True)
class FlowCorrection:
    """What the flow did to a window's source: the registration's ring correlation, the flow's mean displacement
    over the hole (image pixels; ``None``: not measured, the model explains the ring) and the threshold it was held
    against."""

    correlation: float
    shift: float | None
    threshold: float

    @property
    def applied(self) -> bool:
        return self.shift is not None and self.shift >= self.threshold

    def describe(self) -> str:
        if self.shift is None:
            return (f"dense flow not measured: the model explains the ring (correlation {self.correlation:.2f} "
                    f">= {FLOW_MAX_CORRELATION})")
        if self.applied:
            return f"moved by dense flow, mean {self.shift:.1f} px"
        return f"dense flow {self.shift:.2f} px < {self.threshold:.1f}: not applied"


def min_shift(hw: tuple[int, int]) -> float:
    """:data:`FLOW_MIN_SHIFT` for an image of size ``hw``."""
    return FLOW_MIN_SHIFT * image_scale(hw)


def _grey8(rgb: np.ndarray) -> np.ndarray:
    """8-bit grey of a (float) colour image: what DIS takes."""
    return cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def ring_flow(image: np.ndarray, hole: np.ndarray, source: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The smooth displacement field ``(h, w, 2)`` float32 over ``box`` that moves ``source`` (the box's warped,
    colour-fitted reference) onto the image's known pixels: ``image(x) ≈ source(x + d(x))`` measured on the ring
    between :data:`EDGE_GAP` and two ring widths from the hole, spread into the hole at the ring's width."""
    frame = hole_frame(hole)
    if tuple(box) != frame.box:
        raise ValueError(f"ring_flow: box {box} is not the hole's colour box {frame.box}")
    t, l, b, r = box
    known = np.where(frame.sub[..., None], source, image[t:b, l:r].astype(np.float32))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = _grey8(known)
    flow = dis.calc(grey, _grey8(source), None)
    ring = ~frame.sub & (frame.dist > EDGE_GAP) & (frame.dist <= 2 * frame.width)
    return spread_flow(flow, np.where(ring, flow_confidence(grey), 0.0), frame.width)


def flow_confidence(grey: np.ndarray) -> np.ndarray:
    """How far DIS's flow can be trusted at each pixel of ``grey`` (``(h, w)`` uint8): the smaller eigenvalue of the
    local structure tensor over :data:`TEXTURE_BLOCK` pixels (``cv2.cornerMinEigenVal``; Shi & Tomasi 1994). It is
    near 0 on flat areas and along straight edges, where a shift is unobservable (the aperture problem) and DIS fits
    brightness differences with shifts of any size."""
    return cv2.cornerMinEigenVal(grey.astype(np.float32), TEXTURE_BLOCK, ksize=3)


def spread_flow(flow: np.ndarray, weights: np.ndarray, sigma: float, steps: int | None = None) -> np.ndarray:
    """The smooth field ``(h, w, 2)`` float32 that ``flow`` (``(h, w, 2)``) has where ``weights`` (``(h, w)``, 0
    elsewhere) are positive, spread everywhere by normalised convolution at ``sigma``
    (:func:`~refalign.transfer.colour.offset_field`), then re-spread ``steps`` times with each pixel's weight times
    Tukey's biweight of its flow's deviation from the field (iteratively reweighted, like the colour fit:
    :func:`~refalign.transfer.colour.tukey_weights`), so a part of the ring whose flow disagrees with the rest (a
    fold of fabric that moved otherwise, a flat area's spurious shift) drops out."""
    prior = np.asarray(weights, np.float32)
    where = prior > 0
    field = offset_field(flow, prior, sigma=sigma)
    for _ in range(ROBUST_STEPS if steps is None else steps):
        deviation = np.linalg.norm(flow[where] - field[where], axis=-1)
        w = prior.copy()
        w[where] = tukey_weights(deviation, prior[where], floor=ROBUST_FLOOR)
        field = offset_field(flow, w, sigma=sigma)
    return field


def flow_correct(
    image: np.ndarray, hole: np.ndarray, source: np.ndarray, valid: np.ndarray, box: tuple[int, int, int, int],
    correlation: float, *, measured_on: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, FlowCorrection]:
    """``(source, valid, correction)``: ``source`` resampled through :func:`ring_flow` when the registration's ring
    ``correlation`` is below :data:`FLOW_MAX_CORRELATION` and the flow's mean displacement over the hole reaches
    :func:`min_shift`, else unchanged. The flow is measured on ``measured_on`` (the same box; default ``source``)
    and moves ``source``. A moved pixel stays valid only where every pixel it is interpolated from was (the warp
    leaves the box's outside-reference pixels invalid)."""
    if correlation >= FLOW_MAX_CORRELATION:
        return source, valid, FlowCorrection(correlation, None, min_shift(image.shape))
    field = ring_flow(image, hole, source if measured_on is None else measured_on, box)
    t, l, b, r = box
    sub = hole[t:b, l:r]
    shift = float(np.linalg.norm(field[sub], axis=-1).mean()) if sub.any() else 0.0
    correction = FlowCorrection(correlation, shift, min_shift(image.shape))
    if not correction.applied:
        return source, valid, correction
    ys, xs = np.mgrid[0:sub.shape[0], 0:sub.shape[1]].astype(np.float32)
    map_x, map_y = xs + field[..., 0], ys + field[..., 1]
    moved = cv2.remap(source.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    still = cv2.remap(valid.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return moved, valid & (still >= 1.0 - 1e-4), correction
