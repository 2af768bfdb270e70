"""Synthetic artifacts that imitate the failures of generative models (paper §4.1, Fig. 11; sizes from §A.2).

Each artifact changes only pixels inside a free-form mask placed on a *detailed* part of the object (high local
gradient energy inside the object mask). The kinds:

* ``garbled`` — melted / garbled print: a smooth random displacement field (elastic warp) plus a blur of the patch.
* ``shuffled`` — wrong glyphs / shuffled detail: the patch is cut into tiles that are permuted.
* ``lost_detail`` — smeared texture: strong Gaussian blur followed by edge-preserving smoothing.
* ``colour_drift`` — hue rotation and saturation change of the patch.
* ``hallucinated`` — texture copied from another, distant part of the image.
* ``smeared`` (opt-in, not among the default kinds) — a mushy feature: the patch turned half a turn and blurred,
  mixed with a coarse copy of itself. Its colours and rough layout stay, its structure is gone — an eye or a nose as
  a generator smears it. Meant for masks that hug a part (``make-cases --on-parts --kinds smeared``).

All functions are pure given a ``numpy.random.Generator``.
"""

from __future__ import annotations

import cv2
import numpy as np

from refalign.windows import mask_bbox

ARTIFACT_KINDS = ("garbled", "shuffled", "lost_detail", "colour_drift", "hallucinated")
#: Every kind :func:`apply_artifact` makes: the default ones and those only asked for by name.
KNOWN_KINDS = ARTIFACT_KINDS + ("smeared",)
#: ``smeared``: the blur's scale over the patch's longer side, the coarse copy's size (pixels, width × height) and
#: its share of the mix.
SMEAR_SIGMA = (0.04, 0.07)
SMEAR_COARSE = (8, 6)
SMEAR_COARSE_WEIGHT = 0.3


def detail_map(image: np.ndarray, object_mask: np.ndarray, radius: int) -> np.ndarray:
    """Local detail score: the box-averaged Sobel gradient magnitude over ``radius``, zero where a disk of that
    radius around the pixel would leave the object."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    k = 2 * radius + 1
    score = cv2.blur(np.sqrt(gx * gx + gy * gy), (k, k))
    inner = cv2.erode(object_mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return score * (inner > 0)


def pick_detailed_location(score: np.ndarray, rng: np.random.Generator, *, top_fraction: float = 0.1) -> tuple[int, int]:
    """A random ``(y, x)`` among the ``top_fraction`` highest-scoring positive pixels of ``score``."""
    ys, xs = np.nonzero(score > 0)
    if ys.size == 0:
        raise ValueError("no room for an artifact inside the object mask")
    vals = score[ys, xs]
    cut = np.quantile(vals, 1.0 - top_fraction)
    keep = np.nonzero(vals >= cut)[0]
    i = int(rng.choice(keep))
    return int(ys[i]), int(xs[i])


def free_form_mask(
    shape: tuple[int, int], centre: tuple[int, int], radius: int, rng: np.random.Generator, *, strokes: int = 3
) -> np.ndarray:
    """An irregular blob around ``centre`` within about ``radius`` pixels: a few thick random brush strokes (the
    free-form masks of the inpainting literature), smoothed. Returns ``(H, W) bool``."""
    h, w = shape
    canvas = np.zeros((h, w), np.uint8)
    cy, cx = centre
    for _ in range(strokes):
        y, x = cy + rng.uniform(-0.3, 0.3) * radius, cx + rng.uniform(-0.3, 0.3) * radius
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(2, 5))):
            angle += rng.uniform(-1.2, 1.2)
            length = rng.uniform(0.3, 0.7) * radius
            ny = float(np.clip(y + length * np.sin(angle), cy - radius, cy + radius))
            nx = float(np.clip(x + length * np.cos(angle), cx - radius, cx + radius))
            thick = max(2, int(rng.uniform(0.25, 0.5) * radius))
            cv2.line(canvas, (int(x), int(y)), (int(nx), int(ny)), 1, thick)
            y, x = ny, nx
    k = max(3, radius // 4) | 1
    canvas = cv2.GaussianBlur(canvas.astype(np.float32), (k, k), 0) > 0.5
    return canvas


def _bbox_window(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    t, l, b, r = mask_bbox(mask, margin=margin)
    return slice(t, b), slice(l, r)


def _garbled(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = patch.shape[:2]
    amp = 0.12 * max(h, w)
    field = rng.standard_normal((2, h, w)).astype(np.float32)
    sigma = max(2.0, 0.12 * max(h, w))
    dy, dx = (cv2.GaussianBlur(f, (0, 0), sigma) for f in field)
    scale = amp / max(1e-6, float(np.abs(np.stack([dy, dx])).max()))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warped = cv2.remap(patch, xx + dx * scale, yy + dy * scale, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return cv2.GaussianBlur(warped, (0, 0), 1.2)


def _shuffled(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = patch.shape[:2]
    n = 4
    th, tw = max(1, h // n), max(1, w // n)
    out = patch.copy()
    cells = [(i, j) for i in range(n) for j in range(n)]
    perm = rng.permutation(len(cells))
    while len(cells) > 1 and np.any(perm == np.arange(len(cells))):  # a derangement: every tile moves
        perm = rng.permutation(len(cells))
    for (i, j), k in zip(cells, perm):
        si, sj = cells[k]
        out[i * th : (i + 1) * th, j * tw : (j + 1) * tw] = patch[si * th : (si + 1) * th, sj * tw : (sj + 1) * tw]
    return out


def _lost_detail(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = float(rng.uniform(0.08, 0.14)) * max(patch.shape[:2])
    blurred = cv2.GaussianBlur(patch, (0, 0), max(2.0, sigma))
    return cv2.bilateralFilter(blurred, 9, 40, 9)


def _colour_drift(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(patch, cv2.COLOR_RGB2HSV).astype(np.float32)  # OpenCV hue is 0..180
    hsv[..., 0] = (hsv[..., 0] + rng.choice([-1, 1]) * rng.uniform(25, 60)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.choice([0.4, 1.8]) + 25, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.85, 1.15), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def _smeared(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = patch.shape[:2]
    sigma = max(1.5, float(rng.uniform(*SMEAR_SIGMA)) * max(h, w))
    turned = cv2.GaussianBlur(np.ascontiguousarray(patch[::-1, ::-1]), (0, 0), sigma)
    coarse = cv2.resize(cv2.resize(patch, SMEAR_COARSE, interpolation=cv2.INTER_AREA), (w, h),
                        interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(turned, 1.0 - SMEAR_COARSE_WEIGHT, coarse, SMEAR_COARSE_WEIGHT, 0)


def _hallucinated(image: np.ndarray, ys: slice, xs: slice, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    ph, pw = ys.stop - ys.start, xs.stop - xs.start
    cy, cx = (ys.start + ys.stop) / 2, (xs.start + xs.stop) / 2
    far = max(ph, pw) * 1.5
    for _ in range(200):
        t, l = int(rng.integers(0, max(1, h - ph + 1))), int(rng.integers(0, max(1, w - pw + 1)))
        if np.hypot(t + ph / 2 - cy, l + pw / 2 - cx) >= far:
            break
    src = image[t : t + ph, l : l + pw]
    return np.ascontiguousarray(np.rot90(src, int(rng.integers(0, 4)))) if ph == pw else src.copy()


def apply_artifact(kind: str, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return a copy of ``image`` with an artifact of ``kind`` inside ``mask``; pixels outside are untouched."""
    if kind not in KNOWN_KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}; choose from {', '.join(KNOWN_KINDS)}")
    ys, xs = _bbox_window(mask, margin=2)
    patch = image[ys, xs]
    if kind == "garbled":
        new = _garbled(patch, rng)
    elif kind == "shuffled":
        new = _shuffled(patch, rng)
    elif kind == "lost_detail":
        new = _lost_detail(patch, rng)
    elif kind == "colour_drift":
        new = _colour_drift(patch, rng)
    elif kind == "smeared":
        new = _smeared(patch, rng)
    else:
        new = _hallucinated(image, ys, xs, rng)
    out = image.copy()
    region = out[ys, xs]
    m = mask[ys, xs]
    region[m] = new[m]
    return out
