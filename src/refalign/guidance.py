"""Warped-reference guidance (beyond the paper): the reference, warped onto the model's window, as extra input.

The paper conditions the refiner on the reference only through cross-attention tokens (16×16 at most), which caps
how much fine detail can be copied (§5). When the geometry between image and reference is known — exactly during
training (the synthesis knows T), by feature matching at inference (:mod:`refalign.registration`) — the reference
can also be warped pixel-accurately onto the window the U-Net refines and given to it as extra input channels: the
warped pixels (encoded by the codec, like the masked image) and a validity mask (1 where a real reference pixel of
the matched region landed). A model trained with some samples' guidance dropped (validity 0, grey pixels) also
works when matching fails.

Conventions: a matrix ``M`` maps *window-frame* pixel coordinates (the ``resolution × resolution`` image the model
sees) to reference pixel coordinates; pixel centres are integer coordinates, as in OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

from refalign.fill import GREY


def warp_to_window(
    reference: np.ndarray, region: np.ndarray, matrix: np.ndarray, resolution: int, fill: int = GREY
) -> tuple[np.ndarray, np.ndarray]:
    """The reference seen through ``matrix`` (window frame → reference), restricted to ``region``.

    Returns ``(pixels, valid)``: ``(R, R, 3) uint8`` with ``fill`` wherever no pixel of ``region`` lands, and the
    ``(R, R)`` bool validity mask.
    """
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    size = (resolution, resolution)
    pixels = cv2.warpPerspective(reference, matrix, size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=(fill,) * 3)
    valid = cv2.warpPerspective(region.astype(np.float32), matrix, size, flags=flags, borderValue=0) >= 0.5
    pixels[~valid] = fill
    return pixels, valid


def empty_guidance(resolution: int, fill: int = GREY) -> tuple[np.ndarray, np.ndarray]:
    """No guidance: grey pixels, validity 0 (what a model sees when matching failed or guidance was dropped)."""
    return np.full((resolution, resolution, 3), fill, np.uint8), np.zeros((resolution, resolution), bool)


def jitter(matrix: np.ndarray, rng: np.random.Generator, pixels: float, resolution: int) -> np.ndarray:
    """``matrix`` composed with a small random similarity of the window frame (translation up to ``pixels``, and
    the rotation/scale that moves the frame's corners by about as much): the registration error of inference."""
    if pixels <= 0:
        return matrix
    c = (resolution - 1) / 2.0
    tx, ty = rng.uniform(-pixels, pixels, 2)
    a = rng.uniform(-1, 1) * pixels / max(c, 1.0)
    s = 1.0 + rng.uniform(-1, 1) * pixels / max(c, 1.0)
    rot = np.array([[s * np.cos(a), -s * np.sin(a), 0.0], [s * np.sin(a), s * np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    about = np.array([[1.0, 0.0, c + tx], [0.0, 1.0, c + ty], [0.0, 0.0, 1.0]]) @ rot @ np.array(
        [[1.0, 0.0, -c], [0.0, 1.0, -c], [0.0, 0.0, 1.0]]
    )
    return matrix @ about
