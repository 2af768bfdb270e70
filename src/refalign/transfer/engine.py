"""One window's repair source from the references (DESIGN §6): register the hole's neighbourhood with each
reference, keep the best reliable one, and build the full-resolution source from it.

:func:`reference_features` runs once per reference and call; :func:`hole_source` once per window. The search area
in a reference is, in order of preference: the region the user painted (``--reference-mask``), the object mask, the
whole photo; when that fails and the alignment stage's ``M*`` is known, the neighbourhood of ``M*`` is searched
(a smaller set passes Lowe's ratio test more often) — the learned map is the prior and the fallback, and its
agreement with the registration is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refalign.transfer.features import Features, detect
from refalign.transfer.register import LocalRegistration, box_of, project, register_hole, square_around
from refalign.transfer.source import transfer_source

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


@dataclass
class HoleSource:
    """What fills one window's hole. ``kind``: ``"reference"`` (the registered reference's own pixels) or
    ``"none"`` (no reliable correspondence); ``reference_index``: which reference; ``registration``: the local
    registration behind it (for reports: ``reason``, ``confidence``); ``pixels``/``valid``/``box``: the source in
    image coordinates (``None`` unless ``kind == "reference"``); ``prior_agreement``: whether the registered region
    lies within one token of the alignment stage's ``M*`` (``None`` without ``M*``)."""

    kind: str
    reference_index: int
    registration: LocalRegistration
    pixels: np.ndarray | None = None
    valid: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    prior_agreement: bool | None = None

    @property
    def confidence(self) -> float:
        return self.registration.confidence

    @property
    def matrix(self) -> np.ndarray | None:
        return self.registration.matrix

    def describe(self) -> str:
        """One line for the user."""
        if self.kind == "reference":
            agree = "" if self.prior_agreement is None else (
                "; agrees with the cross-attention map" if self.prior_agreement else
                "; the cross-attention map pointed elsewhere")
            return (f"registered with reference {self.reference_index} ({self.registration.reason}; confidence "
                    f"{self.confidence:.2f}{agree})")
        return f"no reliable correspondence in the reference ({self.registration.reason})"


def _prior_search(m_star: np.ndarray, search: np.ndarray | None) -> np.ndarray:
    box = square_around(box_of(m_star), PRIOR_CONTEXT * max(np.subtract(box_of(m_star)[2:], box_of(m_star)[:2])),
                        m_star.shape)
    out = np.zeros(m_star.shape, bool)
    out[box[0]:box[2], box[1]:box[3]] = True
    return out & search if search is not None else out


def _agrees(matrix: np.ndarray, hole: np.ndarray, m_star: np.ndarray) -> bool:
    """Whether the hole's centre lands within one token (1/16 of the reference's longer side) of ``M*``."""
    t, l, b, r = box_of(hole)
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


def hole_source(
    image: np.ndarray, hole: np.ndarray, views: list[ReferenceView], m_stars: list[np.ndarray | None] | None = None,
) -> HoleSource:
    """The source for one window's ``hole`` from the best-registered reference (highest confidence among the
    reliable ones), or ``kind="none"`` with the best attempt's reason."""
    m_stars = m_stars or [None] * len(views)
    tries = [register_with(image, hole, v, m) for v, m in zip(views, m_stars)]
    order = sorted(range(len(tries)), key=lambda i: (tries[i][0].ok, tries[i][0].confidence), reverse=True)
    i = order[0]
    reg, agreement = tries[i]
    if not reg.ok:
        return HoleSource("none", i, reg)
    pixels, valid, box = transfer_source(image, hole, views[i].pixels, reg.matrix, reg.best.score.colour)
    return HoleSource("reference", i, reg, pixels, valid, box, agreement)
