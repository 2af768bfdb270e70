"""Colour transfer (refalign.transfer.colour): the fit recovers known maps, resists outliers, balances colours."""

import numpy as np

from refalign.transfer.colour import ColourFit, balance_weights, fit_colour, offset_field


def _pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 3))


def test_recovers_an_affine_colour_map():
    src = _pairs(500)
    M = np.array([[0.9, 0.05, 0.0], [0.0, 1.1, 0.05], [0.02, 0.0, 0.8]])
    dst = np.clip(src @ M.T + [10, -5, 20], 0, 255)
    fit = fit_colour(src, dst)
    assert fit.degree == 2
    err = np.abs(fit.apply(src) - dst)
    assert err.mean() < 1.0, err.mean()
    assert fit.residual < 2.0


def test_recovers_a_gamma_curve_better_than_affine():
    src = _pairs(800, 1)
    dst = 255.0 * (src / 255.0) ** 1.4
    quad = np.abs(fit_colour(src, dst).apply(src) - dst).mean()
    aff = np.abs(fit_colour(src, dst, degree=1).apply(src) - dst).mean()
    assert quad < 0.6 * aff, (quad, aff)


def test_outliers_do_not_move_the_fit():
    src = _pairs(600, 2)
    dst = src * 0.8 + 15
    dst_bad = dst.copy()
    dst_bad[:120] = 255 - dst_bad[:120]  # 20 % misregistered pairs
    fit = fit_colour(src, dst_bad)
    assert np.abs(fit.apply(src[120:]) - dst[120:]).mean() < 1.5


def test_balancing_keeps_a_rare_colour_right():
    rng = np.random.default_rng(3)
    white = rng.normal(235, 3, (950, 3))
    navy = rng.normal([30, 40, 90], 3, (50, 3))
    src = np.clip(np.concatenate([white, navy]), 0, 255)
    # white stays white; navy gets much darker (a tone curve the ring's white cannot show)
    dst = np.where(src > 150, src * 0.98, src * 0.6)
    assert np.abs(fit_colour(src, dst).apply(navy) - navy * 0.6).mean() < 3.0
    # every occupied colour bin carries the same total weight: 5 % navy weighs as much as 95 % white
    w = balance_weights(src)
    assert abs(w.mean() - 1) < 1e-9
    bins = np.clip((src * 6 / 256).astype(int), 0, 5) @ [36, 6, 1]
    totals = [w[bins == b].sum() for b in np.unique(bins) if (bins == b).sum() >= 0.005 * len(src)]
    assert np.allclose(totals, totals[0]) and len(totals) >= 2
    # a lone stray colour does not weigh as much as a whole colour
    assert w.max() < 0.5 * max(totals)


def test_few_pairs_fall_back_to_simpler_models():
    src = _pairs(30, 4)
    assert fit_colour(src, src + 5).degree == 1
    fit = fit_colour(src[:5], src[:5] + 7)
    assert fit.degree == 0
    assert np.allclose(fit.apply(np.array([[100.0, 100.0, 100.0]])), 107, atol=1e-3)
    assert ColourFit.identity().apply(np.array([[1.0, 2.0, 3.0]])).tolist() == [[1.0, 2.0, 3.0]]


def test_offset_field_is_smooth_and_reaches_the_hole():
    h = w = 64
    known = np.ones((h, w), bool)
    known[24:40, 24:40] = False
    residual = np.zeros((h, w, 3), np.float32)
    residual[..., 0] = np.linspace(0, 20, w)[None, :]
    field = offset_field(residual, known, sigma=6.0)
    assert np.isfinite(field).all()
    # inside the hole the field continues the gradient of the known residual
    assert 5 < field[32, 32, 0] < 15
    assert abs(field[32, 32, 1]) < 1e-3
