"""Evaluation metrics as pure numpy functions.

Pixel metrics (not in the paper, possible here because synthetic cases have a clean ``target.png``) are taken over
the artifact (DESIGN §7): PSNR and SSIM over the mask's bounding box grown by 8 px (:func:`artifact_box`, the
headline), PSNR over the mask's pixels only, GMSD (Xue et al. 2014; texture and edges, which PSNR forgives a blur)
and the detail ratio (mean |Laplacian| inside the mask, output / truth: 1 = the truth's texture, < 1 = blur), the
seam error (gradient mismatch along the mask boundary: a pasted region with a visible edge scores high), and the
background check of DESIGN §5 (pixels outside the dilated mask unchanged). The older figures over the artifact
window (the zoom-in square of §3.4, twice the artifact's size and mostly untouched background) stay as a secondary
column so earlier tables remain comparable. Alignment: correspondence IoU (paper §4.4,
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


def artifact_box(mask: np.ndarray, *, margin: int = 8) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the mask's bounding box grown by ``margin`` px on every side, clipped to
    the image (bottom/right exclusive): the region the headline PSNR/SSIM are taken over."""
    return mask_bbox(mask, margin=margin)


def box_psnr_ssim(output: np.ndarray, target: np.ndarray, mask: np.ndarray, *, margin: int = 8) -> tuple[float, float]:
    """PSNR and SSIM of ``output`` against ``target`` over :func:`artifact_box` (the headline pixel metrics)."""
    t, l, b, r = artifact_box(mask, margin=margin)
    o, g = output[t:b, l:r], target[t:b, l:r]
    return psnr(o, g), ssim(o, g)


def mask_psnr(output: np.ndarray, target: np.ndarray, mask: np.ndarray, *, data_range: float = 255.0) -> float:
    """PSNR over the mask's pixels only (all channels): the error of what was repainted, no background at all."""
    m = mask.astype(bool)
    return psnr(output[m], target[m], data_range=data_range)


def _luminance(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` as float64 (grey images pass through)."""
    x = image.astype(np.float64)
    return x if x.ndim == 2 else x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def gmsd(output: np.ndarray, target: np.ndarray, *, downsample: int = 2, c: float = 170.0) -> float:
    """Gradient Magnitude Similarity Deviation (Xue, Zhang, Mou & Bovik, IEEE TIP 2014), lower is better, 0 for
    identical inputs.

    As the authors' reference code: luma, a ``downsample``×``downsample`` average filter and decimation, Prewitt
    gradients ``m = sqrt((h_x ⊛ I)² + (h_y ⊛ I)²)`` with ``h_x = [1 0 −1]ᵀ[1 1 1] / 3``, the gradient magnitude
    similarity ``GMS = (2 m_r m_d + c) / (m_r² + m_d² + c)`` (eq. 4, ``c = 170`` for 0–255 images) and its
    standard deviation over the image (eq. 6). Apply it to the crop of interest (the artifact's box)."""
    ref, dist = _luminance(target), _luminance(output)
    if downsample > 1 and min(ref.shape) >= 2 * downsample:
        k = np.ones((downsample, downsample)) / downsample**2
        ref = cv2.filter2D(ref, -1, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[::downsample, ::downsample]
        dist = cv2.filter2D(dist, -1, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[::downsample, ::downsample]
    hx = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], np.float64) / 3.0

    def magnitude(x: np.ndarray) -> np.ndarray:
        gx = cv2.filter2D(x, -1, hx, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.filter2D(x, -1, hx.T, borderType=cv2.BORDER_REPLICATE)
        return np.sqrt(gx * gx + gy * gy)

    mr, md = magnitude(ref), magnitude(dist)
    gms = (2 * mr * md + c) / (mr * mr + md * md + c)
    return float(gms.std())


def box_gmsd(output: np.ndarray, target: np.ndarray, mask: np.ndarray, *, margin: int = 8) -> float:
    """:func:`gmsd` over :func:`artifact_box`."""
    t, l, b, r = artifact_box(mask, margin=margin)
    return gmsd(output[t:b, l:r], target[t:b, l:r])


def box_psnr_gmsd(output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``(PSNR, GMSD)`` over :func:`artifact_box`: the headline score with its texture measure beside it (a blur
    wins PSNR, not GMSD), as the benchmarks' tables report them."""
    return box_psnr_ssim(output, target, mask)[0], box_gmsd(output, target, mask)


def mean_abs_laplacian(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean |∇²I| of the luma (4-neighbour Laplacian) over the mask's pixels: the amount of fine texture there."""
    lap = cv2.Laplacian(_luminance(image), cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT)
    return float(np.abs(lap)[mask.astype(bool)].mean())


def detail_ratio(output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean |Laplacian| inside the mask, output / truth: 1 = the truth's amount of texture, below 1 = smoother
    (a blur), above 1 = busier. ``None`` when the truth has no texture there (the ratio is undefined)."""
    truth = mean_abs_laplacian(target, mask)
    return None if truth <= 1e-9 else mean_abs_laplacian(output, mask) / truth


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
