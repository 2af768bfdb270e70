"""Small operations on boolean masks shared by inference, training and evaluation (one home each).

Masks are ``(H, W)`` bool arrays, true = marked.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from refalign.windows import mask_bbox


def distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest true pixel of ``mask`` (0 on the mask; ``inf`` everywhere
    when the mask is empty). OpenCV's exact distance transform (``DIST_MASK_PRECISE``)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def distance_within(mask: np.ndarray, box: tuple[int, int, int, int]
                    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """:func:`distance_to` over ``box`` (``(top, left, bottom, right)``, bottom/right exclusive) grown to hold every
    true pixel of the non-empty ``mask`` and clipped to the grid: ``(distances, that box)``. The whole grid's values
    there (the nearest true pixel of any pixel of the box lies inside it) up to float rounding — OpenCV's transform
    can differ in the fifth digit far from the mask (2e-5 px at 98 px) — at the box's cost; on a 4096² photo a full
    transform takes 48 ms."""
    h, w = mask.shape
    t, l, b, r = mask_bbox(mask)
    t, l, b, r = max(0, min(t, box[0])), max(0, min(l, box[1])), min(h, max(b, box[2])), min(w, max(r, box[3]))
    return distance_to(mask[t:b, l:r]), (t, l, b, r)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within Euclidean distance ``radius`` of ``mask`` (a disk dilation; ``radius <= 0`` returns the mask
    itself as bool)."""
    mask = np.asarray(mask, bool)
    if radius <= 0:
        return mask.copy()
    return distance_to(mask) <= radius


def iou(pred: np.ndarray | None, truth: np.ndarray) -> float:
    """Intersection over union of two bool masks, ``|P ∩ T| / |P ∪ T|``.

    Convention for the degenerate cases: a missing prediction (``None``) scores 0, and so do two empty masks (an
    empty prediction earns nothing, even against an empty truth; the benchmarks never have an empty truth)."""
    if pred is None:
        return 0.0
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    union = int((p | t).sum())
    return 0.0 if union == 0 else float((p & t).sum() / union)


def grabcut_foreground(image: np.ndarray, *, margin: float = 0.08, iterations: int = 5, seed: int = 0
                       ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The object of a photo by GrabCut (Rother et al., 2004) initialised with a centred box ``margin`` inside each
    border, keeping the largest connected component of the (probable) foreground. Returns ``(mask, box)`` with
    ``box = (x, y, w, h)`` the initial rectangle. Seeded, so the same photo gives the same mask; run it on a small
    copy of the photo (callers resize).

    GrabCut's colour models start from k-means, which draws from OpenCV's random generator. That generator is
    per thread, so the seed is set in a worker thread of its own: the caller's generator is left as it was."""
    h, w = image.shape[:2]
    rect = (int(w * margin), int(h * margin), max(1, int(w * (1 - 2 * margin))), max(1, int(h * (1 - 2 * margin))))
    with ThreadPoolExecutor(max_workers=1) as worker:
        gc = worker.submit(_grabcut, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), rect, iterations, seed).result()
    mask = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n > 1:
        mask = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return mask, rect


def _grabcut(bgr: np.ndarray, rect: tuple[int, int, int, int], iterations: int, seed: int) -> np.ndarray:
    """OpenCV's GrabCut labels of ``bgr`` from ``rect``, with this thread's generator seeded first."""
    gc = np.zeros(bgr.shape[:2], np.uint8)
    cv2.setRNGSeed(seed)
    cv2.grabCut(bgr, gc, rect, np.zeros((1, 65)), np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_RECT)
    return gc
