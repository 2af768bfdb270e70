"""Colour transfer (refalign.transfer.colour): the fit recovers known maps, resists outliers, balances colours."""

import cv2
import numpy as np

from refalign.transfer.colour import (
    ColourFit, ColourLut, _nearest, _neighbourhoods, balance_weights, correct_on_pairs, fit_colour, fit_lut,
    fit_quantiles, guided_filter, offset_field,
)
import pytest


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


def test_quantile_fit_maps_distributions_without_pixel_pairs():
    rng = np.random.default_rng(5)
    src = rng.uniform(0, 255, (2000, 3))
    dst = 255.0 * (src / 255.0) ** 1.3 * [0.9, 1.0, 1.05]
    shuffled = dst[rng.permutation(len(dst))]  # no correspondence at all
    fit = fit_quantiles(src, np.clip(shuffled, 0, 255))
    assert np.abs(fit.apply(src) - np.clip(dst, 0, 255)).mean() < 3.0
    # monotone per channel: order is kept
    grey = np.linspace(0, 255, 50)[:, None].repeat(3, 1)
    assert (np.diff(fit.apply(grey), axis=0) >= -1e-4).all()


def _desaturate(c, s=0.55):
    grey = c.mean(-1, keepdims=True)
    return grey + s * (c - grey)


def _misregistered(src):
    """The image's view of ``src`` desaturated (a change that mixes the channels) and registered a pixel off."""
    truth = _desaturate(src)
    where = np.zeros(src.shape[:2], bool)
    where[2:-2, 2:-2] = True
    return truth, np.roll(truth, 1, axis=1), where, np.ones(src.shape[:2], bool)


def test_shift_tolerant_pairs_find_the_pixel_a_misregistration_moved():
    src = np.zeros((24, 24, 3), np.float32)
    src[:] = (150, 30, 40)
    src[:, 11] = (245, 245, 240)  # a thread one pixel wide
    target = np.roll(src, 1, axis=1)  # seen a pixel to the right
    where = np.zeros((24, 24), bool)
    where[2:-2, 2:-2] = True
    ys, xs = np.nonzero(where)
    y, x = _neighbourhoods(where, 1)
    assert y.shape == (where.sum(), 9) and (np.abs(y - ys[:, None]) <= 1).all() and (np.abs(x - xs[:, None]) <= 1).all()
    k, distance = _nearest(src[y, x], np.ones(y.shape, bool), target[where])
    rows = np.arange(len(k))
    assert (src[y[rows, k], x[rows, k]] == target[where]).all() and (distance == 0).all()  # the thread too
    assert (src[where] != target[where]).any()  # the exact pairs put the thread with the fabric
    thread = target[where][:, 0] > 200
    assert (x[rows, k][thread] == xs[thread] - 1).all()  # the thread's pair lies a column to its left
    ok = np.ones(y.shape, bool)
    ok[:, [0, 3, 6]] = False  # where the column to the left is outside the warp, no pair has the thread's colour
    k, distance = _nearest(src[y, x], ok, target[where])
    assert not np.isin(k, [0, 3, 6]).any() and (distance[thread] > 100).all()


def _error(colours, truth, where):
    return float(np.abs(colours[where] - truth[where]).mean())


def test_correct_on_pairs_fits_what_a_per_channel_map_cannot_through_a_misregistration():
    """A smooth colourful texture desaturated: the per-channel histogram specification cannot mix channels, the
    affine correction on shift-tolerant pairs can, although every pair is a pixel off."""
    rng = np.random.default_rng(0)
    src = cv2.resize(rng.uniform(0, 255, (8, 8, 3)).astype(np.float32), (64, 64), interpolation=cv2.INTER_CUBIC)
    src = np.clip(src, 0, 255)
    truth, target, where, valid = _misregistered(src)
    mapped = fit_quantiles(src[where], target[where]).apply(src)
    correction = correct_on_pairs(mapped, target, where, valid)
    assert correction is not None and correction.degree == 1 and correction.num_pairs == where.sum()
    assert _error(correction.apply(mapped), truth, where) < 0.6 * _error(mapped, truth, where)


def test_correct_on_pairs_is_not_bent_by_misregistered_threads():
    """Thin white and blue threads on red fabric, a pixel off: exact pairs put the white with the red and bend a
    pair fit far off; the shift-tolerant pairs keep the histogram specification's accuracy."""
    rng = np.random.default_rng(1)
    src = np.zeros((64, 64, 3), np.float32)
    src[:] = (150, 30, 40)
    src[:, ::4] = (245, 245, 240)
    src[::8, :] = (40, 60, 150)
    src = np.clip(src + rng.normal(0, 2, src.shape), 0, 255)
    truth, target, where, valid = _misregistered(src)
    mapped = fit_quantiles(src[where], target[where]).apply(src)
    corrected = correct_on_pairs(mapped, target, where, valid).apply(mapped)
    assert _error(corrected, truth, where) < 1.0
    assert _error(corrected, truth, where) <= _error(mapped, truth, where) + 0.05
    assert _error(fit_colour(src[where], target[where], degree=1).apply(src), truth, where) > 20.0  # exact pairs


def test_correct_on_pairs_samples_large_rings_and_needs_enough_pixels(monkeypatch):
    import refalign.transfer.colour as colour

    rng = np.random.default_rng(3)
    src = cv2.resize(rng.uniform(0, 255, (8, 8, 3)).astype(np.float32), (64, 64), interpolation=cv2.INTER_CUBIC)
    _, target, where, valid = _misregistered(np.clip(src, 0, 255))
    everything = correct_on_pairs(src, target, where, valid)
    monkeypatch.setattr(colour, "MAX_PAIRS", 500)
    sampled = correct_on_pairs(src, target, where, valid)
    assert sampled.num_pairs <= 500 < everything.num_pairs
    assert np.abs(sampled.apply(src) - everything.apply(src)).mean() < 1.0  # the same map from a sample
    few = np.zeros((64, 64), bool)
    few[0, :5] = True
    assert correct_on_pairs(src, target, few, valid) is None


def test_correct_on_pairs_is_dropped_when_it_does_not_predict_the_other_fold():
    """Two halves of the ring whose colours relate differently (one brightened, one darkened): a correction fitted on
    either half predicts the other worse than no correction, so cross-validation drops it."""
    rng = np.random.default_rng(2)
    src = cv2.resize(rng.uniform(40, 200, (6, 6, 3)).astype(np.float32), (40, 40), interpolation=cv2.INTER_CUBIC)
    target = src.copy()
    target[:, :20] *= 1.25
    target[:, 20:] *= 0.75
    where = np.ones((40, 40), bool)
    valid = np.ones((40, 40), bool)
    folds = (np.nonzero(where)[1] >= 20).astype(int)
    mapped = fit_quantiles(src[where], target[where]).apply(src)
    assert correct_on_pairs(mapped, target, where, valid) is not None
    assert correct_on_pairs(mapped, target, where, valid, folds=folds) is None
    # where one relation holds all around, the correction generalises and is kept
    _, target, _, _ = _misregistered(src)
    mapped = fit_quantiles(src[where], target[where]).apply(src)
    assert correct_on_pairs(mapped, target, where, valid, folds=folds) is not None


def _one_colour_wrong(src):
    """The image's view of ``src``: the same colours, except the dark neutral ones, which turn red — what per-channel
    maps bent by another colour do to a shadow, and what no per-channel or affine map of ``src`` can express."""
    grey = src.mean(-1)
    dark = np.clip((90.0 - grey) / 30.0, 0, 1)[..., None] * (np.abs(src - grey[..., None]).max(-1) < 25)[..., None]
    return np.clip(src + dark * np.float32([45, -10, -10]), 0, 255)


def _patchwork(seed, cells=8, side=64):
    """Flat patches (``cells × cells`` over ``side`` pixels) of a few colours, a dark neutral one among them."""
    rng = np.random.default_rng(seed)
    palette = np.float32([[40, 40, 42], [200, 60, 50], [60, 150, 200], [230, 230, 225], [120, 180, 90]])
    return cv2.resize(palette[rng.integers(0, len(palette), (cells, cells))], (side, side),
                      interpolation=cv2.INTER_NEAREST)


def test_fit_lut_corrects_one_colour_and_leaves_the_others():
    src = _patchwork(0)
    target = _one_colour_wrong(src)
    where = np.ones(src.shape[:2], bool)
    lut = fit_lut(src[where], target[where])
    assert isinstance(lut, ColourLut) and lut.num_pairs == where.sum()
    dark = src[..., 0] < 60
    assert _error(src, target, dark) > 20 and _error(lut.apply(src), target, dark) < 5
    assert _error(lut.apply(src), target, ~dark) < 1.5  # the colours that were right stay right
    assert lut.apply(src[:2, :2]).shape == (2, 2, 3) and lut.apply(src).dtype == np.float32


def test_fit_lut_leaves_colours_it_never_saw_alone():
    """A correction learned on dark pixels only does not reach a bright colour far from them (no extrapolation)."""
    rng = np.random.default_rng(0)
    src = rng.uniform(20, 60, (500, 3))
    lut = fit_lut(src, src + 30.0)
    assert np.abs(lut.apply(src) - (src + 30)).mean() < 3.0
    far = np.float32([[240, 240, 240], [250, 30, 200]])
    assert np.abs(lut.apply(far) - far).max() < 0.5


def test_correct_on_pairs_with_fit_lut_through_a_misregistration_and_its_cross_validation():
    """The dark colour gone red, seen a pixel off: the colour-space correction on shift-tolerant pairs fixes it and
    is kept by cross-validation; where the two halves of the ring disagree about that colour, it is dropped."""
    src = _patchwork(1)
    truth = _one_colour_wrong(src)
    target = np.roll(truth, 1, axis=1)
    where = np.zeros(src.shape[:2], bool)
    where[2:-2, 2:-2] = True
    valid = np.ones(src.shape[:2], bool)
    folds = (np.nonzero(where)[1] >= 32).astype(int)
    lut = correct_on_pairs(src, target, where, valid, folds=folds, fit=fit_lut)
    assert isinstance(lut, ColourLut)
    dark = where & (src[..., 0] < 60)
    assert _error(lut.apply(src), truth, dark) < 0.3 * _error(src, truth, dark)
    disagree = truth.copy()
    disagree[:, 32:] = src[:, 32:]  # the right half keeps the dark colour as it was
    assert correct_on_pairs(src, disagree, where, valid, folds=folds, fit=fit_lut) is None


def test_fit_lut_is_not_moved_by_a_minority_of_pairs_matched_across_an_edge():
    """A white border seen a little off: most of its pairs are right, a fifth pair it with the red fabric beside it.
    The robust refit leaves white alone; the plain local mean would turn it pink."""
    rng = np.random.default_rng(4)
    white = np.clip(rng.normal(235, 3, (400, 3)), 0, 255)
    red = np.clip(rng.normal((150, 30, 40), 3, (400, 3)), 0, 255)
    target = np.concatenate([white, red])
    source = target.copy()
    target[:80] = red[:80]  # a fifth of the white pairs land on the fabric
    robust, plain = fit_lut(source, target), fit_lut(source, target, steps=0)
    probe = np.float32([[235, 235, 235]])
    assert np.abs(robust.apply(probe) - probe).max() < 3.0
    assert np.abs(plain.apply(probe) - probe).max() > 15.0


def test_a_correction_the_folds_are_too_small_to_test_is_kept_only_if_untested_is_allowed():
    """20 ring pixels, 8 in one fold: too few to test. The affine map, which few pairs cannot bend far, is kept as
    before; the colour-by-colour correction, which they would decide alone, is dropped when asked (the paste does)."""
    src = _patchwork(2)
    target = _one_colour_wrong(src)
    where = np.zeros(src.shape[:2], bool)
    where[10, 10:30] = True
    valid = np.ones(src.shape[:2], bool)
    folds = (np.arange(20) >= 12).astype(int)
    assert correct_on_pairs(src, target, where, valid, folds=folds) is not None
    assert correct_on_pairs(src, target, where, valid, folds=folds, fit=fit_lut) is not None
    assert correct_on_pairs(src, target, where, valid, folds=folds, fit=fit_lut, untested=False) is None


def _textured(seed=0, shape=(96, 128)):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.uniform(0, 255, (*shape, 3)).astype(np.float32), (0, 0), 2) * 2 - 127


@pytest.mark.parametrize("step", [1, 4])
def test_guided_filter_recovers_a_colour_affine_map_of_its_guide(step):
    guide = np.clip(_textured(), 0, 255)
    M = np.array([[0.2, 0.7, 0.1], [0.5, 0.1, 0.3], [0.0, 0.2, 0.9]], np.float32)
    target = guide @ M.T + [30, -10, 5]
    out = guided_filter(guide, target, radius=8, eps=1e-2, step=step)
    assert out.shape == target.shape and out.dtype == np.float32
    assert np.abs(out - target).mean() < (0.05 if step == 1 else 0.5)


def test_guided_filter_flattens_to_the_targets_local_mean_where_the_guide_is_flat():
    # no guide variance: the ridge sends every box's map to a constant, the target's mean over the box
    guide = np.full((60, 60, 3), 128, np.float32)
    target = _textured(1, (60, 60))
    out = guided_filter(guide, target, radius=5, eps=25.0)
    box = cv2.boxFilter(cv2.boxFilter(target, -1, (11, 11), borderType=cv2.BORDER_REFLECT), -1, (11, 11),
                        borderType=cv2.BORDER_REFLECT)
    assert np.allclose(out, box, atol=1e-2)
    grey = guided_filter(guide, target[..., 0], radius=5, eps=25.0)  # one channel alone
    assert grey.shape == (60, 60) and np.allclose(grey, out[..., 0], atol=1e-4)


def test_guided_filter_refuses_a_grey_guide_or_mismatched_target():
    with pytest.raises(ValueError, match="guide"):
        guided_filter(np.zeros((8, 8)), np.zeros((8, 8, 3)), 2, 1.0)
    with pytest.raises(ValueError, match="same pixels"):
        guided_filter(np.zeros((8, 8, 3)), np.zeros((9, 8, 3)), 2, 1.0)
