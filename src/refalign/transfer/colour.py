"""Photometric transfer: map the registered reference's colours onto the image's (DESIGN §6, issue 15 part 2).

Two photos of one object differ in exposure, white balance and tone curve, and a generated image differs again.
Pixels of the reference that registration put on top of *known* pixels of the image (outside the artifact) are
pairs ``(reference colour, image colour)``; a smooth colour map fitted to them carries the hole's reference pixels
into the image's colours.

* :func:`fit_colour` — a per-channel polynomial of degree 2 with cross terms,
  ``c_out = a_0 + Σ_i a_i c_i + Σ_{i≤j} a_ij c_i c_j`` (10 terms per output channel; the "root-polynomial /
  polynomial colour correction" family, Finlayson et al. 2015, here the plain polynomial), fitted by iteratively
  reweighted least squares with Tukey's biweight (robust to misregistered and occluded pairs), a ridge that pulls
  the quadratic terms towards an affine map (the hole may hold colours the neighbourhood barely shows — a
  quadratic must not extrapolate wildly there), and **colour balancing**: each pair is weighted by the inverse
  frequency of its colour (3-D histogram bins), so that a ring that is 90 % white shirt does not decide what the
  logo's navy becomes.
* :func:`fit_quantiles` — a per-channel monotone map by histogram specification, which needs the same content in
  both areas but no pixel pairs: what the refine path uses, since misregistered thin structures bend a pair fit
  (:func:`refalign.transfer.register.fit_hole_colour`).
* :func:`correct_on_pairs` — an affine cross-channel correction after the histogram specification, fitted on
  **shift-tolerant pairs**: each known pixel paired with the reference pixel within
  :data:`PAIR_SHIFT` of it whose mapped colour is nearest its own, so a pixel of misregistration cannot pair a white
  border with the fabric beside it, while what a per-channel map cannot express (a saturation change mixes the
  channels) is still fitted on pairs; kept only where it predicts pixels it was not fitted on. The same pairs then
  fit a **colour-space correction** (:func:`fit_lut`, :class:`ColourLut`): their remaining residuals regressed over
  the mapped colour on a coarse 3-D grid, which corrects what neither a per-channel nor an affine map can — one
  colour mapped wrongly while the others are right, as when a material changes hue between the two views and bends
  the per-channel maps for the neutral colours beside it.
* :func:`offset_field` — a smooth additive field (normalised convolution of the fit's residuals) for lighting that
  varies across the neighbourhood.
* :func:`guided_filter` — a colour map that varies across the image: the guided filter (He, Sun & Tang) fits, in
  every box of pixels, the colour-affine map of a guide image that best predicts a target, and applies the boxes'
  mean map to the guide; the result has the guide's edges in the target's colours.

Colours are in ``[0, 255]`` floats; the fit works on ``c / 255``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
from scipy import ndimage

#: Histogram bins per channel for colour balancing.
BALANCE_BINS = 6
#: Share of the pairs below which a colour bin is not weighted up to a full colour's weight.
BALANCE_FLOOR = 0.005
#: Tukey biweight tuning constant, in robust standard deviations (1.4826 · MAD).
TUKEY_C = 4.685
#: Ridge weight on the quadratic terms (relative to the number of pairs, on colours in [0, 1]).
QUADRATIC_RIDGE = 0.001
#: IRLS iterations.
IRLS_STEPS = 6
#: Fewest pairs for the quadratic model; between ``MIN_AFFINE`` and this, an affine map; below, gain/offset only.
MIN_QUADRATIC = 60
MIN_AFFINE = 12
#: Levels of the histogram specification (:func:`fit_quantiles`).
QUANTILES = 64
#: How far (pixels, Chebyshev) a known pixel's pair may lie from it in :func:`correct_on_pairs`. On the registered
#: pastes of the development benchmark (session 12, box PSNR / GMSD against the histogram specification alone, the
#: correction kept everywhere), 1 px: 39 warp cases +0.64 dB (38.17 / 0.007 against 37.53 / 0.007), 139 cross-view
#: cases through their verified homographies +0.80 dB at the same GMSD (+0.0009), the built-in example +0.17; 2 px
#: gained less (+0.57, +0.52; at 1024 px: 20 cases +0.72 at 1 px, +0.36 at 2), and exact pairs (0 px) bent the map
#: across views (+0.50 dB but GMSD +0.020: contrast lost to mispaired edges). With the cross-validation that keeps
#: the correction (:func:`_correction_generalises`): warp and example unchanged, cross-view +0.58 dB with GMSD
#: -0.002 (0.169 → 0.167; better on 54 % of the cases, worse on 12 %).
PAIR_SHIFT = 1
#: Most pixel pairs :func:`correct_on_pairs` fits on (every n-th pixel of a larger ring): an affine map of three
#: channels is settled long before. The colour ring of a 512-px development case holds about 107 000 pixels; 10 000,
#: 20 000 and all of them give the same box PSNR on the 39 warp cases and the example (within 0.01 dB). At 10 000 the
#: correction adds 16 ms to a registered window's 70 ms of scoring, source and flow (39 warp cases, alternating in
#: one process).
MAX_PAIRS = 10000
#: The colour-space correction (:func:`fit_lut`): a grid of this many levels per channel over [0, 255] ...
LUT_BINS = 12
#: ... on which the pairs' residuals are smoothed by a Gaussian this many grid steps wide; a colour the pairs do not
#: show within reach of it gets no correction (the normalised convolution's floor, :data:`LUT_FLOOR`). Measured
#: after the affine correction, kept where cross-validation keeps it (session 14, box PSNR / GMSD over the mask's
#: box): 39 warp cases 38.41 → 38.58 dB (oracle 38.50), their 1024-px copies 39.03 → 39.22 (oracle 39.51), with
#: references of twice the image's size 43.22 → 43.66; 139 cross-view pastes through their verified homographies
#: (``--method verified-paste``) 22.03 / 0.168 → 22.13 / 0.167 (better by over 0.1 dB on 42, worse on 14, at worst
#: -0.76); the 10 registered cross-view windows of the five crossview sets 30.92 → 31.05. The plain local mean,
#: without :func:`fit_lut`'s robust refit, scored more on the warp cases (38.63) but turned the white of a real
#: 1024-px label grey (the built-in pair at full size: 24.07 → 23.68 dB; with the refit 24.13).
LUT_SIGMA = 1.0
#: Share of the grid's largest smoothed weight below which a bin's correction fades to none.
LUT_FLOOR = 0.05


def _features(c: np.ndarray, degree: int) -> np.ndarray:
    """``(N, 3)`` colours in [0, 1] → design matrix: 1, r, g, b (degree ≥ 1), r², g², b², rg, rb, gb (degree 2)."""
    cols = [np.ones(len(c)), c[:, 0], c[:, 1], c[:, 2]]
    if degree >= 2:
        r, g, b = c[:, 0], c[:, 1], c[:, 2]
        cols += [r * r, g * g, b * b, r * g, r * b, g * b]
    return np.stack(cols, axis=1)


def balance_weights(colours: np.ndarray, bins: int = BALANCE_BINS, floor: float = BALANCE_FLOOR) -> np.ndarray:
    """Inverse-frequency weights of ``(N, 3)`` colours in [0, 255] over a ``bins³`` histogram, normalised to
    mean 1: every occupied colour bin carries the same total weight, except bins holding less than ``floor`` of
    the pairs (a few stray pixels must not weigh as much as a whole colour)."""
    q = np.clip((np.asarray(colours, np.float64) * (bins / 256.0)).astype(int), 0, bins - 1)
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    counts = np.bincount(idx, minlength=bins**3)
    w = 1.0 / np.maximum(counts[idx], max(3.0, floor * len(idx)))
    return w * (len(w) / w.sum())


@dataclass(frozen=True)
class QuantileFit:
    """A per-channel monotone colour map by histogram specification (Gonzalez & Woods, §3.3.2): the source's
    weighted quantiles are mapped onto the target's, linearly between :data:`QUANTILES` levels. It needs no pixel
    correspondence, only the same content in both areas — so thin structures that a pixel-pair fit sees through
    a misregistration (a white border paired with the red fabric beside it) cannot bend it. ``residual`` as
    :class:`ColourFit`'s, ``num_pairs`` the pixels it was fitted on."""

    source_levels: np.ndarray  # (QUANTILES, 3)
    target_levels: np.ndarray  # (QUANTILES, 3)
    residual: float
    num_pairs: int

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        shape = pixels.shape
        c = np.asarray(pixels, np.float64).reshape(-1, 3)
        out = np.stack([np.interp(c[:, k], self.source_levels[:, k], self.target_levels[:, k]) for k in range(3)], 1)
        return np.clip(out, 0, 255).astype(np.float32).reshape(shape)


def _weighted_quantiles(values: np.ndarray, w: np.ndarray, q: np.ndarray) -> np.ndarray:
    order = np.argsort(values)
    cum = np.cumsum(w[order])
    cum = (cum - 0.5 * w[order]) / cum[-1]
    return np.interp(q, cum, values[order])


def fit_quantiles(source: np.ndarray, target: np.ndarray, source_weights: np.ndarray | None = None,
                  target_weights: np.ndarray | None = None) -> QuantileFit:
    """Histogram specification of ``source`` colours ``(N, 3)`` onto ``target`` colours ``(M, 3)`` (both in
    [0, 255]; the two sets need not correspond pixel for pixel), per channel, with optional weights."""
    src = np.asarray(source, np.float64).reshape(-1, 3)
    dst = np.asarray(target, np.float64).reshape(-1, 3)
    ws = np.ones(len(src)) if source_weights is None else np.asarray(source_weights, np.float64)
    wd = np.ones(len(dst)) if target_weights is None else np.asarray(target_weights, np.float64)
    q = np.linspace(0.0, 1.0, QUANTILES)
    a = np.stack([_weighted_quantiles(src[:, k], ws, q) for k in range(3)], 1)
    b = np.stack([_weighted_quantiles(dst[:, k], wd, q) for k in range(3)], 1)
    a = np.maximum.accumulate(a + np.arange(QUANTILES)[:, None] * 1e-6, axis=0)  # strictly increasing for interp
    fit = QuantileFit(a, b, float("nan"), len(src))
    return fit


@dataclass(frozen=True)
class ColourFit:
    """A fitted colour map (reference colours → image colours). ``coef``: ``(terms, 3)`` on colours in [0, 1];
    ``degree``: 0 (offset), 1 (affine) or 2 (quadratic with cross terms); ``residual``: robust RMS error of the fit
    on its pairs, in grey levels; ``num_pairs``: pairs it was fitted on."""

    coef: np.ndarray
    degree: int
    residual: float
    num_pairs: int

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Map colours ``(..., 3)`` in [0, 255] → float32 ``(..., 3)`` clipped to [0, 255]."""
        shape = pixels.shape
        c = np.asarray(pixels, np.float64).reshape(-1, 3) / 255.0
        if self.degree == 0:
            out = c + self.coef[0]
        else:
            out = _features(c, self.degree) @ self.coef
        return np.clip(out * 255.0, 0, 255).astype(np.float32).reshape(shape)

    @staticmethod
    def identity() -> "ColourFit":
        return ColourFit(np.zeros((1, 3)), 0, float("nan"), 0)


def _weighted_lstsq(X: np.ndarray, Y: np.ndarray, w: np.ndarray, ridge: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """argmin_A Σ w_n |X_n A − Y_n|² + Σ_k ridge_k |A_k − prior_k|² (normal equations)."""
    Xw = X * w[:, None]
    lhs = X.T @ Xw + np.diag(ridge)
    rhs = Xw.T @ Y + ridge[:, None] * prior
    return np.linalg.solve(lhs, rhs)


def fit_colour(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None, *, degree: int | None = None,
    balance: bool = True,
) -> ColourFit:
    """Robust colour map from ``source`` colours to ``target`` colours (both ``(N, 3)`` in [0, 255]).

    Args:
        source: the reference's colours at registered pixels; target: the image's colours there.
        weights: optional per-pair prior weights (e.g. nearer the hole weighs more).
        degree: 2 (quadratic with cross terms), 1 (affine) or 0 (per-channel offset); default: the highest the
            number of pairs supports (:data:`MIN_QUADRATIC`, :data:`MIN_AFFINE`).
        balance: weight pairs by the inverse frequency of their colour (:func:`balance_weights`).

    Fitted by IRLS with Tukey's biweight on the per-pair colour error; the quadratic terms are ridge-regularised
    towards 0 and the linear part towards the identity, so few or one-coloured pairs give a near-affine map.
    """
    src = np.asarray(source, np.float64).reshape(-1, 3) / 255.0
    dst = np.asarray(target, np.float64).reshape(-1, 3) / 255.0
    n = len(src)
    if n == 0:
        return ColourFit.identity()
    if degree is None:
        degree = 2 if n >= MIN_QUADRATIC else 1 if n >= MIN_AFFINE else 0
    prior_w = np.ones(n) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if balance:
        prior_w = prior_w * balance_weights(np.asarray(source, np.float64).reshape(-1, 3))
    prior_w = prior_w * (n / max(prior_w.sum(), 1e-12))
    if degree == 0:
        return _fit_offset(src, dst, prior_w)
    X = _features(src, degree)
    prior = np.zeros((X.shape[1], 3))
    prior[1:4] = np.eye(3)
    ridge = np.full(X.shape[1], 1e-3 * n)
    ridge[0] = 1e-6 * n
    if degree >= 2:
        ridge[4:] = QUADRATIC_RIDGE * n
    w = prior_w
    coef = _weighted_lstsq(X, dst, w, ridge, prior)
    for _ in range(IRLS_STEPS):
        w = tukey_weights(np.linalg.norm(X @ coef - dst, axis=1), prior_w, floor=1.0 / 255.0)
        if w.sum() < 1e-9:
            break
        coef = _weighted_lstsq(X, dst, w, ridge, prior)
    err = np.linalg.norm(X @ coef - dst, axis=1)
    return ColourFit(coef, degree, _robust_rms(err, w), n)


def tukey_weights(err: np.ndarray, prior_w: np.ndarray, *, floor: float) -> np.ndarray:
    """One reweighting of an IRLS fit (:func:`fit_colour`, :func:`fit_lut`, the dense flow's
    :func:`~refalign.transfer.flow.spread_flow`): ``prior_w`` times Tukey's biweight of
    each pair's error ``err`` at :data:`TUKEY_C` robust standard deviations (1.4826 · the median error, at least
    ``floor``: one grey level in a colour fit's units)."""
    scale = max(1.4826 * float(np.median(err)), floor)
    u = err / (TUKEY_C * scale)
    return prior_w * np.where(u < 1.0, (1.0 - u * u) ** 2, 0.0)


def _neighbourhoods(where: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns ``(N, K)`` of the ``K = (2·radius + 1)²`` pixels around each pixel of ``where`` (in
    ``np.nonzero`` order), clipped to the grid."""
    ys, xs = np.nonzero(where)
    d = np.arange(-radius, radius + 1)
    dy, dx = np.repeat(d, len(d)), np.tile(d, len(d))
    h, w = where.shape
    return np.clip(ys[:, None] + dy, 0, h - 1), np.clip(xs[:, None] + dx, 0, w - 1)


def _nearest(candidates: np.ndarray, ok: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``candidates`` ``(N, K, 3)`` (``ok`` ``(N, K)``): the index of the candidate colour nearest
    ``want`` ``(N, 3)``, and that distance — with the candidates a pixel's neighbourhood (:func:`_neighbourhoods`),
    its shift-tolerant pair, as the artifact detector's shift-tolerant difference pairs pixels."""
    d = np.sqrt(((candidates - want[:, None, :]) ** 2).sum(-1))
    d[~ok] = np.inf
    k = np.argmin(d, axis=1)
    rows = np.arange(len(k))
    return k, d[rows, k]


#: :func:`correct_on_pairs`' default correction: affine, across the channels.
AFFINE_CORRECTION = partial(fit_colour, degree=1)


def correct_on_pairs(mapped: np.ndarray, target: np.ndarray, where: np.ndarray, valid: np.ndarray,
                     weights: np.ndarray | None = None, *, folds: np.ndarray | None = None,
                     radius: int = PAIR_SHIFT, fit: Callable = AFFINE_CORRECTION,
                     untested: bool = True) -> ColourFit | ColourLut | None:
    """A correction of colours already ``mapped`` by a map fitted without pixel pairs (e.g. :func:`fit_quantiles`),
    fitted on shift-tolerant pairs over ``where`` (all ``(H, W, …)`` on one grid; ``weights`` per pixel of
    ``where``): each pixel ``p`` of ``where`` with the pixel within ``radius`` of it (Chebyshev, ``valid`` there)
    whose ``mapped`` colour is nearest ``target(p)`` (:func:`_nearest`); every n-th pixel of ``where`` when it holds
    more than :data:`MAX_PAIRS`. ``fit(src, dst, w)`` makes the correction: by default the affine cross-channel map
    (:func:`fit_colour`, degree 1, robust); :func:`fit_lut` for the colour-space correction.

    With ``folds`` (0 or 1 per pixel of ``where``, in ``np.nonzero`` order) the correction is kept only if it
    predicts pixels it was not fitted on (:func:`_correction_generalises`); where a fold is too small to tell, it is
    kept if ``untested`` (the affine map, which few pairs cannot bend far) and dropped if not (the colour-by-colour
    correction, which a few pairs would decide alone). ``None`` when it is not kept, or when ``where`` holds fewer
    than :data:`MIN_AFFINE` pixels."""
    n = int(where.sum())
    if n < MIN_AFFINE:
        return None
    keep = np.arange(0, n, -(-n // MAX_PAIRS))
    ys, xs = np.nonzero(where)
    sample = np.zeros_like(where)
    sample[ys[keep], xs[keep]] = True
    w = np.ones(len(keep)) if weights is None else np.asarray(weights, np.float64)[keep]
    y, x = _neighbourhoods(sample, radius)
    candidates, ok = np.asarray(mapped, np.float32)[y, x], valid[y, x]
    dst = np.asarray(target, np.float32)[sample]
    k, _ = _nearest(candidates, ok, dst)
    src = candidates[np.arange(len(k)), k]
    if folds is not None and not _correction_generalises(candidates, ok, src, dst, w, np.asarray(folds)[keep], fit,
                                                         untested):
        return None
    return fit(src, dst, w)


def _correction_generalises(candidates: np.ndarray, ok: np.ndarray, src: np.ndarray, dst: np.ndarray, w: np.ndarray,
                            folds: np.ndarray, fit: Callable, untested: bool = True) -> bool:
    """Two-fold cross-validation of :func:`correct_on_pairs`' correction: fitted (``fit``) on one fold's pairs
    ``(src, dst)``, is the other fold's weighted mean shift-tolerant colour error (its pixels' ``candidates`` through
    the correction, the nearest taken) lower than without it, summed over both folds? ``untested`` when a fold is
    too small to tell. On the development benchmark it kept the affine correction on all 39 warp cases and the built-in
    example, and refused it on a registered multiview text label whose strokes lie more than a pixel off (the
    corrected paste there: -2.5 dB, GMSD 0.121 → 0.135)."""
    first_error = np.linalg.norm(src - dst, axis=1)
    totals = np.zeros(2)
    for k in (0, 1):
        fit_on, test = folds == k, folds != k
        if fit_on.sum() < MIN_AFFINE or test.sum() < MIN_AFFINE:
            return untested
        correction = fit(src[fit_on], dst[fit_on], w[fit_on])
        _, errors = _nearest(correction.apply(candidates[test]), ok[test], dst[test])
        totals += [np.average(errors, weights=w[test]), np.average(first_error[test], weights=w[test])]
    return bool(totals[0] < totals[1])


@dataclass(frozen=True)
class ColourLut:
    """A correction over colour space (:func:`fit_lut`): ``c ↦ c + field(c)``, ``field`` an ``(B, B, B, 3)`` grid
    of offsets in grey levels over [0, 255]³, read by trilinear interpolation. ``num_pairs``: pairs it was fitted
    on."""

    field: np.ndarray
    num_pairs: int

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Correct colours ``(..., 3)`` in [0, 255] → float32 ``(..., 3)`` clipped to [0, 255]."""
        shape = pixels.shape
        c = np.asarray(pixels, np.float64).reshape(-1, 3)
        at = (np.clip(c, 0, 255) * ((self.field.shape[0] - 1) / 255.0)).T
        offset = np.stack([ndimage.map_coordinates(self.field[..., k], at, order=1, mode="nearest")
                           for k in range(3)], 1)
        return np.clip(c + offset, 0, 255).astype(np.float32).reshape(shape)


def fit_lut(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None, *, bins: int = LUT_BINS,
            sigma: float = LUT_SIGMA, floor: float = LUT_FLOOR, steps: int = IRLS_STEPS) -> ColourLut:
    """The residuals ``target - source`` of ``(N, 3)`` colour pairs in [0, 255] regressed over the source colour on
    a ``bins³`` grid by normalised convolution (Knutsson & Westin 1993), the colour-space twin of
    :func:`offset_field`: each pair's weighted residual and weight go to its nearest grid point, both are smoothed
    by a Gaussian of ``sigma`` grid steps, and the field is their ratio — the local weighted mean residual — with
    the weight floored at ``floor`` of its maximum, so a colour far from every pair gets no correction rather than an
    extrapolated one. Refitted ``steps`` times with Tukey's biweight on each pair's error (as :func:`fit_colour`),
    so the few pairs a misregistration matched across an edge (a white border with the red fabric beside it) do not
    move the field of a colour that the other pairs agree on."""
    src = np.asarray(source, np.float64).reshape(-1, 3)
    res = np.asarray(target, np.float64).reshape(-1, 3) - src
    prior_w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    cell = np.ravel_multi_index(np.clip(np.rint(src * ((bins - 1) / 255.0)), 0, bins - 1).astype(int).T,
                                (bins,) * 3)
    w = prior_w
    lut = _lut_field(cell, res, w, bins, sigma, floor, len(src))
    for _ in range(steps):
        w = tukey_weights(np.linalg.norm(lut.apply(src) - src - res, axis=1), prior_w, floor=1.0)
        if w.sum() < 1e-9:
            break
        lut = _lut_field(cell, res, w, bins, sigma, floor, len(src))
    return lut


def _lut_field(cell: np.ndarray, res: np.ndarray, w: np.ndarray, bins: int, sigma: float, floor: float,
               n: int) -> ColourLut:
    """One normalised convolution of :func:`fit_lut`: residuals ``res`` ``(N, 3)`` with weights ``w`` at grid cells
    ``cell`` (flat indices)."""
    grid = (bins,) * 3
    den = ndimage.gaussian_filter(np.bincount(cell, w, bins**3).reshape(grid), sigma, mode="constant")
    num = np.stack([ndimage.gaussian_filter(np.bincount(cell, w * res[:, k], bins**3).reshape(grid), sigma,
                                            mode="constant") for k in range(3)], -1)
    field = num / np.maximum(den, max(float(den.max()) * floor, 1e-12))[..., None]
    return ColourLut(field.astype(np.float32), n)


def _fit_offset(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> ColourFit:
    offset = np.array([_weighted_median(dst[:, k] - src[:, k], w) for k in range(3)])
    err = np.linalg.norm(src + offset - dst, axis=1)
    return ColourFit(offset[None], 0, _robust_rms(err, w), len(src))


def _weighted_median(values: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(w[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2.0)])


def _robust_rms(err: np.ndarray, w: np.ndarray) -> float:
    """RMS of the per-pair error (in grey levels) over the pairs the robust fit kept."""
    keep = w > 0
    if not keep.any():
        return float("inf")
    return float(np.sqrt(np.average(err[keep] ** 2, weights=w[keep])) * 255.0)


def offset_field(residual: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
    """A smooth additive colour field from residuals known on part of a grid (normalised convolution,
    Knutsson & Westin 1993): ``G_σ * (k · r) / G_σ * k``.

    Args:
        residual: ``(H, W, 3)`` float — target minus fitted colour where ``known``.
        known: ``(H, W)`` bool or float weights.
        sigma: Gaussian width in pixels (the scale over which lighting may vary).

    Returns ``(H, W, 3)`` float32; where no known pixel is within reach, the field falls to 0 smoothly (the
    denominator is floored at a share of its maximum), so it never extrapolates a lone outlier far.
    """
    k = np.asarray(known, np.float32)
    r = np.asarray(residual, np.float32) * k[..., None]
    ksize = int(2 * np.ceil(3 * sigma) + 1)
    num = cv2.GaussianBlur(r, (ksize, ksize), sigma, borderType=cv2.BORDER_CONSTANT)
    den = cv2.GaussianBlur(k, (ksize, ksize), sigma, borderType=cv2.BORDER_CONSTANT)
    floor = max(float(den.max()) * 0.05, 1e-6)
    return (num / np.maximum(den, floor)[..., None]).astype(np.float32)


def _box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """The mean of ``x`` over the ``(2r + 1)²`` box around each pixel (borders reflected)."""
    return cv2.boxFilter(x, -1, (2 * radius + 1, 2 * radius + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, target: np.ndarray, radius: int, eps: float, *, step: int = 1) -> np.ndarray:
    """``target`` filtered with the colour image ``guide`` as its guide (He, Sun & Tang, "Guided Image Filtering",
    TPAMI 2013, eqs. 19–21 for a colour guide).

    In each ``(2r + 1)²`` box ``k`` the target is fitted by a colour-affine map of the guide, ``q = a_kᵀ I + b_k``,
    by ridge-regularised least squares: ``a_k = (Σ_k + ε U)⁻¹ cov_k(I, p)``, ``b_k = p̄_k − a_kᵀ Ī_k``, with ``Σ_k``
    the guide's 3×3 colour covariance in the box. Each pixel's output is the mean of the maps of the boxes that hold
    it, applied to its own guide colour: the guide's edges, in the target's colours. With ``step`` > 1 the maps are
    fitted on the images subsampled by ``step`` (the radius with them) and their means upsampled bilinearly before
    they are applied at full resolution (He & Sun, "Fast Guided Filter", 2015): the maps vary slowly, so this costs
    little accuracy for a ``step²`` saving.

    Args:
        guide: ``(H, W, 3)`` colours (any scale; ``eps`` is in its units squared).
        target: ``(H, W, C)`` values to carry over.
        radius: the boxes' radius in pixels (at full resolution).
        eps: the ridge ``ε``: the guide variance below which a box's map flattens towards the target's mean.
        step: subsampling factor for the maps' fit.

    Returns ``(H, W, C)`` float32.
    """
    guide = np.asarray(guide, np.float32)
    target = np.asarray(target, np.float32)
    if guide.ndim != 3 or guide.shape[2] != 3 or target.shape[:2] != guide.shape[:2]:
        raise ValueError(f"guided_filter: guide {guide.shape} must be (H, W, 3) and target {target.shape} (H, W, C) "
                         "over the same pixels")
    h, w = guide.shape[:2]
    small = (max(1, round(w / step)), max(1, round(h / step)))
    g = cv2.resize(guide, small, interpolation=cv2.INTER_AREA) if step > 1 else guide
    p = cv2.resize(target, small, interpolation=cv2.INTER_AREA) if step > 1 else target
    p = p.reshape(*p.shape[:2], -1)
    r = max(1, round(radius / step))
    mean_g = _box_mean(g, r)
    cov = np.empty((*g.shape[:2], 3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            cov[..., i, j] = cov[..., j, i] = _box_mean(g[..., i] * g[..., j], r) - mean_g[..., i] * mean_g[..., j]
    inverse = np.linalg.inv(cov + eps * np.eye(3, dtype=np.float32))
    out = np.empty((h, w, p.shape[2]), np.float32)
    for c in range(p.shape[2]):
        mean_p = _box_mean(np.ascontiguousarray(p[..., c]), r)
        cross = _box_mean(g * p[..., c:c + 1], r) - mean_g * mean_p[..., None]
        a = np.einsum("...ij,...j->...i", inverse, cross)
        b = mean_p - (a * mean_g).sum(-1)
        a, b = _box_mean(a, r), _box_mean(b, r)
        if step > 1:
            a = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
            b = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
        out[..., c] = (a * guide).sum(-1) + b
    return out.reshape(target.shape) if target.ndim == 2 else out
