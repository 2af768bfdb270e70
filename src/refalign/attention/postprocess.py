"""Post-processing of a raw correspondence map into the correspondence mask ``M*`` (paper §A.4).

Pure numpy functions on the ``(grid_h, grid_w)`` eq. 5 map over the reference's patch tokens:

1. :func:`remove_noise_peaks` — ViT feature maps carry isolated high-norm tokens, mostly at borders and corners
   (Darcet et al., 2023, cited in §A.4). A token is such a peak when its *drop* to the second-largest of its in-grid
   8-neighbours is (a) more than ``noise_z`` robust standard deviations of the map (``1.4826 · MAD``, floored at
   ``1e-3 ×`` the map's range so a nearly flat map does not flag everything) and (b) more than ``isolation``
   (default :data:`ISOLATION` = 0.5) of the token's own height above the map's median. Comparing with the
   second-largest neighbour flags single tokens and pairs (a noise token with one noisy neighbour) while every
   token of a genuine blob at least 2×2 in size keeps two high neighbours; (b) keeps the summit of a smooth blob,
   which stands out from the background but only a little from its slopes. Flagged tokens are replaced by the
   median of their in-grid neighbours.
2. :func:`normalise_map` — ``(m − min) / (max − min)`` → the soft map in ``[0, 1]`` (zeros for a flat map).
3. :func:`largest_blob` — threshold the soft map at ``threshold`` (relative to its maximum, which is 1), split the
   result into 8-connected components and keep the one with the largest mass (sum of soft values; on ties the
   larger area): the "clustering to locate the largest blob" of §A.4. Mass rather than area, so a faint wide
   plateau does not beat a strong compact response.
4. :func:`upsample_to_reference` — bilinear upsampling (pixel-centre aligned) of the soft map restricted to the blob,
   binarised at ``threshold ×`` the blob's own maximum, so the blob's peak always survives → ``M*``.

:func:`mass_share` is the confidence score reported with ``M*``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

#: Floor of the robust noise scale, as a fraction of the map's range (see :func:`remove_noise_peaks`).
SIGMA_FLOOR = 1e-3
#: A noise peak drops by more than this fraction of its height (above the median) to its second-highest neighbour.
ISOLATION = 0.5


def _neighbour_stack(m: np.ndarray) -> np.ndarray:
    """``(8, h, w)``: the 8 neighbours of every cell, ``nan`` where the neighbour is outside the grid."""
    p = np.pad(m.astype(np.float64), 1, mode="constant", constant_values=np.nan)
    h, w = m.shape
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    return np.stack([p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in shifts])


def robust_sigma(m: np.ndarray) -> float:
    """``1.4826 · median(|m − median(m)|)``, floored at :data:`SIGMA_FLOOR` × the range of ``m``."""
    m = np.asarray(m, dtype=np.float64)
    mad = float(np.median(np.abs(m - np.median(m))))
    return max(1.4826 * mad, SIGMA_FLOOR * float(m.max() - m.min()), 1e-12)


def remove_noise_peaks(
    m: np.ndarray, noise_z: float = 4.0, isolation: float = ISOLATION
) -> tuple[np.ndarray, np.ndarray]:
    """Remove isolated high outliers (ViT noise tokens) from a token map (paper §A.4; criteria in the module docs).

    Returns ``(cleaned, peaks)``: the map with each flagged token replaced by the median of its in-grid neighbours,
    and the ``bool`` map of flagged tokens. ``noise_z = inf`` disables the filter.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D token map; got shape {m.shape}")
    if min(m.shape) < 2 or not np.isfinite(noise_z):
        return m.copy(), np.zeros(m.shape, bool)
    nb = _neighbour_stack(m)
    filled = np.where(np.isnan(nb), -np.inf, nb)
    second = -np.sort(-filled, axis=0)[1]  # second-largest in-grid neighbour (every cell has >= 3 of them)
    drop = m - second
    peaks = (drop > noise_z * robust_sigma(m)) & (drop > isolation * (m - np.median(m)))
    cleaned = m.copy()
    if peaks.any():
        cleaned[peaks] = np.nanmedian(nb, axis=0)[peaks]
    return cleaned, peaks


def normalise_map(m: np.ndarray) -> np.ndarray:
    """``(m − min) / (max − min)`` as float32 in ``[0, 1]``; a flat map gives zeros."""
    m = np.asarray(m, dtype=np.float64)
    lo, hi = float(m.min()), float(m.max())
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        return np.zeros(m.shape, np.float32)
    return ((m - lo) / (hi - lo)).astype(np.float32)


def largest_blob(soft: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The 8-connected component of ``soft >= threshold`` with the largest mass (see module docs); ``bool``.

    An all-zero map (flat input) has no blob: the result is all ``False``.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    soft = np.asarray(soft, dtype=np.float64)
    binary = (soft >= threshold) & (soft > 0)
    labels, n = ndimage.label(binary, structure=np.ones((3, 3), int))
    if n == 0:
        return np.zeros(soft.shape, bool)
    index = np.arange(1, n + 1)
    mass = ndimage.sum(soft, labels, index)
    area = ndimage.sum(binary, labels, index)
    best = index[np.lexsort((area, mass))[-1]]
    return labels == best


def upsample_to_reference(
    soft: np.ndarray, blob: np.ndarray, out_hw: tuple[int, int], threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear-upsample the soft map restricted to ``blob`` to ``out_hw`` and binarise it → ``(M*, upsampled)``.

    Binarised at ``threshold ×`` the blob's maximum (so the blob's peak always survives); pixels are mapped to token
    cells by their centres (``cv2.INTER_LINEAR``), so a token's cell covers ``H / grid_h`` reference pixels.
    """
    h, w = out_hw
    part = np.where(blob, soft, 0.0).astype(np.float32)
    up = cv2.resize(part, (int(w), int(h)), interpolation=cv2.INTER_LINEAR)
    peak = float(part.max())
    if peak <= 0:
        return np.zeros((h, w), bool), up
    return up >= threshold * peak, up


def upsample_soft(soft: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The whole soft map bilinearly upsampled to ``out_hw`` (for display)."""
    h, w = out_hw
    return cv2.resize(np.asarray(soft, np.float32), (int(w), int(h)), interpolation=cv2.INTER_LINEAR)


def mass_share(m: np.ndarray, region: np.ndarray) -> float:
    """Share of a non-negative map's mass inside ``region`` (the confidence score of ``M*``): 1 when all attention
    under the artifact lands in the chosen blob, ``|region| / N`` for a uniform map, 0 for an empty region."""
    m = np.clip(np.asarray(m, dtype=np.float64), 0, None)
    total = float(m.sum())
    return float(m[region].sum() / total) if total > 0 else 0.0


@dataclass
class PostprocessResult:
    """Token-grid outputs of :func:`postprocess_map`."""

    cleaned: np.ndarray  # raw map with noise peaks replaced (float32)
    soft_map: np.ndarray  # cleaned map normalised to [0, 1] (float32)
    token_mask: np.ndarray  # the largest blob (bool)
    noise_peaks: np.ndarray  # tokens removed as ViT noise (bool)
    score: float  # mass_share(cleaned, token_mask)


def postprocess_map(raw: np.ndarray, *, noise_z: float = 4.0, threshold: float = 0.5) -> PostprocessResult:
    """Paper §A.4 on the token grid: noise-peak removal, normalisation, largest blob, confidence score."""
    cleaned, peaks = remove_noise_peaks(raw, noise_z)
    soft = normalise_map(cleaned)
    blob = largest_blob(soft, threshold)
    return PostprocessResult(
        cleaned=cleaned.astype(np.float32),
        soft_map=soft,
        token_mask=blob,
        noise_peaks=peaks,
        score=mass_share(cleaned, blob),
    )
