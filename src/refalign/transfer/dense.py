"""Direct registration of a hole's neighbourhood, for when local features fail (issue 15 part 1).

A printed tag on a plush toy, a logo on a shirt: the planar part around the hole is small and its texture (fur,
fabric, dots) gives SIFT few matches that survive the ratio test across two photos. The pixels themselves still
say where the neighbourhood lies. Two classical steps, both OpenCV's:

1. **masked template search** over similarity transforms: the square around the hole (the hole and a small gap
   excluded through the template's mask), shrunk to :data:`TEMPLATE_SIDE` pixels, rotated and scaled over
   :data:`ANGLES` × :data:`SCALES`, matched by normalised correlation (``cv2.matchTemplate``, ``TM_CCORR_NORMED``
   with a mask) over the reference's search area brought to the image's scale (:func:`~refalign.windows.photo_scale`)
   and shrunk by the same factor; the best peaks are candidate similarities;
2. **ECC refinement** (Evangelidis & Psarakis 2008, ``cv2.findTransformECCWithMask``): each peak refined on the
   known pixels around the hole into an affine map and a homography at :data:`ECC_SIDE` pixels.

The candidates are scored and accepted by :mod:`refalign.transfer.register` like the feature-based ones (the
ring's gradient correlation, the damage ratio), and the support check there asks that two refined models
(affine and homography) agree; since both come from one peak, an accepted match must also be found again by the
search with a wider context (:data:`refalign.transfer.register.CONFIRM_CONTEXT`). Matrices map image pixels to
reference pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from refalign.mask_ops import distance_within
from refalign.windows import mask_bbox, photo_scale

#: The template: a square of ``CONTEXT ×`` the hole's longer side around it (at least ``MIN_CONTEXT_SIDE`` image
#: pixels: a hole of a few pixels gives a template that says nothing, and one enlarged to :data:`MIN_TEMPLATE_SIDE`
#: would have the reference read at ten times its size, a search of minutes) ...
CONTEXT = 3.0
MIN_CONTEXT_SIDE = 32
#: ... shrunk (or enlarged) to this many pixels for the search.
TEMPLATE_SIDE = 72
#: Relative scales (reference / image, once the photos' longer sides are equal) and rotations (degrees) searched.
SCALES = tuple(float(s) for s in np.geomspace(0.5, 2.0, 9))
ANGLES = (-30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0)
#: Hole pixels grown by this (template pixels) are left out of the match (their edge blurs into the ring).
TEMPLATE_GAP = 2
#: A rotated, scaled template is matched as a square this many times its side: room for any rotation.
ROTATION_ROOM = 1.42
#: Distinct peaks refined: the best ones at least a template's half side apart.
PEAKS = 2
#: The search reads the reference at most this many pixels wide: where it would be wider at the template's scale (a
#: small hole against a large reference photo), both are shrunk further — the template to no fewer than
#: :data:`MIN_TEMPLATE_SIDE` pixels — so the relative scales searched stay :data:`SCALES` and the cost stays bounded.
#: Every development case reads less than 340 pixels.
MAX_SEARCH_SIDE = 384
MIN_TEMPLATE_SIDE = 32
#: The side (pixels) of the template when ECC refines a peak, and its termination criteria.
ECC_SIDE = 160
ECC_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 80, 1e-5)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _scaling(f: float) -> np.ndarray:
    return np.diag([f, f, 1.0])


def _shift(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0, x], [0, 1.0, y], [0, 0, 1.0]])


def _template(pixels: np.ndarray, hole: np.ndarray, to_template: np.ndarray, n: int,
              gap: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``n × n`` template of ``pixels`` (the image, or its grey levels) through ``to_template`` (image pixels →
    template pixels, edges replicated) and its mask: 255 where the image is known — inside it, farther than ``gap``
    image pixels from the hole — else 0."""
    tmpl = cv2.warpAffine(pixels, to_template[:2], (n, n), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    # the distances only where the template reads: its square in the image and 2 px more
    corners = cv2.invertAffineTransform(to_template[:2]) @ np.float64([[0, n, 0, n], [0, 0, n, n], [1, 1, 1, 1]])
    read = (int(np.floor(corners[1].min())) - 2, int(np.floor(corners[0].min())) - 2,
            int(np.ceil(corners[1].max())) + 2, int(np.ceil(corners[0].max())) + 2)
    dist, (t, l, b, r) = distance_within(hole, read)
    known = np.zeros(hole.shape, np.uint8)
    known[t:b, l:r][~(dist <= gap)] = 255
    return tmpl, cv2.warpAffine(known, to_template[:2], (n, n), flags=cv2.INTER_NEAREST, borderValue=0)


def template_window(hole: np.ndarray, context: float = CONTEXT) -> tuple[int, int, int]:
    """The square around ``hole`` the template is cut from, ``context ×`` its longer side and at least
    :data:`MIN_CONTEXT_SIDE`: ``(top, left, side)`` in image pixels (it may reach past the image; those pixels are
    masked out)."""
    t, l, b, r = mask_bbox(hole)
    side = max(MIN_CONTEXT_SIDE, int(np.ceil(context * max(b - t, r - l))))
    return int((t + b - side) // 2), int((l + r - side) // 2), side


def search_window(reference_hw: tuple[int, int], search: np.ndarray | None,
                  reach: int) -> tuple[tuple[int, int, int, int], np.ndarray | None]:
    """Where the template search reads the reference: ``(box, centres)``. Without ``search``, the whole photo and
    no restriction (``centres`` ``None``). With it — where the match of the hole may lie — its box grown by
    ``reach`` pixels (the largest template's half side at the reference's scale) and clipped to the photo, and
    ``search`` over that box as the places a template's centre may land: the context around the hole may reach
    past a region painted tightly around the matching content."""
    h, w = reference_hw
    if search is None or not search.any():
        return (0, 0, h, w), None
    t, l, b, r = mask_bbox(search)
    box = (max(0, t - reach), max(0, l - reach), min(h, b + reach), min(w, r + reach))
    return box, search[box[0]:box[2], box[1]:box[3]]


def _centred_in(scores: np.ndarray, centres: np.ndarray, side: int) -> np.ndarray | None:
    """``cv2.matchTemplate`` ``scores`` (one per top-left corner of a ``side``-pixel template, ``side`` odd) set to
    -1 wherever the template's centre falls outside ``centres`` (a bool map of the searched image); ``None`` when
    it falls outside everywhere."""
    half = (side - 1) // 2
    inside = centres[half:half + scores.shape[0], half:half + scores.shape[1]]
    return np.where(inside, scores, np.float32(-1.0)) if inside.any() else None


def search_template_side(side: int, area_side: int) -> int:
    """The template's side for a search of a window ``side`` pixels wide over a reference area ``area_side`` pixels
    wide: :data:`TEMPLATE_SIDE`, or less where the area would then be wider than :data:`MAX_SEARCH_SIDE` (at
    least :data:`MIN_TEMPLATE_SIDE`)."""
    fits = int(MAX_SEARCH_SIDE * side / max(1, area_side))
    return TEMPLATE_SIDE if fits >= TEMPLATE_SIDE else max(MIN_TEMPLATE_SIDE, fits)


def search_similarities(image: np.ndarray, hole: np.ndarray, reference: np.ndarray,
                        search: np.ndarray | None = None, context: float = CONTEXT) -> list[tuple[float, np.ndarray]]:
    """Step 1: ``(score, matrix)`` of the best :data:`PEAKS` distinct peaks of the masked template search, best
    first; ``matrix`` (3×3) maps image pixels to reference pixels through a similarity. ``search`` (reference-sized
    bool) is where the hole's match may lie; the template's context may reach past it (:func:`search_window`).
    ``context``: the template's side over the hole's (:func:`template_window`)."""
    top, left, side = template_window(hole, context)
    s = photo_scale(image.shape, reference.shape)  # reference pixels per image pixel
    (rt, rl, rb, rr), centres = search_window(reference.shape[:2], search,
                                              int(np.ceil(side * max(SCALES) * ROTATION_ROOM / 2 * s)))
    n = search_template_side(side, round(max(rb - rt, rr - rl) / s))
    f = n / side
    crop = _shift(-left, -top)
    tmpl, tmask = _template(image, hole, _scaling(f) @ crop, n, TEMPLATE_GAP / f)
    a = f / s  # reference pixels → search pixels
    size = (max(1, round((rr - rl) * a)), max(1, round((rb - rt) * a)))
    area = cv2.resize(reference[rt:rb, rl:rr], size, interpolation=cv2.INTER_AREA if a < 1 else cv2.INTER_CUBIC)
    if centres is not None:
        centres = cv2.resize(centres.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    centre = (n - 1) / 2.0
    peaks: list[tuple[float, np.ndarray, tuple[float, float]]] = []
    for scale in SCALES:
        out_side = int(np.ceil(n * scale * ROTATION_ROOM)) | 1
        if out_side >= min(area.shape[:2]):
            continue
        for angle in ANGLES:
            rot = cv2.getRotationMatrix2D((centre, centre), angle, scale)
            rot[:, 2] += (out_side - 1) / 2.0 - centre
            t = cv2.warpAffine(tmpl, rot, (out_side, out_side), flags=cv2.INTER_LINEAR)
            tm = cv2.warpAffine(tmask, rot, (out_side, out_side), flags=cv2.INTER_NEAREST, borderValue=0)
            if np.count_nonzero(tm) < 32:
                continue
            res = cv2.matchTemplate(area, t, cv2.TM_CCORR_NORMED, mask=np.repeat(tm[..., None], 3, 2))
            res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
            if centres is not None:
                res = _centred_in(res, centres, out_side)
                if res is None:
                    continue
            _, score, _, (x, y) = cv2.minMaxLoc(res)
            # image → template (f, crop) → rotated template (rot) → search area (x, y) → reference (1/a, offset)
            m = _shift(rl, rt) @ _scaling(1.0 / a) @ _shift(x, y) @ np.vstack([rot, [0, 0, 1]]) @ _scaling(f) @ crop
            peaks.append((float(score), m, (rl + (x + out_side / 2.0) / a, rt + (y + out_side / 2.0) / a)))
    peaks.sort(key=lambda p: -p[0])
    kept: list[tuple[float, np.ndarray, tuple[float, float]]] = []
    for p in peaks:
        if all(np.hypot(p[2][0] - k[2][0], p[2][1] - k[2][1]) > side * s / 2.0 for k in kept):
            kept.append(p)
        if len(kept) == PEAKS:
            break
    return [(s, m) for s, m, _ in kept]


def refine_ecc(image: np.ndarray, hole: np.ndarray, reference: np.ndarray, matrix: np.ndarray,
               motion: int, side: int = ECC_SIDE) -> np.ndarray | None:
    """Step 2: ``matrix`` (image → reference) refined by ECC on the known pixels around ``hole``, with ``motion``
    ``cv2.MOTION_AFFINE`` or ``cv2.MOTION_HOMOGRAPHY``, the template scaled to at most ``side`` pixels (both
    photos scaled alike); ``None`` when ECC does not converge."""
    top, left, window = template_window(hole)
    f = min(1.0, side / window)
    to_tmpl = _scaling(f) @ _shift(-left, -top)
    n = max(8, round(window * f))
    tmpl, tmask = _template(_grey(image), hole, to_tmpl, n, TEMPLATE_GAP / f)
    ref = _grey(reference)
    if f < 1.0:
        ref = cv2.resize(ref, (max(1, round(ref.shape[1] * f)), max(1, round(ref.shape[0] * f))),
                         interpolation=cv2.INTER_AREA)
    # warp: template pixels → reference pixels at the same scale f
    warp = _scaling(f) @ matrix @ np.linalg.inv(to_tmpl)
    warp = warp / warp[2, 2]
    init = (warp if motion == cv2.MOTION_HOMOGRAPHY else warp[:2]).astype(np.float32)
    try:
        _, found = cv2.findTransformECCWithMask(tmpl, ref, tmask, np.full(ref.shape, 255, np.uint8), init,
                                                motion, ECC_CRITERIA, 5)
    except cv2.error:
        return None
    found = np.vstack([found, [0, 0, 1]]) if found.shape[0] == 2 else found
    out = np.linalg.inv(_scaling(f)) @ found.astype(np.float64) @ to_tmpl
    return out / out[2, 2] if np.isfinite(out).all() and abs(out[2, 2]) > 1e-12 else None
