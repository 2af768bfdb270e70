"""The attention package: eq. 5 maths, capture processors and store, §A.4 post-processing, overlay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from refalign.attention import (
    CrossAttentionStore,
    capture_cross_attention,
    correspondence_from_probs,
    correspondence_overlay,
    postprocess_map,
    resize_query_mask,
    token_map,
    upsample_to_reference,
)
from refalign.attention.aggregate import attention_probabilities, query_grid_shape
from refalign.attention.postprocess import largest_blob, mass_share, normalise_map, remove_noise_peaks, robust_sigma
from refalign.attention.processors import AlignmentCaptureProcessor

# --------------------------------------------------------------------------------------------- eq. 5 (pure)


def test_eq5_on_hand_built_probabilities():
    # 2 heads, 3 query positions, 2 tokens; mask weights (1, 0, 0.5)
    probs = torch.tensor(
        [[[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], [[0.7, 0.3], [0.0, 1.0], [0.1, 0.9]]]], dtype=torch.float32
    )
    weights = torch.tensor([[1.0, 0.0, 0.5]])
    got = correspondence_from_probs(probs, weights)
    # head mean: q0 (0.8, 0.2), q1 (0.1, 0.9), q2 (0.3, 0.7) -> 1·q0 + 0.5·q2 = (0.95, 0.55)
    torch.testing.assert_close(got, torch.tensor([[0.95, 0.55]]))


def test_eq5_blocks_add_up_to_the_whole_layer():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(2, 4, 10, 6, generator=g).softmax(-1)
    w = torch.rand(2, 10, generator=g)
    whole = correspondence_from_probs(probs, w)
    parts = correspondence_from_probs(probs[:, :, :4], w[:, :4]) + correspondence_from_probs(probs[:, :, 4:], w[:, 4:])
    torch.testing.assert_close(whole, parts)
    # a mask of ones sums each head-averaged row: total mass = number of queries
    torch.testing.assert_close(correspondence_from_probs(probs, torch.ones(1, 10)).sum(-1), torch.full((2,), 10.0))


def test_resize_query_mask_area_weights():
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 0, 0] = 1  # one pixel of the top-left 2x2 cell
    m[0, 0, 2:, 2:] = 1  # the whole bottom-right cell
    torch.testing.assert_close(resize_query_mask(m, (2, 2)), torch.tensor([[0.25, 0.0, 0.0, 1.0]]))
    torch.testing.assert_close(resize_query_mask(m, (4, 4)), m.flatten(1))
    assert resize_query_mask(m, (8, 8)).shape == (1, 64)
    with pytest.raises(ValueError):
        resize_query_mask(torch.zeros(1, 4, 4), (2, 2))


def test_query_grid_shape_and_token_map():
    assert query_grid_shape(64, (32, 32)) == (8, 8)
    assert query_grid_shape(32, (16, 32)) == (4, 8)
    with pytest.raises(ValueError):
        query_grid_shape(7, (32, 32))
    flat = torch.arange(17.0)[None]  # 16 patch tokens + CLS
    grid = token_map(flat, (4, 4))
    assert grid.shape == (1, 4, 4) and grid[0, 1, 0] == 4 and grid.max() == 15  # row-major, CLS dropped


# --------------------------------------------------------------------------------------------- processors


def _attention(seed=0):
    torch.manual_seed(seed)
    attn = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8)
    attn.set_processor(AttnProcessor2_0())
    return attn


@pytest.mark.parametrize("block_elements", [1 << 22, 40])  # one block, and many small blocks
def test_capture_processor_matches_sdpa_and_eq5(block_elements):
    attn = _attention()
    hidden = torch.randn(1, 36, 16)  # a 6x6 query grid
    tokens = torch.randn(1, 5, 8)
    expected = attn(hidden, encoder_hidden_states=tokens)
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., 1:3, 2:5] = 1
    store = CrossAttentionStore(mask)
    store.set_step(3)
    out = AlignmentCaptureProcessor(store, 7, block_elements)(attn, hidden, encoder_hidden_states=tokens)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # reference: diffusers' own probabilities, head-averaged, summed under the mask
    q = attn.head_to_batch_dim(attn.to_q(hidden))
    k = attn.head_to_batch_dim(attn.to_k(tokens))
    probs = attn.get_attention_scores(q, k).view(1, 2, 36, 5)
    want = (probs.mean(1) * mask.flatten(1)[..., None]).sum(1)
    torch.testing.assert_close(store.maps[(3, 7)], want, atol=1e-6, rtol=1e-5)


def test_attention_probabilities_rows_sum_to_one():
    p = attention_probabilities(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), 0.5)
    torch.testing.assert_close(p.sum(-1), torch.ones(1, 2, 3))


def test_capture_swaps_only_read_layers_and_restores(dummy_pipeline):
    from refalign.models.unet import cross_attention_layer_names

    unet = dummy_pipeline.unet
    names = cross_attention_layer_names(unet)
    before = {n: m.processor for n, m in unet.named_modules() if hasattr(m, "processor")}
    store = CrossAttentionStore(torch.ones(1, 1, 32, 32), layers=[1, 3])
    with pytest.raises(RuntimeError, match="boom"):
        with capture_cross_attention(unet, store):
            swapped = {n for n, m in unet.named_modules() if hasattr(m, "processor") and m.processor is not before[n]}
            assert swapped == {names[1], names[3]}
            raise RuntimeError("boom")
    after = {n: m.processor for n, m in unet.named_modules() if hasattr(m, "processor")}
    assert all(after[n] is before[n] for n in before)


def test_capture_restores_when_the_unet_fails(dummy_pipeline):
    unet = dummy_pipeline.unet
    before = [m.processor for m in unet.modules() if hasattr(m, "processor")]
    store = CrossAttentionStore(torch.ones(1, 1, 32, 32))
    x, tok = torch.randn(1, 25, 16, 16), torch.randn(1, 64, 32)
    with pytest.raises(RuntimeError, match="set_step"):  # the step is never inferred
        with capture_cross_attention(unet, store):
            unet(x, 10, encoder_hidden_states=tok)
    assert [m.processor for m in unet.modules() if hasattr(m, "processor")] == before


def test_capture_all_layers_keeps_unet_output(dummy_pipeline):
    unet = dummy_pipeline.unet
    x, tok = torch.randn(1, 25, 16, 16), torch.randn(1, 64, 32)
    with torch.no_grad():
        ref = unet(x, 10, encoder_hidden_states=tok).sample
        store = CrossAttentionStore(torch.ones(1, 1, 32, 32))
        with capture_cross_attention(unet, store):
            store.set_step(0)
            out = unet(x, 10, encoder_hidden_states=tok).sample
            with pytest.raises(RuntimeError, match="already captured"):
                unet(x, 10, encoder_hidden_states=tok)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert sorted(store.maps) == [(0, i) for i in range(7)]
    # a mask of ones: each layer's map sums to its number of query positions (rows of probabilities sum to 1)
    sums = sorted({round(float(m.sum())) for m in store.maps.values()})
    assert sums == [16, 64]  # 4x4 and 8x8 query grids
    assert all(not m.requires_grad for m in store.maps.values())


def test_capture_errors(dummy_pipeline):
    with pytest.raises(ValueError, match="7 cross-attention layers"):
        with capture_cross_attention(dummy_pipeline.unet, CrossAttentionStore(torch.ones(1, 1, 8, 8), layers=[7])):
            pass
    with pytest.raises(ValueError, match="B, 1, H, W"):
        CrossAttentionStore(torch.ones(8, 8))
    store = CrossAttentionStore(torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="classifier-free"):
        store.query_weights(16, 3, torch.device("cpu"))


def test_keep_grad_maps_stay_in_the_graph():
    attn = _attention()
    store = CrossAttentionStore(torch.ones(1, 1, 4, 4), keep_grad=True)
    store.set_step(0)
    AlignmentCaptureProcessor(store, 0)(attn, torch.randn(1, 16, 16), encoder_hidden_states=torch.randn(1, 5, 8))
    m = store.maps[(0, 0)]
    assert m.requires_grad
    m[0, 0].backward()
    assert attn.to_q.weight.grad is not None and attn.to_q.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------- §A.4


def _blob_map(size=16, centre=(9, 10), sigma=1.5, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))
    return 0.05 + blob + rng.normal(0, 0.01, (size, size))


def test_noise_peaks_at_border_and_corner_are_removed():
    m = _blob_map()
    m[0, 0] = 3.0  # corner spike, 3x the blob
    m[0, 7] = m[0, 8] = 2.5  # a pair on the top border
    m[15, 3] = 2.0  # bottom border
    cleaned, peaks = remove_noise_peaks(m, noise_z=4.0)
    assert set(zip(*np.nonzero(peaks))) == {(0, 0), (0, 7), (0, 8), (15, 3)}
    assert cleaned.max() == pytest.approx(m[9, 10])  # the blob's peak is untouched
    res = postprocess_map(m, noise_z=4.0, threshold=0.5)
    ys, xs = np.nonzero(res.token_mask)
    assert res.token_mask[9, 10] and ys.min() >= 7 and ys.max() <= 11 and xs.min() >= 8 and xs.max() <= 12
    assert res.score > 0.2
    # without the filter the border pair wins and the blob is lost: the filter is what makes M* right
    bad = postprocess_map(m, noise_z=np.inf, threshold=0.5)
    assert bad.token_mask[0, 7] and bad.token_mask[0, 8] and not bad.token_mask[9, 10]


def test_noise_filter_keeps_genuine_small_blobs():
    m = np.full((16, 16), 0.05) + np.random.default_rng(1).normal(0, 0.01, (16, 16))
    m[0:2, 0:2] = 1.0  # a 2x2 region in the corner is structure, not noise
    _, peaks = remove_noise_peaks(m, noise_z=4.0)
    assert not peaks.any()
    assert postprocess_map(m).token_mask[0:2, 0:2].all()


def test_noise_z_threshold_is_the_decision_boundary():
    m = 1.0 + np.random.default_rng(0).normal(0, 0.01, (8, 8))
    m[4, 4] = 10.0  # any value above the median gives the same MAD
    sigma = robust_sigma(m)
    second = np.sort(m[3:6, 3:6].ravel())[-3]  # second-largest neighbour (the largest value is m[4, 4] itself)
    m[4, 4] = second + 5.0 * sigma
    assert robust_sigma(m) == pytest.approx(sigma)
    assert remove_noise_peaks(m, noise_z=4.0)[1][4, 4]
    assert not remove_noise_peaks(m, noise_z=6.0)[1][4, 4]
    assert not remove_noise_peaks(np.ones((6, 6)))[1].any()  # flat map: nothing to remove


def test_normalise_and_largest_blob_by_mass():
    m = np.zeros((8, 8))
    m[0:3, 0:3] = 0.6  # area 9, mass 5.4
    m[5:7, 5:7] = 1.0  # area 4, mass 4.0
    soft = normalise_map(m)
    assert soft.min() == 0 and soft.max() == 1
    blob = largest_blob(soft, 0.5)
    assert blob.sum() == 9 and blob[0, 0]
    assert largest_blob(soft, 0.7).sum() == 4  # the threshold is relative to the maximum
    assert not largest_blob(normalise_map(np.ones((4, 4))), 0.5).any()  # flat map: no blob
    with pytest.raises(ValueError):
        largest_blob(soft, 0.0)


def test_upsample_to_reference_follows_token_cells():
    soft = np.zeros((4, 4), np.float32)
    soft[1:3, 1:3] = 1.0
    blob = soft > 0
    m_star, up = upsample_to_reference(soft, blob, (40, 40), 0.5)
    want = np.zeros((40, 40), bool)
    want[10:30, 10:30] = True
    assert up.shape == (40, 40)
    assert (m_star ^ want).sum() <= 2 * 20  # only the outermost pixel ring may differ
    # binarised relative to the blob's own peak: a weak blob still gives a region
    m_weak, _ = upsample_to_reference(soft * 0.6, blob, (40, 40), 0.5)
    assert m_weak.sum() == m_star.sum()
    assert not upsample_to_reference(soft, np.zeros_like(blob), (40, 40))[0].any()


def test_mass_share():
    m = np.ones((4, 4))
    region = np.zeros((4, 4), bool)
    region[0] = True
    assert mass_share(m, region) == pytest.approx(0.25)
    assert mass_share(np.zeros((4, 4)), region) == 0.0


def test_overlay_dims_outside_and_draws_contour():
    ref = np.full((40, 50, 3), 200, np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[10:30, 10:30] = True
    out = correspondence_overlay(ref, mask, np.zeros((40, 50), np.float32))
    assert out.shape == ref.shape and out.dtype == np.uint8
    assert out[0, 49].max() == round(200 * 0.35)  # dimmed outside
    assert (out[20, 20] == 200).all()  # untouched inside (zero heat)
    assert (out[10, 20] == (255, 255, 0)).all()  # contour
    with pytest.raises(ValueError):
        correspondence_overlay(ref, mask[:10])


def test_isolation_keeps_the_summit_of_a_smooth_blob():
    m = _blob_map(sigma=1.5)
    drop = m[9, 10] - np.sort([m[8, 10], m[10, 10], m[9, 9], m[9, 11]])[-2]
    assert drop > 4.0 * robust_sigma(m)  # criterion (a) alone would flag the summit ...
    assert not remove_noise_peaks(m, noise_z=4.0)[1].any()  # ... (b) keeps it
    assert remove_noise_peaks(m, noise_z=4.0, isolation=0.1)[1][9, 10]
