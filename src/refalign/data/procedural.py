"""Procedural textured objects for tests and pre-training.

Each object is a random irregular silhouette filled with a mosaic of *unique local patterns* — Voronoi cells of
distinct colours, each with its own stripes / checks / dots at its own angle and frequency, plus scattered glyphs —
on a smooth background. No part of the object can be predicted from its surroundings, so an inpainting model can
only fill an artifact correctly by finding the matching part of the reference: the situation in which the
cross-attention correspondence of paper §3.2–3.3 is learned. Several views of one object (random rotation, scale,
shear, position, on different backgrounds) give multi-view pairs.
"""

from __future__ import annotations

import cv2
import numpy as np

from refalign.data.masks import detail_map
from refalign.data.samples import ObjectPhoto

_GLYPHS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789#@&%$"


def _random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    hsv = np.stack([rng.uniform(0, 180, n), rng.uniform(90, 255, n), rng.uniform(70, 255, n)], 1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32)


def _silhouette(rng: np.random.Generator, size: int) -> np.ndarray:
    n = int(rng.integers(9, 16))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.28, 0.46, n) * size
    radii = (radii + np.roll(radii, 1) + np.roll(radii, -1)) / 3.0
    c = size / 2.0
    pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1).round().astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def textured_object(rng: np.random.Generator, size: int = 192, cells: tuple[int, int] = (12, 28)) -> tuple[np.ndarray, np.ndarray]:
    """One object in its canonical frame: ``(texture (size, size, 3) uint8, mask (size, size) bool)``."""
    k = int(rng.integers(*cells))
    seeds = rng.uniform(0, size, (k, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    cell = d.argmin(-1)
    c1, c2 = _random_colours(rng, k), _random_colours(rng, k)
    angle = rng.uniform(0, np.pi, k)[cell]
    freq = rng.uniform(0.15, 0.6, k)[cell]
    kind = rng.integers(0, 4, k)[cell]
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    stripes = np.sin(u * freq) > 0
    checks = (np.sin(u * freq) > 0) ^ (np.sin(v * freq) > 0)
    dots = (np.sin(u * freq) * np.sin(v * freq)) > 0.5
    pattern = np.select([kind == 0, kind == 1, kind == 2], [stripes, checks, dots], default=np.zeros_like(stripes))
    tex = np.where(pattern[..., None], c2[cell], c1[cell])
    edges = cv2.dilate((cv2.Laplacian(cell.astype(np.float32), cv2.CV_32F) != 0).astype(np.uint8), np.ones((2, 2)))
    tex[edges.astype(bool)] *= 0.35  # dark cell borders: sharp, unique local structure
    tex = tex.clip(0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 8))):
        ch = _GLYPHS[int(rng.integers(len(_GLYPHS)))]
        org = (int(rng.uniform(0.15, 0.75) * size), int(rng.uniform(0.3, 0.85) * size))
        colour = tuple(int(c) for c in _random_colours(rng, 1)[0])
        cv2.putText(tex, ch, org, cv2.FONT_HERSHEY_SIMPLEX, size / 160.0 * rng.uniform(0.7, 1.4), colour, max(1, size // 90), cv2.LINE_AA)
    return tex, _silhouette(rng, size)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    a, b = _random_colours(rng, 2) * 0.5 + 100
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = (np.cos(rng.uniform(0, 2 * np.pi)) * xx + np.sin(rng.uniform(0, 2 * np.pi)) * yy + 1) / 2
    bg = a * (1 - t[..., None]) + b * t[..., None] + rng.normal(0, 3, (size, size, 1))
    return bg.clip(0, 255).astype(np.uint8)


def render_view(
    texture: np.ndarray, mask: np.ndarray, rng: np.random.Generator, size: int, *, jitter: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Place the object on a fresh background with a random similarity-plus-shear transform (no mirroring)."""
    n = texture.shape[0]
    if jitter:
        a = rng.uniform(-35, 35)
        s = rng.uniform(0.75, 1.0) * size / n
        m = cv2.getRotationMatrix2D((n / 2, n / 2), a, s)
        m[0, 1] += rng.uniform(-0.1, 0.1) * s
        m[:, 2] += (size - n) / 2 + rng.uniform(-0.08, 0.08, 2) * size
    else:
        m = np.array([[size / n, 0, 0], [0, size / n, 0]], np.float64)
    warped = cv2.warpAffine(texture, m, (size, size), flags=cv2.INTER_LINEAR)
    wmask = cv2.warpAffine(mask.astype(np.float32), m, (size, size), flags=cv2.INTER_LINEAR) >= 0.5
    image = np.where(wmask[..., None], warped, _background(rng, size))
    return image, wmask


def procedural_objects(
    count: int, *, size: int = 192, views: int = 2, seed: int = 0, with_detail: bool = True
) -> list[ObjectPhoto]:
    """``count`` procedural objects, each rendered in ``views`` views (a group per object). Deterministic in
    ``seed``."""
    rng = np.random.default_rng(seed)
    photos = []
    for i in range(count):
        tex, mask = textured_object(rng, size)
        for v in range(views):
            image, wmask = render_view(tex, mask, rng, size, jitter=v > 0)
            detail = detail_map(image) if with_detail else None
            photos.append(ObjectPhoto(image, wmask, f"proc{i:05d}", f"proc{i:05d}/{v}", "procedural", detail))
    return photos
