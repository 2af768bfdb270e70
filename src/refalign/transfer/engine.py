"""One window's registration with one reference (DESIGN §6), as the refine path runs it.

:meth:`ReferenceView.prepare` runs once per reference and call (the reference's features over its search area);
:func:`register_with` once per window × reference (through
:func:`refalign.pipelines.subtoken.match_artifact`, the pipeline's one registration). The whole photo is searched
first. When the user painted the matching region (``--reference-mask``), the area around the region (grown) is
searched too, and the model that explains the ring around the hole better is kept — the whole photo's only where it
puts the hole in the region (:func:`lands_in`). The region is a prior, not a crop: searching only around it, the 39
warp cases told their exact region scored 37.06 dB over the mask's box against 37.53 for the whole photo (a flat
cartoon 8.5 dB lower: the features beyond the crop steady the fit) and a cross-view registration was lost; searching
only the whole photo, the built-in example told its label's region kept a model 4.4 dB worse than the one the
region's own features give (21.18 against 25.55). With both: 37.57 on those warp cases. Without a region, when the
whole photo fails and the alignment stage's ``M*`` is known, the neighbourhood of ``M*`` is searched (a smaller set
passes Lowe's ratio test more often) and its result kept where it is accepted, or refused for its damage ratio alone
where the whole photo's is not (:attr:`~refalign.transfer.register.LocalRegistration.damage_refused`: such a model
still locates the hole, and ``auto`` may paste it) — the learned map is the prior and the fallback, and its
agreement with the registration is reported. Which reference a window uses, and what fills its hole, the pipeline
decides from these results.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from refalign.transfer.features import Features, detect
from refalign.transfer.register import LocalRegistration, project, register_hole, square_around
from refalign.windows import mask_bbox

#: The neighbourhood of ``M*`` searched when the first search fails: ``PRIOR_CONTEXT ×`` its bounding box.
PRIOR_CONTEXT = 3.0


@dataclass
class ReferenceView:
    """A reference prepared for registration: pixels, the ``search`` area around the user's region (``None``: no
    region), the features over the whole photo, and over the search area (:attr:`features`); each computed once."""

    pixels: np.ndarray
    search: np.ndarray | None
    whole: Features

    @staticmethod
    def prepare(pixels: np.ndarray, search: np.ndarray | None = None) -> "ReferenceView":
        return ReferenceView(pixels, search, detect(pixels))

    @cached_property
    def features(self) -> Features:
        """The features over the search area — the whole photo's without a region — detected on first use."""
        return self.whole if self.search is None else detect(self.pixels, self.search)


def _prior_search(m_star: np.ndarray) -> np.ndarray:
    t, l, b, r = mask_bbox(m_star)
    box = square_around((t, l, b, r), PRIOR_CONTEXT * max(b - t, r - l), m_star.shape)
    out = np.zeros(m_star.shape, bool)
    out[box[0]:box[2], box[1]:box[3]] = True
    return out


def lands_in(matrix: np.ndarray, hole: np.ndarray, m_star: np.ndarray) -> bool:
    """Whether ``matrix`` (image → reference) puts the hole's centre within one token (1/16 of the reference's
    longer side) of the region ``m_star`` (``M*``, or the user's region)."""
    t, l, b, r = mask_bbox(hole)
    x, y = project(matrix, np.float32([[(l + r - 1) / 2.0, (t + b - 1) / 2.0]]))[0]
    if not np.isfinite([x, y]).all():
        return False
    tol = max(m_star.shape) / 16.0
    ys, xs = np.nonzero(m_star)
    return bool(np.min((xs - x) ** 2 + (ys - y) ** 2) <= tol * tol) if ys.size else False


def register_with(image: np.ndarray, hole: np.ndarray, view: ReferenceView,
                  m_star: np.ndarray | None = None) -> tuple[LocalRegistration, bool | None]:
    """Register ``hole`` with one prepared reference: the whole photo; with the user's region (``view.search`` set,
    ``m_star`` the region) also the area around it, the better-explaining model kept (the whole photo's only where
    it lands in the region); without one, ``M*``'s neighbourhood when the whole photo fails (module docstring).
    Returns the registration and whether it agrees with ``m_star`` (``None`` without one)."""
    prior = m_star is not None and bool(m_star.any())
    reg = register_hole(image, hole, view.pixels, view.whole)
    if view.search is not None:
        lands = reg.ok and prior and lands_in(reg.matrix, hole, m_star)
        near = register_hole(image, hole, view.pixels, view.features, search=view.search)
        if lands and (not near.ok or reg.confidence > near.confidence):
            reg.reason += " (whole reference; lands in the region given)"
        else:
            reg = near
    elif not reg.ok and prior:
        near = _prior_search(m_star)
        retry = register_hole(image, hole, view.pixels, detect(view.pixels, near), search=near,
                              affine_fallback=False)
        if retry.ok or (retry.damage_refused and not reg.damage_refused):
            retry.reason += " (searched near the cross-attention map)"
            reg = retry
    agreement = lands_in(reg.matrix, hole, m_star) if reg.ok and prior else None
    return reg, agreement
