"""The window's one correspondence (pipelines/correspondence.py), the model frame and the paste strategies."""

from __future__ import annotations

import numpy as np
import pytest

from refalign.pipelines import correspondence as corr_mod
from refalign.pipelines.config import RefinementDefaults
from refalign.pipelines.correspondence import find_correspondence, warped_reference
from refalign.pipelines.pasting import ResidualPaste, WindowPaste, paste_strategy
from refalign.windows import ModelFrame, Window, window_to_source


def _artifact(image):
    mask = np.zeros(image.shape[:2], bool)
    mask[140:170, 150:185] = True
    return mask


def test_model_frame_converts_model_pixels_once():
    frame = ModelFrame(Window(10, 20, 128), 64)
    assert frame.image_px(1.5) == 3.0 and frame.radius(1.5) == 3 and frame.radius(0.1) == 1
    assert np.allclose(frame.to_source(), window_to_source(frame.window, 64))
    assert frame.centre() == pytest.approx((20 + 64.5, 10 + 64.5))  # model point (32, 32), pixel-centre convention
    # area scale 4 doubles lengths on the reference
    assert frame.reference_radius(2.0, 4.0) == 8


def test_correspondence_paths_without_registration():
    ref = np.zeros((40, 50, 3), np.uint8)
    mask = np.zeros((30, 30), bool)
    mask[10:12, 10:12] = True
    whole = find_correspondence(ref[:30, :30], mask, ref, None, path="whole")
    assert whole.region is None and whole.path == "whole" and whole.valid_region is None
    user = np.zeros((40, 50), bool)
    user[5:9, 5:9] = True
    got = find_correspondence(ref[:30, :30], mask, ref, user, path="user")
    assert got.region is user and got.m_star is None and got.num_inliers == 0
    empty = find_correspondence(ref[:30, :30], mask, ref, np.zeros((40, 50), bool), path="cross-attention",
                                subtoken=True)
    assert empty.region is None and empty.reason == "no token-level region to refine"


def test_one_registration_feeds_region_and_guidance(monkeypatch):
    from conftest import textured_warp_pair

    image, reference, _ = textured_warp_pair()
    mask = _artifact(image)
    image[mask] = (255, 0, 255)  # the artifact (an undamaged region has nothing to repair: no registration is used)
    calls = []
    real = corr_mod.match_artifact
    monkeypatch.setattr(corr_mod, "match_artifact", lambda *a, **k: calls.append(1) or real(*a, **k))
    m_star = np.zeros(reference.shape[:2], bool)
    m_star[100:200, 100:200] = True
    frame = ModelFrame(Window(110, 120, 96), 32)
    got = find_correspondence(image, mask, reference, m_star, path="cross-attention", subtoken=True, register=True,
                              frame=frame, dilation=1.0)
    assert len(calls) == 1
    assert got.path == "warp" and got.num_inliers >= 10 and got.homography is not None
    assert got.valid_region is not None and (got.valid_region >= got.region).all()
    assert got.guidance.startswith("warp (homography")
    warp = warped_reference(got, reference, frame, 32)
    assert warp is not None and warp[0].shape == (32, 32, 3) and warp[1].any()
    # sub-token alignment off: M* is kept for the tokens, the same registration still guides
    off = find_correspondence(image, mask, reference, m_star, path="cross-attention", register=True, frame=frame,
                              dilation=1.0)
    assert off.path == "cross-attention" and off.region is m_star and off.valid_region is not None


def test_paste_strategy_is_chosen_once_from_the_config():
    assert isinstance(paste_strategy(RefinementDefaults(paste_mode="window")), WindowPaste)
    residual = paste_strategy(RefinementDefaults(paste_mode="residual", ramp=2.0, detail_transfer=True))
    assert isinstance(residual, ResidualPaste) and residual.needs_fill and residual.detail_transfer
    assert residual.ramp == 2.0 and not WindowPaste.needs_fill


def test_area_ratio_measures_a_region_against_the_artifact_at_the_references_scale():
    from refalign.windows import area_ratio

    artifact = np.zeros((100, 200), bool)
    artifact[10:20, 10:20] = True  # 100 px in a 200-px-wide image
    region = np.zeros((200, 400), bool)  # a reference with twice the pixels: the artifact would span 400 px there
    region[:40, :30] = True
    assert area_ratio(region, artifact) == pytest.approx(1200 / 400)
    assert area_ratio(region, np.zeros((100, 200), bool)) == 1200.0  # an empty artifact counts as one pixel


def test_m_star_ratio_is_measured_on_the_alignments_region_only():
    """``Correspondence.m_star_ratio``: ``M*``'s area against the artifact's at the reference's scale (what makes it
    a vague match); ``None`` for a region the user painted or a registration located, and without a region."""
    from refalign.pipelines.correspondence import Correspondence

    artifact = np.zeros((100, 200), bool)
    artifact[10:20, 10:20] = True
    region = np.zeros((200, 400), bool)
    region[:40, :30] = True
    assert Correspondence(region, "cross-attention").m_star_ratio(artifact) == pytest.approx(3.0)
    for path in ("user", "located", "warp"):
        assert Correspondence(region, path).m_star_ratio(artifact) is None
    assert Correspondence(None, "cross-attention").m_star_ratio(artifact) is None
