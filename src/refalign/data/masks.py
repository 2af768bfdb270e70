"""The free-form artifact mask generator G of paper §3.4: ``M_a = G(M_o)``, a mask inside the object mask.

PAL's statistics (paper §A.2): artifacts are irregular and small — under 4 % of the image in more than half of
the cases. The default :class:`MaskSpec` samples the target area ratio log-uniformly in ``[0.3 %, 12 %]`` of the
image (median ≈ 1.9 %, ~70 % of masks under 4 %), capped at ``max_object_fraction`` of the object so a local
region of the object always stays visible as context.

Kinds of shape (drawn with OpenCV, all cheap at cache resolution):

``stroke``   thick random brush polylines (free-form inpainting masks, as in LaMa / DeepFill v2);
``blob``     a random star-shaped polygon with smoothed radii (irregular filled blob);
``ellipse``  a rotated ellipse (a smudge);
``scribble`` a few short strokes plus a blob around one centre (mixed kinds).

``detail`` (optional, e.g. :func:`detail_map`) biases the mask centre toward high-frequency content — regions the
surrounding context cannot predict, so the model has to read the reference (the alignment signal of eq. 5 only
appears when copying from the reference is the only way to lower the loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("stroke", "blob", "ellipse", "scribble")


@dataclass
class MaskSpec:
    """Size and shape distribution of generated artifact masks.

    Attributes:
        area_min, area_max: range of the target area as a fraction of the image, sampled log-uniformly.
        max_object_fraction: the mask never covers more than this fraction of the object.
        kinds: shape kinds to choose from uniformly (see module docstring).
        detail_bias: probability of choosing the centre proportionally to ``detail`` instead of uniformly.
    """

    area_min: float = 0.003
    area_max: float = 0.12
    max_object_fraction: float = 0.5
    kinds: tuple[str, ...] = KINDS
    detail_bias: float = 0.5

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"unknown mask kinds {bad}; choose from {', '.join(KINDS)}")
        if not 0 < self.area_min <= self.area_max < 1:
            raise ValueError(f"need 0 < area_min <= area_max < 1, got {self.area_min}, {self.area_max}")


def detail_map(image: np.ndarray, blur: int = 7) -> np.ndarray:
    """Local high-frequency energy of an ``(H, W, 3)`` uint8 image: the blurred magnitude of its Laplacian,
    ``float32`` in ``[0, 1]``. Used to place artifacts over unpredictable detail."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=3))
    k = blur | 1
    lap = cv2.GaussianBlur(lap, (k, k), 0)
    return lap / max(float(lap.max()), 1e-6)


def _pick_centre(obj: np.ndarray, rng: np.random.Generator, detail: np.ndarray | None, bias: float) -> tuple[int, int]:
    ys, xs = np.nonzero(obj)
    if detail is not None and rng.random() < bias:
        w = detail[ys, xs].astype(np.float64) + 1e-6
        i = rng.choice(ys.size, p=w / w.sum())
    else:
        i = rng.integers(ys.size)
    return int(ys[i]), int(xs[i])


def _stroke(canvas: np.ndarray, cy: int, cx: int, radius: float, rng: np.random.Generator, n_strokes: int) -> None:
    h, w = canvas.shape
    for _ in range(n_strokes):
        y, x = cy + rng.normal(0, radius * 0.3), cx + rng.normal(0, radius * 0.3)
        width = max(1, int(radius * rng.uniform(0.25, 0.6)))
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(2, 6))):
            angle += rng.normal(0, 0.9)
            step = radius * rng.uniform(0.3, 0.8)
            ny, nx = y + step * np.sin(angle), x + step * np.cos(angle)
            cv2.line(canvas, (int(x), int(y)), (int(nx), int(ny)), 1, width, lineType=cv2.LINE_8)
            cv2.circle(canvas, (int(nx), int(ny)), width // 2, 1, -1)
            y, x = float(np.clip(ny, 0, h - 1)), float(np.clip(nx, 0, w - 1))


def _blob(canvas: np.ndarray, cy: int, cx: int, radius: float, rng: np.random.Generator) -> None:
    n = int(rng.integers(8, 16))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.5, 1.3, n) * radius
    radii = (radii + np.roll(radii, 1) + np.roll(radii, -1)) / 3.0  # smooth: irregular but not spiky
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).round().astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1)


def _ellipse(canvas: np.ndarray, cy: int, cx: int, radius: float, rng: np.random.Generator) -> None:
    ratio = rng.uniform(0.3, 1.0)
    a, b = radius / np.sqrt(ratio), radius * np.sqrt(ratio)
    cv2.ellipse(canvas, (cx, cy), (max(1, int(a)), max(1, int(b))), float(rng.uniform(0, 180)), 0, 360, 1, -1)


def _draw(kind: str, shape: tuple[int, int], cy: int, cx: int, area: float, rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    radius = max(1.0, float(np.sqrt(area / np.pi)))
    if kind == "stroke":
        _stroke(canvas, cy, cx, radius * 1.6, rng, int(rng.integers(1, 4)))
    elif kind == "blob":
        _blob(canvas, cy, cx, radius, rng)
    elif kind == "ellipse":
        _ellipse(canvas, cy, cx, radius, rng)
    else:
        _blob(canvas, cy, cx, radius * 0.7, rng)
        _stroke(canvas, cy, cx, radius * 1.2, rng, int(rng.integers(1, 3)))
    return canvas.astype(bool)


def sample_artifact_mask(
    object_mask: np.ndarray,
    rng: np.random.Generator,
    spec: MaskSpec | None = None,
    detail: np.ndarray | None = None,
    max_tries: int = 8,
) -> np.ndarray:
    """G of paper §3.4: a random free-form artifact mask inside ``object_mask`` (``(H, W)`` bool, non-empty).

    The result is always a non-empty subset of ``object_mask``. Its area is drawn per :class:`MaskSpec`; after
    clipping to the object a shape is redrawn (up to ``max_tries``) when it lost more than half its target area.
    """
    spec = spec or MaskSpec()
    obj = np.asarray(object_mask, bool)
    n_obj = int(obj.sum())
    if n_obj == 0:
        raise ValueError("object mask is empty")
    h, w = obj.shape
    ratio = float(np.exp(rng.uniform(np.log(spec.area_min), np.log(spec.area_max))))
    target = min(ratio * h * w, spec.max_object_fraction * n_obj)
    best = None
    for _ in range(max_tries):
        cy, cx = _pick_centre(obj, rng, detail, spec.detail_bias)
        kind = spec.kinds[int(rng.integers(len(spec.kinds)))]
        m = _draw(kind, (h, w), cy, cx, target, rng) & obj
        if best is None or m.sum() > best.sum():
            best = m
        if m.sum() >= 0.5 * target:
            break
    if not best.any():  # a 1-pixel object or a pathological draw: fall back to the centre pixel
        best = np.zeros_like(obj)
        best[cy, cx] = True
    return best


def area_ratios(masks: list[np.ndarray]) -> np.ndarray:
    """Area of each mask as a fraction of its image (for checking the distribution against PAL, §A.2)."""
    return np.array([m.mean() for m in masks], dtype=np.float64)
