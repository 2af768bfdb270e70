"""Full-resolution transfer (DESIGN §6, issue 15 part 3): the registered reference, colour-fitted, supplies every
frequency band of the hole at the image's own resolution.

``source = L(A(C(warp(I_r, H)))) + o``, with ``C`` the colour map fitted on the ring around the hole
(:func:`refalign.transfer.register.fit_hole_colour`: histogram specification, no pixel pairs), ``A`` an affine
cross-channel correction fitted on shift-tolerant pixel pairs over the same ring, kept where it predicts the ring's
pixels it was not fitted on (:func:`refalign.transfer.colour.correct_on_pairs`: what a per-channel map cannot
express, such as a saturation change), ``L`` a colour-space correction fitted and kept the same way
(:func:`refalign.transfer.colour.fit_lut`: one colour that the maps before it get wrong while the others are
right), and ``o`` a smooth offset field — the residual of that fit on the ring spread
into the hole by normalised convolution (:func:`refalign.transfer.colour.offset_field`): lighting that changes
across the neighbourhood, and the small photometric step a fit leaves at the hole's edge, are carried in smoothly,
as a gradient-domain paste would. Only hole pixels are written (:func:`paste_hole`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refalign.transfer.colour import (AFFINE_CORRECTION, ColourFit, QuantileFit, correct_on_pairs, fit_lut,
                                     offset_field)
from refalign.transfer.flow import FLOW_MAX_CORRELATION, FlowCorrection, flow_correct
from refalign.transfer.register import WarpScore, colour_area, colour_weights, hole_frame, ring_folds, warp_box


@dataclass(frozen=True)
class _Ring:
    """What the corrections of a hole's transferred pixels read, over its colour box: the image there (``crop``),
    the known ring the colour map was fitted on (``known``) with its pair weights and cross-validation folds, and
    the ring's width (the offset field's scale)."""

    crop: np.ndarray
    known: np.ndarray
    valid: np.ndarray
    weights: np.ndarray
    folds: np.ndarray
    width: float

    def correct(self, source: np.ndarray, fit, untested: bool) -> np.ndarray:
        """``source`` through the correction ``fit`` on the ring's shift-tolerant pairs, where cross-validation keeps
        it (:func:`~refalign.transfer.colour.correct_on_pairs`)."""
        correction = correct_on_pairs(source, self.crop, self.known, self.valid, self.weights, folds=self.folds,
                                      fit=fit, untested=untested)
        return source if correction is None else correction.apply(source)

    def finish(self, source: np.ndarray, offset: bool) -> np.ndarray:
        """``source`` plus, with ``offset``, the smooth field of its residual on the ring; clipped to [0, 255]."""
        if offset:
            source = source + offset_field(self.crop.astype(np.float32) - source, self.known, sigma=self.width)
        return np.clip(source, 0, 255)


def _mapped(image: np.ndarray, hole: np.ndarray, reference: np.ndarray, matrix: np.ndarray,
            colour: ColourFit | QuantileFit, affine: bool) -> tuple[np.ndarray, np.ndarray, tuple, _Ring]:
    """The reference warped through ``matrix`` over the hole's colour box, colour-mapped (and with ``affine``
    corrected across the channels): ``(source, valid, box, ring)``."""
    frame = hole_frame(hole)
    t, l, b, r = box = frame.box
    warped, valid = warp_box(reference, matrix, box)
    known = colour_area(valid, frame.sub, frame.dist, frame.width)
    ring = _Ring(image[t:b, l:r], known, valid, colour_weights(frame.dist[known], frame.width),
                 ring_folds(frame.sub, known), frame.width)
    source = colour.apply(warped)
    return (ring.correct(source, AFFINE_CORRECTION, True) if affine else source), valid, box, ring


def transfer_source(
    image: np.ndarray, hole: np.ndarray, reference: np.ndarray, matrix: np.ndarray, colour: ColourFit | QuantileFit,
    *, pairs: bool = False, colour_space: bool = True, offset: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The reference's pixels for ``hole``: ``(source (h, w, 3) float32, valid (h, w) bool, box)`` in the box of
    :func:`~refalign.transfer.register.colour_box` (image coordinates). ``matrix`` maps image → reference; ``colour``
    from the registration's score (:func:`refalign.transfer.register.score_warp`); ``pairs`` follows it with the
    affine correction, then (with ``colour_space``) the colour-space one, each fitted on shift-tolerant pairs over
    the ring and kept where two-fold cross-validation over its sectors keeps it — the colour-space one only where
    the folds are large enough to test it (:func:`~refalign.transfer.colour.correct_on_pairs`,
    :func:`~refalign.transfer.colour.fit_lut`, :func:`~refalign.transfer.register.ring_folds`); ``offset`` adds
    the smooth residual field."""
    source, valid, box, ring = _mapped(image, hole, reference, matrix, colour, pairs)
    if pairs and colour_space:
        source = ring.correct(source, fit_lut, False)
    return ring.finish(source, offset), valid, box


def registered_source(
    image: np.ndarray, hole: np.ndarray, reference: np.ndarray, matrix: np.ndarray, score: WarpScore, *,
    flow: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], FlowCorrection | None]:
    """The registered reference's pixels for ``hole`` as the refine path pastes them: :func:`transfer_source`
    through ``matrix`` with the colour map of its ring ``score``, corrected on shift-tolerant pairs, then — with
    ``flow`` — moved by the dense flow where the model explains the ring only in part
    (:func:`refalign.transfer.flow.flow_correct`, which reads the score's gradient correlation). The flow is measured
    on the paste before its colour-space correction: it decides the paste's geometry, and a refinement of a few
    colours moved its estimate across the threshold (a registered text label: 1.2 px, moved, 22.90 dB; with the
    correction 0.95 px, not moved, 20.44). Returns ``(pixels, valid, box, correction)`` (``correction`` ``None``
    without ``flow``)."""
    affine, valid, box, ring = _mapped(image, hole, reference, matrix, score.colour, True)
    pixels = ring.finish(ring.correct(affine, fit_lut, False), True)  # transfer_source(..., pairs=True)
    if not flow:
        return pixels, valid, box, None
    # the flow is measured (below the correlation that explains the ring) on the paste without the colour-space step
    measured = ring.finish(affine, True) if score.gradient_correlation < FLOW_MAX_CORRELATION else None
    pixels, valid, correction = flow_correct(image, hole, pixels, valid, box, score.gradient_correlation,
                                             measured_on=measured)
    return pixels, valid, box, correction


def mix_sources(first: np.ndarray, second: np.ndarray, valid: np.ndarray, weight: float) -> np.ndarray:
    """Two estimates of the same hole's pixels (``(h, w, 3)`` over one box) averaged, ``second`` at ``weight``:
    ``(1 − w)·first + w·second`` where ``valid`` (``second``'s pixels there), ``first`` elsewhere. For two
    estimates with independent errors of variances ``σ₁²`` and ``σ₂²`` the least squared error is at
    ``w = σ₁² / (σ₁² + σ₂²)`` (inverse-variance weighting) — a half for errors of equal size."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"mix_sources: weight must lie in [0, 1], got {weight}")
    out = np.asarray(first, np.float32).copy()
    out[valid] = (1.0 - weight) * out[valid] + weight * np.asarray(second, np.float32)[valid]
    return out


def paste_hole(image: np.ndarray, source: np.ndarray, hole: np.ndarray, box: tuple[int, int, int, int],
               valid: np.ndarray | None = None) -> np.ndarray:
    """Write the rounded ``source`` (``box``-sized) into ``image`` in place at the ``hole`` pixels inside ``box``
    (and ``valid``); every other pixel keeps its value, bit for bit. Returns the pasted pixels' mask (``(H, W)``
    bool). A non-finite source value in the hole raises ``ValueError`` before anything is written."""
    t, l, b, r = box
    sel = hole[t:b, l:r] if valid is None else hole[t:b, l:r] & valid
    if not np.isfinite(source[sel]).all():
        raise ValueError("paste_hole: the source holds non-finite values inside the hole; nothing was pasted")
    window = image[t:b, l:r]
    window[sel] = np.clip(np.round(source[sel]), 0, 255).astype(np.uint8)
    pasted = np.zeros(hole.shape, bool)
    pasted[t:b, l:r] = sel
    return pasted
