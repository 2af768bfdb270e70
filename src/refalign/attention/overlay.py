"""Picture of a correspondence on the reference, in the style of paper Fig. 6."""

from __future__ import annotations

import cv2
import numpy as np


def correspondence_overlay(
    reference: np.ndarray,
    mask: np.ndarray,
    soft: np.ndarray | None = None,
    *,
    dim: float = 0.35,
    tint: float = 0.45,
    contour_color: tuple[int, int, int] = (255, 255, 0),
) -> np.ndarray:
    """The reference with the correspondence shown: pixels outside ``mask`` (``M*``) dimmed to ``dim`` of their
    brightness, the soft map (``(H, W)`` in ``[0, 1]``, already at the reference's size) blended in as a heat tint
    of strength up to ``tint``, and ``M*``'s outline drawn in ``contour_color``. Returns ``(H, W, 3) uint8``."""
    ref = np.asarray(reference, dtype=np.float32)
    m = np.asarray(mask, bool)
    if m.shape != ref.shape[:2]:
        raise ValueError(f"mask is {m.shape} but the reference is {ref.shape[:2]}")
    out = np.where(m[..., None], ref, ref * dim)
    if soft is not None:
        s = np.clip(np.asarray(soft, np.float32), 0.0, 1.0)
        heat = cv2.applyColorMap((s * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1].astype(np.float32)
        a = (tint * s)[..., None]
        out = out * (1 - a) + heat * a
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(m.shape) / 256))
    out = np.ascontiguousarray(out)
    cv2.drawContours(out, contours, -1, contour_color, thickness)
    return out
