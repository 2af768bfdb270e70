"""Sub-token alignment (beyond the paper; its §5 names the 16×16 token grid as the cap on alignment precision).

The cross-attention correspondence ``M*`` is only as fine as the reference-token grid: on a 16×16 grid one token
spans 1/16 of the reference. :func:`refine_correspondence` sharpens it geometrically with the local registration
of :mod:`refalign.transfer` — features in the artifact's surroundings (its own pixels are wrong by definition)
matched into the reference, candidate models fitted robustly and each scored on the known pixels around the hole —
and carries the artifact mask through the accepted model pixel-accurately. ``M*`` is the search prior and the
fallback: when no model is accepted the token-level ``M*`` is kept — unless the best rejected model still *locates*
the artifact (:func:`located_region`): not reliable enough to paste through, it says where the content lies far
better than the 16×16 map does. The result says which path was taken and why, and whether the registration agrees
with ``M*``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refalign.registration import transfer_mask
from refalign.transfer.engine import ReferenceView, lands_in, register_with
from refalign.transfer.register import LocalRegistration
from refalign.windows import area_ratio, mask_bbox, square_box

#: Search area on the reference around a user-given region: the square of ``NEIGHBOURHOOD ×`` its bbox.
NEIGHBOURHOOD = 3.0
#: A registration that is not accepted still locates the artifact when its best model explains at least this
#: gradient correlation of the ring around the hole (:func:`located_region`; accepting needs
#: :data:`~refalign.transfer.register.MIN_GRADIENT_CORRELATION`). Chosen on the 79 unregistered windows of two
#: crossview sets that know their true match (cv17 and the seed-1 set, the mask through the homography make-cases
#: verified each case with): their ``M*`` has a mean IoU of 0.13 with it; the 60 best models at 0.15 or more have
#: 0.68 (their ``M*`` 0.14), every one above 0.35; the 19 below have 0.0-0.22 but for one.
LOCATED_CORRELATION = 0.15
#: A window synthesised on the located path gets the reference warped through the locating model averaged in
#: (:data:`LOCATED_MIX_WEIGHT`) where that model explains at least this gradient correlation of the ring. A located
#: model is a few pixels off or more, and its paste alone loses to the synthesis; the two estimates' errors are
#: partly independent, and their mean beats either. Chosen on the development sets (cv17 and the seed-1 set, 35
#: located windows that ``auto`` synthesises; box PSNR / GMSD): synthesis 22.66 / 0.188, located paste 21.53 / 0.175,
#: the mean 23.24 / 0.170 — from 0.3 22.09 / 0.184 → 23.42 / 0.163 on 22 windows, none worse by 1 dB, while under it
#: the mean loses PSNR (0.15-0.25: 25.48 → 24.60). Held out (cv15 and the seed-2 set), from 0.3: 21.96 / 0.179 →
#: 23.48 / 0.156 on 19 windows, one worse by 2.2 dB.
LOCATED_MIX_CORRELATION = 0.3
#: The located paste's weight in that mean (:func:`~refalign.transfer.source.mix_sources`): errors of about equal
#: size (from 0.3 on the development sets, weights 0.3 / 0.5 / 0.7: 23.18 / 23.42 / 23.21 dB).
LOCATED_MIX_WEIGHT = 0.5
#: The paths whose region is the artifact carried through the registration's best model: accepted (``"warp"``) or
#: only locating it (``"located"``, :func:`located_region`).
MODEL_PATHS = ("warp", "located")
#: A located region spanning more than this many times the artifact's area, or less than its inverse, is a
#: degenerate model's, not a location.
LOCATED_AREA_RATIO = 10.0


def search_area(reference_hw: tuple[int, int], user_region: np.ndarray | None = None) -> np.ndarray | None:
    """Where in the reference the artifact's match is searched besides the whole photo when the user painted the
    region (:func:`~refalign.transfer.engine.register_with`): around it (``NEIGHBOURHOOD ×`` its box); ``None``
    without one. The object mask is not used to narrow the search: an automatic object mask
    (GrabCut) often cuts off the part that matters, and the candidates are scored on the image's pixels anyway —
    on the 39 warp cases of the benchmark, searching the whole reference instead of the object gave 37.5 against
    36.5 dB over the mask's box (one case, a candle, kept 62 features on its object mask and did not register)."""
    if user_region is None or not user_region.any():
        return None
    box = square_box(mask_bbox(user_region), NEIGHBOURHOOD)
    area = np.zeros(reference_hw, bool)
    area[max(0, box.top):max(0, box.bottom), max(0, box.left):max(0, box.right)] = True
    return area


@dataclass
class SubTokenResult:
    """``mask``: the correspondence to use; ``path``: ``"warp"`` (pixel-accurate), ``"located"`` (where a
    rejected model puts the artifact) or ``"cross-attention"`` (fallback to ``M*``); ``reason``: why;
    ``homography``: image → reference, when fitted."""

    mask: np.ndarray
    path: str
    reason: str
    homography: np.ndarray | None = None
    num_inliers: int = 0


@dataclass
class ArtifactMatch:
    """One registration of the artifact's surroundings with the reference (:func:`match_artifact`).

    ``registration``: the local registration (:class:`~refalign.transfer.register.LocalRegistration`);
    ``warped``: the artifact mask carried onto the reference (limited to the object mask), ``None`` when no model was
    accepted; ``reason``: what was found, or why it is unusable; ``prior_agreement``: whether it lands within a
    token of the prior ``M*`` (``None`` without one); ``located``: when no model was accepted, the artifact mask
    carried through the best rejected model where that still locates it (:func:`located_region`), else ``None``."""

    registration: LocalRegistration
    warped: np.ndarray | None
    reason: str
    prior_agreement: bool | None = None
    located: np.ndarray | None = None

    @property
    def usable(self) -> bool:
        return self.warped is not None


def match_artifact(
    image: np.ndarray, mask: np.ndarray, reference: np.ndarray, prior: np.ndarray | None, *,
    object_mask: np.ndarray | None = None, view: ReferenceView | None = None,
) -> ArtifactMatch:
    """Register the artifact ``mask``'s neighbourhood with the reference (:func:`refalign.transfer.engine.register_with`,
    ``prior`` = ``M*`` as search prior and fallback) and carry the artifact mask through the accepted model. The one
    feature-matching run of a window × reference; ``view`` (the reference's features over its search area) is
    computed once per reference by the caller, or here."""
    view = view if view is not None else ReferenceView.prepare(reference)
    reg, agreement = register_with(image, mask, view, prior)
    if not reg.ok:
        located = located_region(reg, mask, reference.shape[:2], object_mask)
        lands = lands_in(reg.best.matrix, mask, prior) if located is not None and prior is not None else None
        return ArtifactMatch(reg, None, f"matching unreliable: {reg.reason}", lands, located)
    warped = transfer_mask(mask, reg.matrix, reference.shape[:2])
    if object_mask is not None:
        warped &= object_mask
    if not warped.any():
        return ArtifactMatch(reg, None, "the warp maps the artifact outside the reference")
    return ArtifactMatch(reg, warped, reg.reason, agreement)


def located_region(reg: LocalRegistration, mask: np.ndarray, reference_hw: tuple[int, int],
                   object_mask: np.ndarray | None = None) -> np.ndarray | None:
    """Where a registration that was not accepted still puts the artifact ``mask``: the mask carried through its
    best model (limited to ``object_mask``) when that model explains at least :data:`LOCATED_CORRELATION` of the
    ring's gradients and lands the mask at a plausible size (within :data:`LOCATED_AREA_RATIO` of the artifact's
    area at the reference's scale, :func:`~refalign.windows.area_ratio`); ``None`` otherwise. Used as the window's
    region (what a synthesis draws from, what the overlay shows), never to paste through."""
    best = reg.best
    if reg.ok or best is None or best.score is None or best.score.gradient_correlation < LOCATED_CORRELATION:
        return None
    region = transfer_mask(mask, best.matrix, reference_hw)
    if object_mask is not None:
        region &= object_mask
    ratio = area_ratio(region, mask)
    return region if 1.0 / LOCATED_AREA_RATIO <= ratio <= LOCATED_AREA_RATIO else None


def decide(match: ArtifactMatch, m_star: np.ndarray) -> SubTokenResult:
    """Whether a registration replaces the token-level ``m_star``: any accepted one does — it was scored on the
    known pixels around the hole, stronger evidence than the 16×16 map (measured on the benchmark's warp cases:
    every disagreement between a registration and ``M*`` had ``M*`` wrong) — and so does the region a rejected
    one still locates (path ``"located"``, :func:`located_region`); the disagreement with ``M*`` is reported."""
    reg = match.registration
    note = "" if match.prior_agreement is None else (
        "; agrees with M*" if match.prior_agreement else "; M* pointed elsewhere")
    if match.located is not None:
        why = (f"located, not registered: {match.reason}; enough to say where the artifact lies (at least "
               f"{LOCATED_CORRELATION}){note}")
        return SubTokenResult(match.located, "located", why, reg.homography, reg.num_inliers)
    if not match.usable:
        return SubTokenResult(m_star, "cross-attention", match.reason, reg.homography, reg.num_inliers)
    return SubTokenResult(match.warped, "warp", match.reason + note, reg.matrix, reg.num_inliers)


def refine_correspondence(
    image: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray,
    m_star: np.ndarray,
    *,
    object_mask: np.ndarray | None = None,
    view: ReferenceView | None = None,
) -> SubTokenResult:
    """Refine the token-level correspondence ``m_star`` into a pixel-accurate one, or keep it and say why
    (:func:`match_artifact`, then :func:`decide`).

    Args:
        image, mask: the image with artifacts and the artifact mask (``(H, W)`` bool).
        reference: the reference photo; ``m_star``: its token-level correspondence (``(H_r, W_r)`` bool).
        object_mask: the object on the reference; the registered region is limited to it.
        view: the reference prepared for registration (features over its search area), when the caller has it.
    """
    if not m_star.any():
        return SubTokenResult(m_star, "cross-attention", "no token-level region to refine")
    match = match_artifact(image, mask, reference, m_star, object_mask=object_mask, view=view)
    return decide(match, m_star)
