"""The perturbations of paper §3.4 that turn an object into its training reference: ``I_r = S(T(I_o ⊗ M))``.

* ``S`` — colour perturbation (brightness, contrast, saturation, hue, gamma), simulating lighting changes;
* ``T`` — a geometric transform (rotation, scale, shear, translation, perspective), simulating view changes.

``T`` never mirrors: mirrored logos and text are a known failure of reference-guided peers, so every sampled
homography keeps orientation (positive Jacobian determinant over the whole frame, checked). Masks go through the
same ``T`` as the pixels (:func:`warp_mask`) so the correspondence mask is exact bookkeeping, not an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from refalign.fill import GREY


@dataclass
class ColorSpec:
    """Ranges of colour perturbation S (0 disables a component)."""

    brightness: float = 0.15  # additive, fraction of full range
    contrast: float = 0.2  # multiplicative around the mean: [1 - c, 1 + c]
    saturation: float = 0.25
    hue: float = 8.0  # degrees
    gamma: float = 0.2  # exponent in [1 - g, 1 + g]


@dataclass
class GeometrySpec:
    """Ranges of geometric transform T (0 disables a component). Angles in degrees, translation as a fraction
    of the side, perspective as the largest corner displacement as a fraction of the side."""

    rotation: float = 15.0
    scale_min: float = 0.8
    scale_max: float = 1.05
    shear: float = 8.0
    translation: float = 0.06
    perspective: float = 0.06


def sample_color(rng: np.random.Generator, spec: ColorSpec) -> dict[str, float]:
    """Draw the parameters of one colour perturbation S."""
    return {
        "brightness": float(rng.uniform(-spec.brightness, spec.brightness)),
        "contrast": float(rng.uniform(1 - spec.contrast, 1 + spec.contrast)),
        "saturation": float(rng.uniform(1 - spec.saturation, 1 + spec.saturation)),
        "hue": float(rng.uniform(-spec.hue, spec.hue)),
        "gamma": float(rng.uniform(1 - spec.gamma, 1 + spec.gamma)),
    }


def apply_color(image: np.ndarray, params: dict[str, float], keep: np.ndarray | None = None) -> np.ndarray:
    """Apply S to an ``(H, W, 3)`` uint8 RGB image. Pixels where ``keep`` is false (e.g. the neutral-grey
    background of a segmented reference) are left unchanged."""
    x = image.astype(np.float32) / 255.0
    if params["hue"] or params["saturation"] != 1:
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # float: H in [0, 360)
        hsv[..., 0] = (hsv[..., 0] + params["hue"]) % 360.0
        hsv[..., 1] = np.clip(hsv[..., 1] * params["saturation"], 0, 1)
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    mean = float(x.mean())
    x = (x - mean) * params["contrast"] + mean + params["brightness"]
    x = np.clip(x, 0, 1) ** params["gamma"]
    out = (x * 255.0 + 0.5).astype(np.uint8)
    if keep is not None:
        out = np.where(keep[..., None], out, image)
    return out


def _about_centre(m: np.ndarray, size: int) -> np.ndarray:
    c = (size - 1) / 2.0
    to = np.array([[1, 0, c], [0, 1, c], [0, 0, 1]], np.float64)
    back = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]], np.float64)
    return to @ m @ back


def preserves_orientation(h: np.ndarray, size: int, samples: int = 5) -> bool:
    """True when the homography's Jacobian determinant is positive over the whole ``size × size`` frame (no
    mirroring anywhere) and no point of the frame maps to infinity."""
    g = np.linspace(0, size - 1, samples)
    for y in g:
        for x in g:
            p = h @ np.array([x, y, 1.0])
            if p[2] <= 1e-6:
                return False
            # Jacobian of (p0/p2, p1/p2) with respect to (x, y)
            j = (h[:2, :2] * p[2] - np.outer(p[:2], h[2, :2])) / p[2] ** 2
            if np.linalg.det(j) <= 0:
                return False
    return True


def sample_geometry(rng: np.random.Generator, spec: GeometrySpec, size: int) -> np.ndarray:
    """Draw T as a 3×3 homography acting on pixel coordinates of a ``size × size`` frame, composed about its
    centre: perspective ∘ translation ∘ rotation ∘ shear ∘ scale. Never a mirror (checked; redrawn if needed)."""
    for _ in range(16):
        a = np.deg2rad(rng.uniform(-spec.rotation, spec.rotation))
        s = rng.uniform(spec.scale_min, spec.scale_max)
        sh = np.tan(np.deg2rad(rng.uniform(-spec.shear, spec.shear)))
        tx, ty = rng.uniform(-spec.translation, spec.translation, 2) * size
        rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        shear = np.array([[1, sh, 0], [0, 1, 0], [0, 0, 1]])
        scale = np.diag([s, s, 1.0])
        trans = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
        persp = np.eye(3)
        if spec.perspective > 0:
            px, py = rng.uniform(-spec.perspective, spec.perspective, 2) / max(size / 2.0, 1.0)
            persp[2, :2] = (px, py)
        h = _about_centre(persp @ trans @ rot @ shear @ scale, size)
        if preserves_orientation(h, size):
            return h
    return np.eye(3)


def warp_image(image: np.ndarray, h: np.ndarray, size: int, fill: int = GREY) -> np.ndarray:
    """Apply T (bilinear) to an image already resized to ``size × size``; outside is filled with ``fill``."""
    return cv2.warpPerspective(
        image, h, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 3
    )


def warp_mask(mask: np.ndarray, h: np.ndarray, size: int, *, nearest: bool = False) -> np.ndarray:
    """Apply the same T to a bool mask: bilinear then ``>= 0.5`` (the mask follows the pixels' geometry), or
    nearest-neighbour for label images (exact lookup, used by the bookkeeping tests)."""
    if nearest:
        return cv2.warpPerspective(mask, h, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    soft = cv2.warpPerspective(mask.astype(np.float32), h, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    return soft >= 0.5


# ------------------------------------------------------------------ the benchmark's warp kind (whole photos)
def random_homography(h: int, w: int, rng: np.random.Generator, *, jitter: float = 0.08) -> np.ndarray:
    """A random perspective transform: rotation ±12°, scale 0.8–1.0, shift ±5 % and corner jitter ±``jitter``."""
    angle, scale = rng.uniform(-12, 12), rng.uniform(0.8, 1.0)
    a = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    a[:, 2] += rng.uniform(-0.05, 0.05, 2) * (w, h)
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    moved = cv2.transform(corners[None], a)[0] + rng.uniform(-jitter, jitter, (4, 2)).astype(np.float32) * (w, h)
    return cv2.getPerspectiveTransform(corners, moved.astype(np.float32))


def colour_change(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Per-channel gain, gamma and saturation change (the perturbation S of §3.4, mild)."""
    gains = rng.uniform(0.85, 1.15, 3)
    gamma = float(rng.uniform(0.8, 1.25))
    sat = float(rng.uniform(0.7, 1.3))
    x = np.clip((image.astype(np.float32) / 255.0) ** gamma * gains, 0, 1)
    grey = x.mean(axis=2, keepdims=True)
    x = np.clip(grey + (x - grey) * sat, 0, 1)
    return (x * 255 + 0.5).astype(np.uint8), {"gains": gains.round(4).tolist(), "gamma": round(gamma, 4), "saturation": round(sat, 4)}


def project_mask(mask: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` pushed through ``matrix`` (its frame → another) onto a ``shape`` frame (bilinear, ≥ 0.5)."""
    out = cv2.warpPerspective(mask.astype(np.float32), matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR)
    return out >= 0.5


def perspective_copy(image: np.ndarray, obj: np.ndarray, hom: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, dict]:
    """The photo through ``hom`` (white outside the frame) with :func:`colour_change`, and its object mask through
    the same ``hom``: ``(reference, reference_object_mask, colour_info)`` — the benchmark's warp reference."""
    h, w = image.shape[:2]
    ref = cv2.warpPerspective(image, hom, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(255, 255, 255))
    ref, colour = colour_change(ref, rng)
    return ref, project_mask(obj, hom, (h, w)), colour
