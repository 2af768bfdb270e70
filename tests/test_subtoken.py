"""Sub-token alignment: the token-level M* refined by feature matching, with a reported fallback."""

from __future__ import annotations

import numpy as np

from conftest import textured_warp_pair
from refalign.pipelines.subtoken import refine_correspondence
from refalign.registration import transfer_mask


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def _case():
    img, ref, P = textured_warp_pair(seed=2)
    mask = np.zeros(img.shape[:2], bool)
    yy, xx = np.mgrid[0:320, 0:320]
    mask[(yy - 150) ** 2 + ((xx - 170) / 1.5) ** 2 < 15**2] = True
    art = img.copy()
    art[mask] = 128  # the artifact's own pixels carry no information
    truth = transfer_mask(mask, P, ref.shape[:2])
    # a token-level M*: the truth snapped to a 16x16 grid of 20 px tokens, one token too wide
    coarse = np.zeros_like(truth)
    ys, xs = np.nonzero(truth)
    coarse[(ys.min() // 20 - 1) * 20 : (ys.max() // 20 + 2) * 20, (xs.min() // 20 - 1) * 20 : (xs.max() // 20 + 2) * 20] = True
    return art, mask, ref, truth, coarse


def test_warp_path_is_pixel_accurate():
    art, mask, ref, truth, coarse = _case()
    res = refine_correspondence(art, mask, ref, coarse)
    assert res.path == "warp", res.reason
    assert _iou(res.mask, truth) > 0.85
    assert _iou(res.mask, truth) > _iou(coarse, truth) + 0.3


def test_falls_back_when_matching_is_unreliable():
    art, mask, ref, truth, coarse = _case()
    flat = np.full_like(ref, 120)
    res = refine_correspondence(art, mask, flat, coarse)
    assert res.path == "cross-attention" and "unreliable" in res.reason
    assert res.mask is coarse


def test_a_registration_that_disagrees_with_m_star_wins_and_says_so():
    """The registration is scored on the known pixels around the hole; the 16×16 map is the weaker evidence (on
    the warp cases every disagreement had M* wrong). The disagreement is reported."""
    art, mask, ref, truth, coarse = _case()
    far = np.zeros_like(coarse)
    far[:40, :40] = True
    res = refine_correspondence(art, mask, ref, far)
    assert res.path == "warp" and _iou(res.mask, truth) > 0.85
    assert "M* pointed elsewhere" in res.reason
    near = refine_correspondence(art, mask, ref, coarse)
    assert "agrees with M*" in near.reason


def test_align_reports_the_path(dummy_pipeline):
    art, mask, ref, truth, coarse = _case()
    out = dummy_pipeline.align(art, mask, ref, subtoken=True)
    assert out.path in ("warp", "cross-attention") and out.path_reason
    plain = dummy_pipeline.align(art, mask, ref)
    assert plain.path == "cross-attention" and plain.path_reason == ""
    if out.path == "cross-attention":
        assert np.array_equal(out.mask, plain.mask)
