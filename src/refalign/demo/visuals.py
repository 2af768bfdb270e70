"""Pictures the web demo and ``refalign example`` show: the correspondence on the reference (paper Fig. 6), a
before/after panel, and their labelled forms (each picture says what it is and, for a correspondence, its
confidence; the token-level attention map is a separate, named picture).

Pure numpy/OpenCV functions on ``uint8 (H, W, 3)`` images and ``bool (H, W)`` masks; nothing here knows about
gradio or the model. The Fig. 6 overlay itself is :func:`refalign.attention.correspondence_overlay` (shared with
the alignment stage); this module only combines the windows' soft maps for it and adds the before/after panel.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from refalign.attention.overlay import correspondence_overlay
from refalign.windows import crop, mask_bbox, square_window

#: Colour of the region contour on the reference and of the artifact contour on the before/after panel (RGB).
CONTOUR_COLOR = (255, 230, 0)


def combine_soft_maps(maps: Iterable[np.ndarray]) -> np.ndarray | None:
    """Union of the soft maps of several zoom windows, each already on the reference (``(H_ref, W_ref)`` in
    ``[0, 1]``, :meth:`AlignmentOutput.soft_on_reference`): the per-pixel maximum. ``None`` when there is none."""
    maps = [np.asarray(m, dtype=np.float32) for m in maps if m is not None]
    if not maps:
        return None
    shape = maps[0].shape
    for m in maps[1:]:
        if m.shape != shape:
            raise ValueError(f"soft maps of different sizes: {shape} and {m.shape}")
    return np.maximum.reduce(maps) if len(maps) > 1 else maps[0]


def contour_thickness(hw: tuple[int, int]) -> int:
    """Line width that stays visible at any image size: about 1/200 of the shorter side, at least 1 pixel."""
    return max(1, int(round(min(hw) / 200)))


def draw_contour(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = CONTOUR_COLOR, thickness: int | None = None) -> np.ndarray:
    """A copy of ``image`` with the outline of every connected part of ``mask`` drawn on it."""
    out = np.ascontiguousarray(image.copy())
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != out.shape[:2]:
        raise ValueError(f"mask is {mask.shape} but image is {out.shape[:2]}")
    if not mask.any():
        return out
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness or contour_thickness(mask.shape))
    return out


def demo_overlay(reference: np.ndarray, soft: np.ndarray | None, region: np.ndarray | None) -> np.ndarray:
    """The picture of "where the model looked" for one request, drawn by
    :func:`refalign.attention.correspondence_overlay` (paper Fig. 6: reference dimmed outside ``M*``, soft map as a
    heat tint, ``M*`` outlined). ``region=None`` means the whole reference conditioned the refinement (alignment
    skipped): nothing is dimmed and the outline is the reference's border."""
    ref = np.asarray(reference)
    if region is None:
        region = np.ones(ref.shape[:2], bool)
    return correspondence_overlay(ref, np.asarray(region, dtype=bool), soft, contour_color=CONTOUR_COLOR)


def before_after(
    image: np.ndarray,
    refined: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    gap: int = 8,
    color: tuple[int, int, int] = CONTOUR_COLOR,
    background: int = 255,
) -> np.ndarray:
    """Input and refined image side by side (input left), ``gap`` pixels apart, with the artifact mask outlined
    on both so the eye finds the changed part. Returns ``uint8 (H, 2W + gap, 3)``."""
    a, b = np.asarray(image), np.asarray(refined)
    if a.shape != b.shape:
        raise ValueError(f"image is {a.shape} but refined is {b.shape}")
    if mask is not None:
        a, b = draw_contour(a, mask, color), draw_contour(b, mask, color)
    h, w = a.shape[:2]
    panel = np.full((h, 2 * w + gap, 3), background, np.uint8)
    panel[:, :w] = a
    panel[:, w + gap :] = b
    return panel


# ------------------------------------------------------------------------------------------- labelled pictures

#: Header bar of a labelled picture: background and text colour (RGB).
LABEL_BACKGROUND = (32, 32, 32)
LABEL_TEXT = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _wrap_to_width(text: str, width: int, scale: float, thickness: int) -> list[str]:
    """Greedy word wrap so that each line's rendered width (OpenCV's Hershey font at ``scale``) fits ``width``."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, _FONT, scale, thickness)[0][0] <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines or [""]


def label(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` under a dark header bar carrying ``text`` (wrapped to the image's width); the image itself is
    unchanged below the bar. Returns ``uint8 (bar + H, W, 3)``."""
    img = np.ascontiguousarray(np.asarray(image, np.uint8))
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    w = img.shape[1]
    scale = max(0.35, min(0.6, w / 900))
    thickness = 1
    pad = max(4, int(round(8 * scale)))
    lines = _wrap_to_width(text, w - 2 * pad, scale, thickness)
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, thickness)
    line_h = th + base + pad // 2
    bar = np.full((pad + line_h * len(lines), w, 3), LABEL_BACKGROUND, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(bar, line, (pad, pad // 2 + th + i * line_h), _FONT, scale, LABEL_TEXT, thickness, cv2.LINE_AA)
    return np.vstack([bar, img])


def correspondence_picture(reference: np.ndarray, region: np.ndarray | None, confidence: float | None = None,
                           how: str = "") -> np.ndarray:
    """The correspondence *actually used* by the refinement, on the reference: outside ``region`` dimmed, the
    region outlined, labelled with what it is and its confidence. ``region=None``: the whole reference was used."""
    ref = np.asarray(reference)
    if region is None:
        return label(correspondence_overlay(ref, np.ones(ref.shape[:2], bool), contour_color=CONTOUR_COLOR),
                     "reference: the whole photo was used (no alignment)")
    conf = f", confidence {confidence:.2f}" if confidence is not None else ""
    how = f" ({how})" if how else ""
    picture = correspondence_overlay(ref, np.asarray(region, bool), contour_color=CONTOUR_COLOR)
    if not np.asarray(region).any():
        return label(picture, "reference: no matching region found")
    return label(picture, f"reference: region used for the repair, outlined{how}{conf}")


def token_map_picture(reference: np.ndarray, soft: np.ndarray | None) -> np.ndarray:
    """The token-level cross-attention map (paper eq. 5, 16x16 reference tokens) as a heat tint on the reference,
    labelled as such: it shows where the model attended, not the region the repair used."""
    ref = np.asarray(reference)
    everywhere = np.ones(ref.shape[:2], bool)
    if soft is None:
        return label(ref, "token attention map: not computed (alignment skipped)")
    picture = correspondence_overlay(ref, everywhere, soft, tint=0.6, contour_color=CONTOUR_COLOR)
    return label(picture, "token attention map (eq. 5, 16x16 tokens): where the model looked, not the region used")


def labelled_row(images: list[np.ndarray], labels: list[str], mask: np.ndarray | None = None, *, gap: int = 8,
                 background: int = 255) -> np.ndarray:
    """Pictures side by side, each under its label, ``gap`` pixels apart, with ``mask`` outlined on each."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} pictures but {len(labels)} labels")
    shapes = {np.asarray(im).shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"pictures of different sizes: {sorted(shapes)}")
    panels = [label(draw_contour(np.asarray(im), mask) if mask is not None else im, text)
              for im, text in zip(images, labels)]
    h = max(p.shape[0] for p in panels)
    row = []
    for k, p in enumerate(panels):
        row.append(np.vstack([p, np.full((h - p.shape[0], p.shape[1], 3), background, np.uint8)]))
        if k < len(panels) - 1:
            row.append(np.full((h, gap, 3), background, np.uint8))
    return np.hstack(row)


def labelled_before_after(image: np.ndarray, refined: np.ndarray, mask: np.ndarray | None, labels: tuple[str, str],
                          *, gap: int = 8, background: int = 255) -> np.ndarray:
    """:func:`before_after` with a label over each half (e.g. ``("input: artifact outlined", "refined: PSNR …")``)."""
    return labelled_row([image, refined], list(labels), mask, gap=gap, background=background)


def artifact_zoom(images: list[np.ndarray], labels: list[str], mask: np.ndarray, *, context: float = 3.0,
                  size: int = 256) -> np.ndarray:
    """The square around the artifact (``context`` times its box, :func:`refalign.windows.square_window`) from
    each image, enlarged to ``size`` pixels without smoothing (pixels shown as they are), labelled, side by side."""
    win = square_window(mask_bbox(mask), mask.shape[:2], context=context, min_size=32)
    zoom = [cv2.resize(crop(np.asarray(im), win), (size, size), interpolation=cv2.INTER_NEAREST) for im in images]
    small = cv2.resize(crop(mask.astype(np.uint8), win), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    return labelled_row(zoom, labels, small)
