"""Zoom-in geometry: region finding, window planning, feathered paste, reference crop (paper §3.4–3.5)."""

from __future__ import annotations

import numpy as np
import pytest

from refalign.mask_ops import dilate
from refalign.pipelines import zoom
from refalign.windows import ModelFrame, Window, connected_regions


def _mask(h, w, *boxes):
    m = np.zeros((h, w), bool)
    for t, l, b, r in boxes:
        m[t:b, l:r] = True
    return m


def test_find_regions_matches_connected_regions():
    rng = np.random.default_rng(0)
    mask = rng.random((60, 70)) > 0.93
    regions = zoom.find_regions(mask)
    reference = connected_regions(mask)
    assert len(regions) == len(reference)
    assert [r.area for r in regions] == [int(r.sum()) for r in reference]
    rebuilt = np.zeros_like(mask)
    for r in regions:
        t, l, b, rr = r.bbox
        assert not (rebuilt[t:b, l:rr] & r.mask).any()
        rebuilt[t:b, l:rr] |= r.mask
    assert np.array_equal(rebuilt, mask)


def test_window_size_context_and_minimum():
    mask = _mask(400, 400, (100, 100, 140, 120))
    (plan,) = zoom.plan_windows(mask, context=2.0, min_size=64)
    assert plan.window.size == 80
    t, l, b, r = plan.bbox
    assert plan.window.top <= t and plan.window.left <= l and plan.window.bottom >= b and plan.window.right >= r
    (small,) = zoom.plan_windows(_mask(400, 400, (10, 10, 14, 14)), context=2.0, min_size=64)
    assert small.window.size == 64


def test_border_region_window_stays_inside_image():
    mask = _mask(200, 300, (190, 290, 200, 300))
    (plan,) = zoom.plan_windows(mask, context=2.0, min_size=64)
    w = plan.window
    assert w.top >= 0 and w.left >= 0 and w.bottom <= 200 and w.right <= 300
    assert plan.region_mask().sum() == mask.sum()


def test_close_regions_merge_far_regions_do_not():
    close = _mask(300, 300, (100, 100, 120, 120), (100, 125, 120, 145))
    assert len(zoom.plan_windows(close, context=2.0, min_size=32)) == 1
    far = _mask(300, 300, (10, 10, 30, 30), (250, 250, 270, 270))
    plans = zoom.plan_windows(far, context=2.0, min_size=32)
    assert len(plans) == 2
    assert sum(p.region_mask().sum() for p in plans) == far.sum()
    # every region belongs to exactly one window
    union = np.zeros_like(far)
    for p in plans:
        union |= p.full_mask(far.shape)
    assert np.array_equal(union, far)


def test_paste_weights_stay_inside_dilated_mask():
    own = _mask(50, 50, (20, 20, 30, 30))
    w = zoom.paste_weights(own, radius=3)
    assert (w[own] == 1).all()
    dil = dilate(own, 3)
    assert (w[~dil] == 0).all() and (w[dil] > 0).all()
    assert ((w > 0) & (w < 1)).any()


def test_paste_leaves_outside_bit_identical_and_handles_padding():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    before = image.copy()
    win = Window(-10, 30, 32)  # sticks out at the top and the right
    own = np.zeros((32, 32), bool)
    own[10:16, 5:12] = True
    valid = zoom.valid_region(image.shape[:2], win)
    weights = zoom.paste_weights(own, 2, valid)
    patch = np.zeros((32, 32, 3), np.uint8)
    zoom.paste(image, patch, weights, win)
    changed = (image != before).any(-1)
    full_weights = np.zeros((40, 50), np.float32)
    full_weights[0:22, 30:50] = weights[10:32, 0:20]
    assert changed.any()
    assert not changed[full_weights == 0].any()
    assert (image[full_weights == 1] == 0).all()


def test_window_inputs_mask_other_regions_inside_window():
    mask = _mask(100, 100, (40, 40, 50, 50), (40, 55, 44, 58))
    plans = zoom.plan_windows(mask, context=3.0, min_size=32, merge_growth=1.0)
    big = plans[0]
    image = np.zeros((100, 100, 3), np.uint8)
    img_win, inpaint, weights = zoom.window_inputs(image, mask, big, resolution=32, dilation=1.0)
    assert img_win.shape == (32, 32, 3) and inpaint.shape == (32, 32) and weights.shape == (big.window.size,) * 2
    # the inpainting mask covers every artifact pixel in the window, not only this window's region
    from refalign.windows import crop, resize_mask

    all_in_window = resize_mask(crop(mask, big.window), 32)
    assert (inpaint | ~all_in_window).all()


def test_masked_reference_and_crop():
    ref = np.full((80, 120, 3), 200, np.uint8)
    ref[:, :60] = 10
    region = _mask(80, 120, (20, 70, 40, 100))
    masked = zoom.masked_reference(ref, region, fill=128)
    assert (masked[region] == 200).all() and (masked[~region] == 128).all()
    out = zoom.crop_reference(ref, region, 32, fill=128)
    assert out.shape == (32, 32, 3)
    assert (out[16, 16] == 200).all()
    whole = zoom.crop_reference(ref, None, 32, fill=128)
    assert whole.shape == (32, 32, 3)
    assert (whole[0, 16] == 128).all()  # padding above the wide reference
    assert (whole[16, 2] == 10).all() and (whole[16, 30] == 200).all()


@pytest.mark.parametrize("size,res,dil,expected", [(64, 64, 3, 3), (256, 64, 3, 12), (16, 64, 3, 1)])
def test_dilation_radius_scales_with_zoom(size, res, dil, expected):
    assert ModelFrame(Window(0, 0, size), res).radius(dil) == expected
