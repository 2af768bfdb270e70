"""Evaluation metrics as pure numpy functions.

Pixel metrics (not in the paper, possible here because synthetic cases have a clean ``target.png``):
PSNR and SSIM in the artifact window (the zoom-in square of §3.4, :func:`refalign.windows.square_window`), the
background check of DESIGN §5 (pixels outside the dilated mask unchanged), and a seam error (gradient mismatch along
the mask boundary: a pasted region with a visible edge scores high). Alignment: correspondence IoU (paper §4.4,
Fig. 5 reports its mean, mIoU). Text: OCR agreement as one minus the normalised edit distance. The paper's semantic
scores (CLIP-I, DINO, CLIP-T, §4.1) are cosine similarities ×100 (:func:`cosine_score`) of features computed in
:mod:`refalign.eval.semantic`.
"""

from __future__ import annotations

import cv2
import numpy as np

from refalign.mask_ops import dilate, iou  # noqa: F401 (iou: part of the metrics, with its one home in mask_ops)
from refalign.windows import Window, crop, mask_bbox, square_window


def artifact_window(mask: np.ndarray, *, context: float = 2.0, min_size: int = 64) -> Window:
    """The square window around the artifact in which pixel metrics are measured."""
    return square_window(mask_bbox(mask), mask.shape[:2], context=context, min_size=min_size)


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10·log10(R² / MSE)``; ``inf`` for identical inputs."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0) -> float:
    """Structural similarity (Wang et al. 2004): Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03, computed per
    channel and averaged (1.0 for identical inputs)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    scores = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        num = (2 * mx * my + c1) * (2 * sxy + c2)
        den = (mx * mx + my * my + c1) * (sxx + syy + c2)
        scores.append(float(np.mean(num / den)))
    return float(np.mean(scores))


def window_psnr_ssim(output: np.ndarray, target: np.ndarray, mask: np.ndarray, **window_kwargs) -> tuple[float, float]:
    """PSNR and SSIM of ``output`` against ``target`` inside the artifact's square window."""
    win = artifact_window(mask, **window_kwargs)
    o, t = crop(output, win), crop(target, win)
    return psnr(o, t), ssim(o, t)


def box_psnr_ssim(output: np.ndarray, target: np.ndarray, mask: np.ndarray, *, margin: int = 8) -> tuple[float, float]:
    """PSNR and SSIM of ``output`` against ``target`` over the artifact: the mask's bounding box grown by ``margin``
    pixels on each side (DESIGN §7), clipped to the image."""
    t, l, b, r = mask_bbox(mask)
    h, w = mask.shape[:2]
    ys, xs = slice(max(0, t - margin), min(h, b + margin)), slice(max(0, l - margin), min(w, r + margin))
    return psnr(output[ys, xs], target[ys, xs]), ssim(output[ys, xs], target[ys, xs])


def background_max_diff(output: np.ndarray, image: np.ndarray, mask: np.ndarray, *, dilation: int = 8) -> int:
    """Largest absolute pixel difference between output and input outside the mask dilated by ``dilation`` px
    (DESIGN §5 requires 0)."""
    outside = ~dilate(mask, dilation)
    if not outside.any():
        return 0
    return int(np.abs(output.astype(np.int16) - image.astype(np.int16))[outside].max())


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the grey image (float, ``(H, W)``)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    grey = grey.astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def boundary_band(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` px of the mask's boundary, on both sides."""
    return dilate(mask, width) & dilate(~mask.astype(bool), width)


def seam_error(output: np.ndarray, target: np.ndarray, mask: np.ndarray, *, width: int = 2) -> float:
    """Mean absolute difference of Sobel gradient magnitudes between output and target on the band of ``width``
    px around the mask boundary, in grey levels per pixel: a visible seam adds gradient the target does not have."""
    band = boundary_band(mask, width)
    if not band.any():
        return 0.0
    return float(np.abs(gradient_magnitude(output) - gradient_magnitude(target))[band].mean())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalise_text(text: str) -> str:
    """Lower-case alphanumerics only (OCR punctuation and spacing are noise)."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def ocr_agreement(read: str, truth: str) -> float:
    """``1 − edit_distance / max(len)`` of the normalised strings (1.0 when equal, also when both are empty)."""
    a, b = normalise_text(read), normalise_text(truth)
    if not a and not b:
        return 1.0
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))


def cosine_score(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity ×100 of two feature vectors — the scale of the paper's CLIP-I / DINO / CLIP-T (Table 1)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return 0.0 if den == 0 else float(100.0 * np.dot(a, b) / den)


def bbox_crop(image: np.ndarray, mask: np.ndarray, *, margin: float = 0.1) -> np.ndarray:
    """Crop of ``image`` to the bounding box of ``mask`` grown by ``margin`` of its size on each side (clipped)."""
    t, l, b, r = mask_bbox(mask)
    dy, dx = int(round((b - t) * margin)), int(round((r - l) * margin))
    h, w = mask.shape[:2]
    return np.ascontiguousarray(image[max(0, t - dy) : min(h, b + dy), max(0, l - dx) : min(w, r + dx)])
