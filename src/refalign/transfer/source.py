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

import numpy as np

from refalign.transfer.colour import (AFFINE_CORRECTION, ColourFit, QuantileFit, correct_on_pairs, fit_lut,
                                     offset_field)
from refalign.transfer.flow import FLOW_MAX_CORRELATION, FlowCorrection, flow_correct
from refalign.transfer.register import WarpScore, colour_area, colour_weights, hole_frame, ring_folds, warp_box


def transfer_source(
    image: np.ndarray, hole: np.ndarray, reference: np.ndarray, matrix: np.ndarray, colour: ColourFit | QuantileFit,
    *, pairs: bool = False, colour_space: bool = True, offset: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The reference's pixels for ``hole``: ``(source (h, w, 3) float32, valid (h, w) bool, box)`` in the box of
    :func:`~refalign.transfer.register.colour_box` (image coordinates). ``matrix`` maps image → reference; ``colour``
    from the registration's score (:func:`refalign.transfer.register.score_warp`); ``pairs`` follows it with the
    affine correction, then (with ``colour_space``) the colour-space one, each fitted on shift-tolerant pairs over
    the ring and kept where two-fold cross-validation over its sectors keeps it
    (:func:`~refalign.transfer.colour.correct_on_pairs`, :func:`~refalign.transfer.colour.fit_lut`,
    :func:`~refalign.transfer.register.ring_folds`); ``offset`` adds the smooth residual field."""
    frame = hole_frame(hole)
    t, l, b, r = box = frame.box
    warped, valid = warp_box(reference, matrix, box)
    crop = image[t:b, l:r]
    known = colour_area(valid, frame.sub, frame.dist, frame.width)
    source = colour.apply(warped)
    if pairs:
        weights, folds = colour_weights(frame.dist[known], frame.width), ring_folds(frame.sub, known)
        corrections = ((AFFINE_CORRECTION, True), (fit_lut, False)) if colour_space else ((AFFINE_CORRECTION, True),)
        for fit, untested in corrections:  # across the channels, then colour by colour (only where tested)
            correction = correct_on_pairs(source, crop, known, valid, weights, folds=folds, fit=fit, untested=untested)
            source = source if correction is None else correction.apply(source)
    if offset:
        source = source + offset_field(crop.astype(np.float32) - source, known, sigma=frame.width)
    return np.clip(source, 0, 255), valid, box


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
    pixels, valid, box = transfer_source(image, hole, reference, matrix, score.colour, pairs=True)
    if not flow:
        return pixels, valid, box, None
    measured = None
    if score.gradient_correlation < FLOW_MAX_CORRELATION:  # the flow will be measured
        measured, _, _ = transfer_source(image, hole, reference, matrix, score.colour, pairs=True, colour_space=False)
    pixels, valid, correction = flow_correct(image, hole, pixels, valid, box, score.gradient_correlation,
                                             measured_on=measured)
    return pixels, valid, box, correction


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
