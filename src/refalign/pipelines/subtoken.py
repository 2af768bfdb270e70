"""Sub-token alignment (beyond the paper; its §5 names the 16×16 token grid as the cap on alignment precision).

The cross-attention correspondence ``M*`` is only as fine as the reference-token grid: on a 16×16 grid one token
spans 1/16 of the reference. :func:`refine_correspondence` sharpens it geometrically: local features are matched
between the artifact's *surrounding context* in the image (a ring around the artifact — its own pixels are wrong by
definition) and the *neighbourhood of* ``M*`` in the reference; a RANSAC homography fitted to those matches maps the
artifact mask onto the reference pixel-accurately (and gives a warp of the reference onto the artifact window).
When matching is unreliable (too few features or inliers, degenerate warp, or a weakly supported result that lands
away from ``M*``), the token-level ``M*`` is kept; the result says which path was taken and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refalign.mask_ops import dilate
from refalign.registration import Registration, register, transfer_mask
from refalign.windows import mask_bbox, square_box, square_window

#: The feature ring around the artifact: a square window of ``CONTEXT ×`` its bbox (at least ``MIN_WINDOW`` px).
CONTEXT = 4.0
MIN_WINDOW = 96
#: Search area on the reference: the square of ``NEIGHBOURHOOD ×`` M*'s bbox around it.
NEIGHBOURHOOD = 3.0
#: A registration with at least this many RANSAC inliers is kept even where it lands away from M*: the token-level
#: map is then the weaker evidence (measured on the benchmark's warp cases: all 3 such disagreements had M* IoU 0).
TRUSTED_INLIERS = 30


@dataclass
class SubTokenResult:
    """``mask``: the correspondence to use; ``path``: ``"warp"`` (pixel-accurate) or ``"cross-attention"``
    (fallback to ``M*``); ``reason``: why; ``homography``: image → reference, when fitted."""

    mask: np.ndarray
    path: str
    reason: str
    homography: np.ndarray | None = None
    num_inliers: int = 0


@dataclass
class ArtifactMatch:
    """One registration of the artifact's surroundings with the reference (:func:`match_artifact`).

    ``registration``: the fit; ``warped``: the artifact mask carried onto the reference (limited to the object
    mask), ``None`` when the fit is unreliable; ``reason``: what was found, or why it is unusable."""

    registration: Registration
    warped: np.ndarray | None
    reason: str

    @property
    def usable(self) -> bool:
        return self.warped is not None


def _box_mask(shape: tuple[int, int], box) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[max(0, box.top) : max(0, box.bottom), max(0, box.left) : max(0, box.right)] = True
    return out


def match_artifact(
    image: np.ndarray, mask: np.ndarray, reference: np.ndarray, prior: np.ndarray, *,
    object_mask: np.ndarray | None = None,
) -> ArtifactMatch:
    """Register the ring around the artifact ``mask`` (its own pixels are wrong by definition) with the
    neighbourhood of ``prior`` on the reference (``NEIGHBOURHOOD ×`` its bbox, on the object), and carry the
    artifact mask through the homography. The one feature-matching run of a window × reference."""
    h, w = mask.shape
    bbox = mask_bbox(mask)
    win = square_window(bbox, (h, w), context=CONTEXT, min_size=MIN_WINDOW)
    ring = _box_mask((h, w), win) & ~dilate(mask, max(2, win.size // 40))
    ref_hw = reference.shape[:2]
    near = _box_mask(ref_hw, square_box(mask_bbox(prior), NEIGHBOURHOOD))
    if object_mask is not None:
        near &= dilate(object_mask, 4)
    cy, cx = (bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0
    reg = register(image, reference, image_mask=ring, reference_mask=near, roi_center=(cx, cy), min_inliers=10)
    if not reg.ok:
        return ArtifactMatch(reg, None, f"matching unreliable: {reg.reason}")
    warped = transfer_mask(mask, reg.homography, ref_hw)
    if object_mask is not None:
        warped &= object_mask
    if not warped.any():
        return ArtifactMatch(reg, None, "the warp maps the artifact outside the reference")
    return ArtifactMatch(reg, warped, f"homography from {reg.num_inliers} inliers")


def decide(
    match: ArtifactMatch, m_star: np.ndarray, *, token_size: int | None = None,
    trusted_inliers: int = TRUSTED_INLIERS,
) -> SubTokenResult:
    """Whether a registration replaces the token-level ``m_star``: it must be usable, and either land within one
    token of ``M*`` or have at least ``trusted_inliers`` RANSAC inliers."""
    reg = match.registration
    if not match.usable:
        return SubTokenResult(m_star, "cross-attention", match.reason, reg.homography, reg.num_inliers)
    ref_hw = m_star.shape
    tol = token_size or max(1, round(max(ref_hw) / 16))
    if reg.num_inliers < trusted_inliers and not (match.warped & dilate(m_star, tol)).any():
        return SubTokenResult(m_star, "cross-attention", "the warp lands more than a token away from M*",
                              reg.homography, reg.num_inliers)
    return SubTokenResult(match.warped, "warp", match.reason, reg.homography, reg.num_inliers)


def refine_correspondence(
    image: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray,
    m_star: np.ndarray,
    *,
    object_mask: np.ndarray | None = None,
    token_size: int | None = None,
    trusted_inliers: int = TRUSTED_INLIERS,
) -> SubTokenResult:
    """Refine the token-level correspondence ``m_star`` into a pixel-accurate one, or keep it and say why
    (:func:`match_artifact`, then :func:`decide`).

    Args:
        image, mask: the image with artifacts and the artifact mask (``(H, W)`` bool).
        reference: the reference photo; ``m_star``: its token-level correspondence (``(H_r, W_r)`` bool).
        object_mask: the object on the reference; features are only taken on it.
        token_size: side of one reference token in reference pixels (the warped result must land within one token
            of ``M*``); default: 1/16 of the reference's longer side.
        trusted_inliers: a registration with fewer RANSAC inliers must land within one token of ``M*`` to be
            kept; one with at least this many is kept anyway (0: every reliable registration is trusted).
    """
    if not m_star.any():
        return SubTokenResult(m_star, "cross-attention", "no token-level region to refine")
    match = match_artifact(image, mask, reference, m_star, object_mask=object_mask)
    return decide(match, m_star, token_size=token_size, trusted_inliers=trusted_inliers)
