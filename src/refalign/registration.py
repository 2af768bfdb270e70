"""Geometric registration of an image with its reference: local features + RANSAC homography.

Used beyond the paper (its §5 names the limits this addresses): to refine the token-level correspondence ``M*``
into a pixel-accurate warp of the reference onto the artifact window ("sub-token alignment"), to give the refiner a
warped reference, and to detect artifacts as local disagreement with the registered reference.

Conventions: a homography ``H`` maps image pixel coordinates ``(x, y, 1)`` to reference coordinates. Every result
says whether it is reliable and, if not, why — callers fall back to the cross-attention path and report it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from refalign.transfer.register import warp_box

#: Longest side at which features are detected (larger images are downscaled for speed; H is rescaled back).
WORK_SIDE = 768
#: Lowe's ratio test threshold.
RATIO = 0.78
#: RANSAC reprojection threshold at ``WORK_SIDE`` scale, in pixels.
RANSAC_PX = 4.0
#: Fewest RANSAC inliers (and lowest inlier share) for a registration to count as reliable.
MIN_INLIERS = 12
MIN_INLIER_RATIO = 0.2
#: Allowed range of the local area scale of H (reference area / image area) over the region of interest.
SCALE_RANGE = (1 / 16, 16.0)


@dataclass
class Registration:
    """Outcome of :func:`register`. ``homography`` is ``None`` unless a model was fitted."""

    homography: np.ndarray | None
    ok: bool
    reason: str
    num_matches: int = 0
    num_inliers: int = 0
    inlier_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2), np.float32))


def _gray_at_scale(img: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    s = min(1.0, side / max(h, w))
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    if s < 1.0:
        g = cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return g, s


def _mask_at(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    return (cv2.resize(mask.astype(np.uint8) * 255, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0).astype(
        np.uint8
    ) * 255


def _scale_matrix(s: float) -> np.ndarray:
    return np.diag([s, s, 1.0])


def local_area_scale(H: np.ndarray, point: tuple[float, float]) -> float:
    """|det| of the Jacobian of ``H`` at ``point`` (x, y): how much H magnifies area there."""
    x, y = point
    d = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    if abs(d) < 1e-12:
        return float("inf")
    u = (H[0, 0] * x + H[0, 1] * y + H[0, 2]) / d
    v = (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / d
    J = np.array([[H[0, 0] - u * H[2, 0], H[0, 1] - u * H[2, 1]], [H[1, 0] - v * H[2, 0], H[1, 1] - v * H[2, 1]]]) / d
    return float(abs(np.linalg.det(J)))


def register(
    image: np.ndarray,
    reference: np.ndarray,
    *,
    image_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    roi_center: tuple[float, float] | None = None,
    min_inliers: int = MIN_INLIERS,
) -> Registration:
    """Fit a homography image → reference from SIFT matches (ratio test, RANSAC).

    Args:
        image, reference: ``(H, W, 3) uint8``.
        image_mask: where features may be taken in the image (e.g. the context around an artifact, the artifact
            itself excluded — its pixels are wrong by definition).
        reference_mask: where features may be taken in the reference (e.g. the object, or ``M*`` dilated).
        roi_center: ``(x, y)`` in the image where the warp will be used; the local scale there must be sane.
    """
    g1, s1 = _gray_at_scale(image, WORK_SIDE)
    g2, s2 = _gray_at_scale(reference, WORK_SIDE)
    sift = cv2.SIFT_create()
    k1, d1 = sift.detectAndCompute(g1, _mask_at(image_mask, g1.shape))
    k2, d2 = sift.detectAndCompute(g2, _mask_at(reference_mask, g2.shape))
    if d1 is None or d2 is None or len(k1) < 4 or len(k2) < 4:
        return Registration(None, False, f"too few features (image {len(k1)}, reference {len(k2)})")
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < RATIO * n.distance]
    if len(good) < max(4, min_inliers):
        return Registration(None, False, f"too few distinctive matches ({len(good)})", num_matches=len(good))
    p1 = np.float32([k1[m.queryIdx].pt for m in good])
    p2 = np.float32([k2[m.trainIdx].pt for m in good])
    H_small, inl = cv2.findHomography(p1, p2, cv2.RANSAC, RANSAC_PX, maxIters=4000, confidence=0.995)
    if H_small is None:
        return Registration(None, False, "RANSAC found no homography", num_matches=len(good))
    inl = inl.ravel().astype(bool)
    n_in = int(inl.sum())
    H = np.linalg.inv(_scale_matrix(s2)) @ H_small @ _scale_matrix(s1)
    H = H / H[2, 2]
    pts = np.stack([p1[inl] / s1, p2[inl] / s2], axis=1)
    reg = Registration(H, True, "ok", num_matches=len(good), num_inliers=n_in, inlier_points=pts)
    if n_in < min_inliers:
        reg.ok, reg.reason = False, f"only {n_in} RANSAC inliers (need {min_inliers})"
    elif n_in / len(good) < MIN_INLIER_RATIO:
        reg.ok, reg.reason = False, f"inlier share {n_in / len(good):.2f} below {MIN_INLIER_RATIO}"
    else:
        centre = roi_center or (image.shape[1] / 2.0, image.shape[0] / 2.0)
        scale = local_area_scale(H, centre)
        if not (SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]):
            reg.ok, reg.reason = False, f"degenerate warp (area scale {scale:.3g} at the region)"
    return reg


def warp_reference(reference: np.ndarray, H: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample the reference into the image's frame, bilinear: ``out[y, x] = reference[H(x, y)]``.

    Returns ``(warped (h, w, 3) uint8, valid (h, w) bool)``; ``valid`` is False where H points outside the reference.
    (:func:`refalign.transfer.register.warp_box` over the whole frame.)
    """
    return warp_box(reference, H, (0, 0, image_hw[0], image_hw[1]), cv2.INTER_LINEAR)


def transfer_mask(mask: np.ndarray, H: np.ndarray, reference_hw: tuple[int, int]) -> np.ndarray:
    """Push an image-frame mask through ``H`` onto the reference (``(h_ref, w_ref)`` bool)."""
    h, w = reference_hw
    m = cv2.warpPerspective(mask.astype(np.uint8) * 255, H, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    return m >= 128
