"""Local features for registration across views: SIFT (Lowe 2004) in a region, optionally affine-simulated (ASIFT,
Morel & Yu 2009, OpenCV's ``AffineFeature``) for references seen from another viewpoint, and matching by Lowe's
ratio test, or guided by a first model (the neighbourhood it predicts).

Coordinates are ``(x, y)`` pixels of the full image the features were taken from, whatever scale detection ran at.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from refalign.windows import mask_bbox

#: Lowe's ratio test threshold.
RATIO = 0.8
#: Detection works on crops whose longer side is at most this (larger ones are downscaled) ...
MAX_SIDE = 1024
#: ... and at least this (small neighbourhoods are upscaled: a 100-px ring around a logo holds few features).
MIN_SIDE = 384
#: ASIFT simulates ~10 views, so its crops are capped lower (about 1 s for a 512-px crop on one core).
AFFINE_MAX_SIDE = 384
#: Strongest features kept per detection (per simulated view for ASIFT): bounds the matching cost.
MAX_FEATURES = 3000
AFFINE_MAX_FEATURES = 400


@dataclass(frozen=True)
class Features:
    """Keypoint positions ``xy`` ``(N, 2)`` float32 in full-image pixels, SIFT ``descriptors`` ``(N, 128)`` float32
    and keypoint ``size`` ``(N,)`` in full-image pixels."""

    xy: np.ndarray
    descriptors: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)

    def subset(self, keep: np.ndarray) -> "Features":
        return Features(self.xy[keep], self.descriptors[keep], self.size[keep])

    @staticmethod
    def empty() -> "Features":
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), np.zeros(0, np.float32))


def detect(image: np.ndarray, region: np.ndarray | None = None, *, affine: bool = False) -> Features:
    """SIFT features of ``image`` ``(H, W, 3) uint8`` inside ``region`` (bool; ``None`` = everywhere).

    Only the region's bounding box is processed, rescaled so its longer side lies in
    ``[MIN_SIDE, MAX_SIDE]``; ``affine=True`` runs ASIFT (SIFT on affine-warped views of the crop, tilts up to 2),
    which matches across viewpoint changes that plain SIFT misses, at several times the cost.
    """
    h, w = image.shape[:2]
    if region is None:
        region = np.ones((h, w), bool)
    if not region.any():
        return Features.empty()
    t, l, b, r = mask_bbox(region)
    crop, sub = image[t:b, l:r], region[t:b, l:r]
    side = max(b - t, r - l)
    s = float(np.clip(side, MIN_SIDE, AFFINE_MAX_SIDE if affine else MAX_SIDE)) / side
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    m = sub.astype(np.uint8) * 255
    if s != 1.0:
        size = (max(1, round((r - l) * s)), max(1, round((b - t) * s)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)
    if affine:
        detector = cv2.AffineFeature.create(cv2.SIFT_create(nfeatures=AFFINE_MAX_FEATURES), maxTilt=2, minTilt=0)
    else:
        detector = cv2.SIFT_create(nfeatures=MAX_FEATURES)
    kps, desc = detector.detectAndCompute(grey, m)
    if desc is None or not kps:
        return Features.empty()
    xy = np.float32([k.pt for k in kps])
    # pixel centres: full = (crop + 0.5) / s - 0.5 + offset
    xy = (xy + 0.5) / s - 0.5 + np.float32([l, t])
    return Features(xy, desc.astype(np.float32), np.float32([k.size for k in kps]) / s)


def match_ratio(a: Features, b: Features, ratio: float = RATIO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lowe-ratio matches of ``a`` into ``b``: ``(xy_a, xy_b, distance)`` of the accepted pairs.

    Exact nearest neighbours by brute force. FLANN's randomised k-d trees (used here for large sets until session
    7) draw from OpenCV's global generator, so the trees, and the matches, depended on every draw made before them
    in the process: two fresh runs of the same 31 development registrations gave other models on 3, one of them an
    accepted window. Brute force costs less on a hole's few hundred features against a reference's 3000 (8
    against 14 ms), twice as much at 3000 against 3000 (83 against 43 ms): 1.05× the registration time over 20
    development windows."""
    if len(a) == 0 or len(b) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    ia = np.array([m.queryIdx for m in good], int)
    ib = np.array([m.trainIdx for m in good], int)
    return a.xy[ia], b.xy[ib], np.float32([m.distance for m in good])


def match_guided(
    a: Features, b: Features, predict, radius: float, ratio: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Guided re-matching: each feature of ``a`` is matched only among the features of ``b`` within ``radius``
    pixels of where the model ``predict`` (``(N, 2)`` → ``(N, 2)``) puts it, with a looser ratio test among those
    candidates (the geometry already rules out most confusions). Returns ``(xy_a, xy_b)``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    where = predict(a.xy)
    ok = np.isfinite(where).all(axis=1)
    tree = cKDTree(b.xy)
    out_a, out_b = [], []
    for i in np.flatnonzero(ok):
        near = np.asarray(tree.query_ball_point(where[i], radius), int)
        if near.size == 0:
            continue
        d = np.linalg.norm(b.descriptors[near] - a.descriptors[i], axis=1)
        order = np.argsort(d)
        if near.size > 1 and d[order[0]] >= ratio * d[order[1]]:
            continue
        out_a.append(a.xy[i])
        out_b.append(b.xy[near[order[0]]])
    if not out_a:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    return np.float32(out_a), np.float32(out_b)
