"""Automatic artifact detection by disagreement with the registered reference (beyond the paper: its §5 leaves
artifact detection to future work).

Algorithm (:func:`detect_artifacts`):

1. register the image with the reference (:func:`refalign.transfer.register.register_image`: the registration
   engine of the refine path — SIFT, MAGSAC++ homography, guided re-matching) and resample the reference into the
   image's frame;
2. normalise colour: the robust colour fit of the refine path (:func:`refalign.transfer.colour.fit_colour`, in CIE
   Lab) of the warped reference onto the image over their overlap (undoes global lighting / white-balance change);
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
from refalign.registration import warp_reference
from refalign.transfer.colour import fit_colour
from refalign.transfer.register import LocalRegistration, register_image

WORK_SIDE = 512
#: The detector's threshold (robust z-score; lower finds more). The command line writes it again as its options'
#: default rather than import this module at start-up (0.3 s); a test keeps the two equal.
DETECT_Z = 4.0
#: ``refinement.unregistered`` for windows of a mask the detector proposed (``refalign refine`` without ``--mask``
#: uses it unless ``--unregistered`` is given; pass it to the pipeline the same way): a detected region may be clean
#: (a view change reads as disagreement), so only a window that registers — its damage then measured against the
#: reference — is repaired. Measured by detecting, then refining, the development cases without their masks (138
#: cases; detection refuses 69 and finds nothing on 13): on the 19 other-photo cases where it proposed a mask (5
#: overlapping the artifact), ``auto`` left 15 images worse than the input (image PSNR 32.13 against 33.37), ``keep``
#: 2 (33.27); on the 37 warp cases 40.36 against 40.40 (input 32.09). ``python benchmarks/bench_detected.py CASES``.
DETECTED_UNREGISTERED = "keep"


class DetectionError(RefalignError):
    """No artifact mask could be proposed (the image could not be registered with the reference)."""


@dataclass
class Detection:
    mask: np.ndarray  # (H, W) bool, proposed artifact mask
    score: np.ndarray  # (H, W) float32, robust z-score of the disagreement
    registration: LocalRegistration
    num_regions: int


def _lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)


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
    z: float = DETECT_Z,
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
    reg = register_image(small, reference, search=reference_mask)
    if not reg.ok:
        raise DetectionError(f"cannot register the image with the reference ({reg.reason}); paint the mask yourself")
    warped, valid = warp_reference(reference, reg.matrix, small.shape[:2])
    if reference_mask is not None:
        wm, _ = warp_reference(reference_mask.astype(np.uint8)[..., None].repeat(3, 2) * 255, reg.matrix, small.shape[:2])
        valid &= wm[..., 0] > 127
    valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if valid.sum() < 0.02 * valid.size:
        raise DetectionError("the registered reference overlaps too little of the image; paint the mask yourself")
    li, lr = _lab(small), _lab(warped)
    step = max(1, int(valid.sum()) // 40000)  # a fit on 40k pairs is as good as on all, and ~10x faster
    lr = fit_colour(lr[valid][::step], li[valid][::step]).apply(lr)
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
    if s < 1:  # the model back to full-resolution image pixels
        Hs = reg.matrix @ np.diag([s, s, 1.0])
        reg.best.matrix = Hs / Hs[2, 2]
    return Detection(mask=mask, score=score_full, registration=reg, num_regions=min(len(regions), max_regions))
