"""One window's registration with one reference (DESIGN §6), as the refine path runs it.

:meth:`ReferenceView.prepare` runs once per reference and call (the reference's features over its search area);
:func:`register_with` once per window × reference (through
:func:`refalign.pipelines.subtoken.match_artifact`, the pipeline's one registration). The search area in a
reference is the region the user painted (``--reference-mask``, grown) or the whole photo; when that fails and the
alignment stage's ``M*`` is known, the neighbourhood of ``M*`` is searched (a smaller set passes Lowe's ratio test
more often) — the learned map is the prior and the fallback, and its agreement with the registration is reported.
Which reference a window uses, and what fills its hole, the pipeline decides from these results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refalign.transfer.features import Features, detect
from refalign.transfer.register import LocalRegistration, project, register_hole, square_around
from refalign.windows import mask_bbox

#: The neighbourhood of ``M*`` searched when the first search fails: ``PRIOR_CONTEXT ×`` its bounding box.
PRIOR_CONTEXT = 3.0


@dataclass
class ReferenceView:
    """A reference prepared for registration: pixels, the ``search`` area (``None`` = whole photo) and its
    features there (computed once)."""

    pixels: np.ndarray
    search: np.ndarray | None
    features: Features

    @staticmethod
    def prepare(pixels: np.ndarray, search: np.ndarray | None = None) -> "ReferenceView":
        return ReferenceView(pixels, search, detect(pixels, search))


def _prior_search(m_star: np.ndarray, search: np.ndarray | None) -> np.ndarray:
    t, l, b, r = mask_bbox(m_star)
    box = square_around((t, l, b, r), PRIOR_CONTEXT * max(b - t, r - l), m_star.shape)
    out = np.zeros(m_star.shape, bool)
    out[box[0]:box[2], box[1]:box[3]] = True
    return out & search if search is not None else out


def _agrees(matrix: np.ndarray, hole: np.ndarray, m_star: np.ndarray) -> bool:
    """Whether the hole's centre lands within one token (1/16 of the reference's longer side) of ``M*``."""
    t, l, b, r = mask_bbox(hole)
    x, y = project(matrix, np.float32([[(l + r - 1) / 2.0, (t + b - 1) / 2.0]]))[0]
    if not np.isfinite([x, y]).all():
        return False
    tol = max(m_star.shape) / 16.0
    ys, xs = np.nonzero(m_star)
    return bool(np.min((xs - x) ** 2 + (ys - y) ** 2) <= tol * tol) if ys.size else False


def register_with(image: np.ndarray, hole: np.ndarray, view: ReferenceView,
                  m_star: np.ndarray | None = None) -> tuple[LocalRegistration, bool | None]:
    """Register ``hole`` with one prepared reference: the search area first, then ``M*``'s neighbourhood.
    Returns the registration and whether it agrees with ``M*`` (``None`` without ``M*``)."""
    reg = register_hole(image, hole, view.pixels, view.features, search=view.search)
    if not reg.ok and m_star is not None and m_star.any():
        near = _prior_search(m_star, view.search)
        retry = register_hole(image, hole, view.pixels, detect(view.pixels, near), search=near,
                              affine_fallback=False)
        if retry.ok:
            retry.reason += " (searched near the cross-attention map)"
            reg = retry
    agreement = _agrees(reg.matrix, hole, m_star) if reg.ok and m_star is not None and m_star.any() else None
    return reg, agreement
