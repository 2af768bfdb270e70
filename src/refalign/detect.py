"""Automatic artifact detection by disagreement with the registered reference (beyond the paper: its §5 leaves
artifact detection to future work).

Algorithm (:func:`detect_artifacts`):

1. register the image with the reference (:func:`refalign.registration.register`, SIFT + RANSAC homography) and
   resample the reference into the image's frame;
2. normalise colour: a robust per-channel affine fit in CIE Lab of the warped reference onto the image over their
   overlap (undoes global lighting / white-balance change);
3. score each pixel by its Lab distance to the *closest* warped-reference pixel within ``shift_radius`` pixels — a
   shift-tolerant difference, so small registration errors along edges are not flagged;
4. flag pixels whose score exceeds ``z`` robust standard deviations (median + z·1.4826·MAD) and a floor, clean up
   morphologically, and keep the ``max_regions`` strongest connected regions above ``min_area`` of the image.

The result is a proposal for the artifact mask, with a per-pixel score map for inspection.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from refalign.errors import RefalignError
from refalign.registration import Registration, register, warp_reference

WORK_SIDE = 512


class DetectionError(RefalignError):
    """No artifact mask could be proposed (the image could not be registered with the reference)."""


@dataclass
class Detection:
    mask: np.ndarray  # (H, W) bool, proposed artifact mask
    score: np.ndarray  # (H, W) float32, robust z-score of the disagreement
    registration: Registration
    num_regions: int


def _lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)


def fit_colour(src: np.ndarray, dst: np.ndarray, valid: np.ndarray, *, trim: float = 0.2) -> np.ndarray:
    """Per-channel affine map ``a·src + b`` fitted to ``dst`` over ``valid`` by least squares, refitted once without
    the worst ``trim`` share of residuals (artifacts and occlusions must not bend the fit). Arrays ``(H, W, C)``."""
    out = np.empty_like(src)
    for c in range(src.shape[2]):
        x = src[..., c][valid].astype(np.float64)
        y = dst[..., c][valid].astype(np.float64)
        keep = np.ones_like(x, bool)
        a, b = 1.0, 0.0
        for _ in range(2):
            A = np.stack([x[keep], np.ones(keep.sum())], 1)
            (a, b), *_ = np.linalg.lstsq(A, y[keep], rcond=None)
            r = np.abs(a * x + b - y)
            keep = r <= np.quantile(r, 1 - trim)
        out[..., c] = a * src[..., c] + b
    return out


def shift_tolerant_distance(a: np.ndarray, b: np.ndarray, radius: int) -> np.ndarray:
    """``min over |dx|,|dy| <= radius`` of ``||a(p) - b(p + d)||`` for ``(H, W, C)`` float arrays."""
    best = np.full(a.shape[:2], np.inf, np.float32)
    bp = np.pad(b, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    h, w = a.shape[:2]
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            d = np.linalg.norm(a - bp[dy : dy + h, dx : dx + w], axis=2)
            np.minimum(best, d, out=best)
    return best


def detect_artifacts(
    image: np.ndarray,
    reference: np.ndarray,
    *,
    reference_mask: np.ndarray | None = None,
    z: float = 4.0,
    floor: float = 12.0,
    shift_radius: int = 2,
    min_area: float = 2e-4,
    max_regions: int = 3,
) -> Detection:
    """Propose the artifact mask of ``image`` from its disagreement with ``reference`` (both ``(H, W, 3) uint8``).

    Args:
        reference_mask: the object in the reference (features and comparisons are restricted to it).
        z: robust z-score threshold; ``floor``: minimum Lab distance (ΔE-like units) to flag.
        shift_radius: tolerance to registration error, in pixels at the 512 px working scale.
        min_area: smallest region kept, as a share of the image; ``max_regions``: most regions kept.

    Raises:
        DetectionError: when the image cannot be registered with the reference.
    """
    h, w = image.shape[:2]
    s = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else image
    reg = register(small, reference, reference_mask=reference_mask)
    if not reg.ok:
        raise DetectionError(f"cannot register the image with the reference ({reg.reason}); paint the mask yourself")
    warped, valid = warp_reference(reference, reg.homography, small.shape[:2])
    if reference_mask is not None:
        wm, _ = warp_reference(reference_mask.astype(np.uint8)[..., None].repeat(3, 2) * 255, reg.homography, small.shape[:2])
        valid &= wm[..., 0] > 127
    valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if valid.sum() < 0.02 * valid.size:
        raise DetectionError("the registered reference overlaps too little of the image; paint the mask yourself")
    li, lr = _lab(small), _lab(warped)
    lr = fit_colour(lr, li, valid)
    dist = shift_tolerant_distance(cv2.GaussianBlur(li, (3, 3), 0), cv2.GaussianBlur(lr, (3, 3), 0), shift_radius)
    dist = cv2.GaussianBlur(dist, (5, 5), 0)
    vals = dist[valid]
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med))) * 1.4826 + 1e-6
    score = np.where(valid, (dist - med) / mad, 0.0).astype(np.float32)
    flagged = (score > z) & (dist > floor) & valid
    k = np.ones((3, 3), np.uint8)
    flagged = cv2.morphologyEx(flagged.astype(np.uint8), cv2.MORPH_OPEN, k)
    flagged = cv2.morphologyEx(flagged, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(flagged, connectivity=8)
    min_px = min_area * flagged.size
    regions = [(float(score[labels == i].sum()), i) for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_px]
    regions.sort(reverse=True)
    keep = np.isin(labels, [i for _, i in regions[:max_regions]])
    mask = cv2.resize(keep.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0 if s < 1 else keep
    score_full = cv2.resize(score, (w, h), interpolation=cv2.INTER_LINEAR) if s < 1 else score
    if s < 1:
        Hs = reg.homography @ np.diag([s, s, 1.0])
        pts = reg.inlier_points.copy()
        pts[:, 0, :] /= s  # image-side points back to full resolution
        reg = Registration(Hs / Hs[2, 2], reg.ok, reg.reason, reg.num_matches, reg.num_inliers, pts)
    return Detection(mask=mask, score=score_full, registration=reg, num_regions=min(len(regions), max_regions))
