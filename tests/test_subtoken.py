"""Sub-token alignment: the token-level M* refined by feature matching, with a reported fallback."""

from __future__ import annotations

import numpy as np

from conftest import textured_warp_pair
from refalign.pipelines.correspondence import find_correspondence
from refalign.pipelines.subtoken import LOCATED_CORRELATION, located_region, match_artifact, refine_correspondence
from refalign.registration import transfer_mask
from refalign.transfer.colour import ColourFit
from refalign.transfer.register import Candidate, LocalRegistration, WarpScore


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
    assert out.path in ("warp", "located", "cross-attention") and out.path_reason
    plain = dummy_pipeline.align(art, mask, ref)
    assert plain.path == "cross-attention" and plain.path_reason == ""
    if out.path == "cross-attention":
        assert np.array_equal(out.mask, plain.mask)


def _noisy(ref, sigma=60.0):
    """The reference under heavy noise: its model still lines the texture up, but its colours leave more error on
    the ring than an accepted registration may."""
    rng = np.random.default_rng(0)
    return np.clip(ref.astype(np.float64) + rng.normal(0, sigma, ref.shape), 0, 255).astype(np.uint8)


def test_a_rejected_registration_still_locates_the_artifact_and_pastes_nothing():
    art, mask, ref, truth, coarse = _case()
    noisy = _noisy(ref)
    res = refine_correspondence(art, mask, noisy, coarse)
    assert res.path == "located" and "not registered" in res.reason
    assert _iou(res.mask, truth) > 0.85 and _iou(res.mask, truth) > _iou(coarse, truth) + 0.3
    corr = find_correspondence(art, mask, noisy, coarse, path="cross-attention", subtoken=True)
    assert corr.path == "located" and corr.matrix is None and corr.valid_region is None
    assert corr.mask is corr.region and corr.m_star is coarse  # the alignment stage reports the located region
    grown = corr.synthesis_region  # a synthesis draws on the located region's surroundings too
    assert (grown >= corr.region).all() and grown.sum() > 2 * corr.region.sum()
    plain = find_correspondence(art, mask, ref, coarse, path="cross-attention", subtoken=True)
    assert plain.path == "warp" and plain.synthesis_region is plain.region


def _registration(correlation: float, matrix: np.ndarray, ok: bool = False) -> LocalRegistration:
    score = WarpScore(correlation, 50.0, 1.0, 30.0, ColourFit.identity())
    return LocalRegistration(ok, "test", Candidate("homography", matrix, 20, score))


def test_located_region_needs_part_of_the_ring_explained_and_a_plausible_size():
    art, mask, ref, truth, coarse = _case()
    match = match_artifact(art, mask, _noisy(ref), coarse)
    matrix = match.registration.best.matrix
    hw = ref.shape[:2]
    assert _iou(located_region(_registration(LOCATED_CORRELATION, matrix), mask, hw), truth) > 0.85
    assert located_region(_registration(LOCATED_CORRELATION - 0.01, matrix), mask, hw) is None
    assert located_region(_registration(0.9, matrix, ok=True), mask, hw) is None  # accepted: the warp path's
    off = np.diag([20.0, 20.0, 1.0]) @ matrix  # carries the artifact off the photo
    assert located_region(_registration(0.9, off), mask, hw) is None
    tiny = np.diag([0.2, 0.2, 1.0]) @ matrix  # a 25th of its area: a degenerate model, not a location
    assert located_region(_registration(0.9, tiny), mask, hw) is None
    outside = np.zeros(hw, bool)
    assert located_region(_registration(0.9, matrix), mask, hw, object_mask=outside) is None
