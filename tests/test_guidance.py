"""Warped-reference guidance (:mod:`refalign.guidance`): the geometry is exact in training samples and the same
functions place the reference at inference."""

from __future__ import annotations

import numpy as np
import pytest

from refalign.data.perturb import ColorSpec
from refalign.data.procedural import procedural_objects
from refalign.data.samples import MODES, SampleSpec, alignment_sample, multiview_sample, refinement_sample
from refalign.guidance import empty_guidance, jitter, warp_to_window
from refalign.mask_ops import dilate
from refalign.windows import ModelFrame, window_to_source
from refalign.windows import Window

NO_COLOUR = ColorSpec(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, gamma=0.0)


def test_window_to_source_is_resize_geometry():
    win = Window(10, 20, 40)
    m = window_to_source(win, 80)  # 2× upsampling: window pixel centres 0 and 1 straddle source pixel 20
    assert np.allclose(m @ [0.5, 0.5, 1], [20, 10, 1])
    assert np.allclose(m @ [79, 79, 1], [59.25, 49.25, 1])


def test_warp_to_window_identity_and_validity():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    region = np.zeros((64, 64), bool)
    region[10:30, 10:30] = True
    pixels, valid = warp_to_window(ref, region, np.eye(3), 64)
    assert (valid == region).all()
    assert (pixels[region] == ref[region]).all() and (pixels[~region] == 128).all()
    grey, none = empty_guidance(64)
    assert (grey == 128).all() and not none.any()


def test_jitter_moves_about_the_requested_amount():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = jitter(np.eye(3), rng, 1.5, 64)
        corners = np.array([[0, 0, 1], [63, 0, 1], [0, 63, 1], [63, 63, 1]], float).T
        moved = m @ corners
        assert np.abs(moved[:2] / moved[2] - corners[:2]).max() < 4.5
    assert (jitter(np.eye(3), rng, 0.0, 64) == np.eye(3)).all()


@pytest.mark.parametrize("builder", [alignment_sample, refinement_sample])
def test_guidance_pixels_match_the_target_window(builder):
    """Without colour change or jitter, the warped reference equals the clean window wherever it is valid (up to
    resampling): the bookkeeping through crop, resize and T is exact."""
    photos = procedural_objects(4, views=1, size=192, seed=3)
    spec = SampleSpec(color=NO_COLOUR, warp_drop=0.0, warp_jitter=0.0)
    errors = []
    for i, photo in enumerate(photos):
        s = builder(photo, np.random.default_rng(i), spec)
        valid = s["warp_valid"]
        assert valid.shape == (64, 64) and s["warped"].shape == (64, 64, 3)
        inner = valid & np.roll(valid, 2, 0) & np.roll(valid, -2, 0) & np.roll(valid, 2, 1) & np.roll(valid, -2, 1)
        if inner.sum() < 20:
            continue
        err = np.abs(s["warped"].astype(float) - s["image"].astype(float))[inner].mean()
        shuffled = np.abs(s["warped"].astype(float) - np.roll(s["image"], 7, 1).astype(float))[inner].mean()
        errors.append((err, shuffled))
    assert errors
    for err, shuffled in errors:
        assert err < 0.5 * shuffled, (err, shuffled)  # resampling (the reference is often coarser) stays


def test_guidance_is_dropped_at_the_requested_rate_and_for_multiview():
    photos = procedural_objects(3, views=2, size=192, seed=1)
    spec = SampleSpec(warp_drop=0.5)
    dropped = [not refinement_sample(photos[0], np.random.default_rng(i), spec)["warp_valid"].any() for i in range(40)]
    assert 0.25 < np.mean(dropped) < 0.75
    mv = multiview_sample(photos[0], photos[1], np.random.default_rng(0), spec)
    assert mv["mode"] == MODES["multiview"] and not mv["warp_valid"].any() and (mv["warped"] == 128).all()


def _guided_pipeline():
    from refalign.models.codecs import latent_channels
    from refalign.models.unet import add_guidance_inputs
    from conftest import make_dummy_pipeline

    pipe = make_dummy_pipeline()
    add_guidance_inputs(pipe.unet, latent_channels(pipe.codec))
    return pipe


def test_added_guidance_channels_start_inert():
    import torch

    from conftest import make_dummy_pipeline

    plain, guided = make_dummy_pipeline(), _guided_pipeline()
    assert not plain.uses_warped_guidance and guided.uses_warped_guidance
    assert plain.guidance_latents(None, None) is None
    lat = torch.randn(1, 12, 16, 16)
    masked, lmask = torch.randn(1, 12, 16, 16), torch.ones(1, 1, 16, 16)
    tokens = plain.unconditional_tokens(1)
    warped = torch.rand(1, 3, 32, 32) * 2 - 1
    g = guided.guidance_latents(warped, torch.ones(1, 1, 32, 32))
    assert g.shape == (1, 13, 16, 16) and (g[:, -1] == 1).all()
    with torch.no_grad():
        a = plain.unet_forward(lat, 500, masked, lmask, tokens)
        b = guided.unet_forward(lat, 500, masked, lmask, tokens, g)
    assert torch.allclose(a, b, atol=1e-6)


def test_pipeline_registers_each_window_and_feeds_the_warp(one_thread):
    from conftest import textured_warp_pair

    image, reference, _ = textured_warp_pair()
    mask = np.zeros(image.shape[:2], bool)
    mask[140:170, 150:185] = True
    image[mask] = (255, 0, 255)  # the artifact (an undamaged region has nothing to repair: no registration is used)
    pipe = _guided_pipeline()
    seen = []
    orig = pipe.unet_forward

    def spy(*args):
        seen.append(args[5])
        return orig(*args)

    pipe.unet_forward = spy
    out = pipe(image, mask, reference, reference_mask=np.ones(reference.shape[:2], bool), seed=0)
    assert len(out.guidance) == 1 and out.guidance[0].startswith("warp ("), out.guidance
    assert all(g is not None for g in seen) and float(seen[-1][:, -1].max()) > 0.5
    seen.clear()
    out = pipe(image, mask, reference, reference_mask=np.ones(reference.shape[:2], bool), seed=0,
               warped_guidance=False)
    assert out.guidance == ["off"] and float(seen[-1][:, -1].max()) == 0.0
    # an image that cannot be registered falls back to no guidance and says why
    flat = np.full_like(reference, 120)
    out = pipe(image, mask, flat, reference_mask=np.ones(flat.shape[:2], bool), seed=0)
    assert out.guidance[0].startswith("none (")


def test_telea_fill_conditioning_changes_only_the_hole():
    import torch

    from refalign.fill import telea_fill
    from refalign.pipelines.pipeline_refine_by_align import telea_fill_tensor
    from conftest import make_dummy_pipeline

    rng = np.random.default_rng(0)
    img = np.full((32, 32, 3), 90, np.uint8)
    img[:, 16:] = 200
    hole = np.zeros((32, 32), bool)
    hole[10:20, 4:12] = True
    broken = img.copy()
    broken[hole] = rng.integers(0, 255, (int(hole.sum()), 3))
    filled = telea_fill(broken, hole)
    assert (filled[~hole] == broken[~hole]).all() and np.abs(filled[hole].astype(int) - 90).max() <= 2
    t = torch.from_numpy(broken).permute(2, 0, 1)[None].float() / 127.5 - 1
    m = torch.from_numpy(hole)[None, None].float()
    out = telea_fill_tensor(t, m)
    assert torch.equal(out[..., ~torch.from_numpy(hole)], t[..., ~torch.from_numpy(hole)])
    pipe = make_dummy_pipeline()
    zero = pipe.prepare_inpainting_inputs(t, m)[1]
    pipe.refalign_config.masked_fill = "telea"
    tele = pipe.prepare_inpainting_inputs(t, m)[1]
    assert float(zero.abs().sum()) < float(tele.abs().sum())  # the hole carries the fill, not zeros


def test_fill_start_and_config_defaults(one_thread):
    import torch

    from refalign.errors import InputError
    from conftest import make_dummy_pipeline, synthetic_scene

    s = synthetic_scene()
    pipe = make_dummy_pipeline()
    starts = []
    orig = pipe.scheduler.add_noise

    def spy(x, noise, t):
        starts.append(x.clone())
        return orig(x, noise, t)

    pipe.scheduler.add_noise = spy
    a = pipe(s["image"], s["mask"], s["reference"], seed=0, strength=0.5, masked_content="original").image
    originals = list(starts)  # the alignment pass noises the window too: compare every call
    starts.clear()
    pipe.refalign_config.refinement.strength = 0.5
    pipe.refalign_config.refinement.masked_content = "fill"
    b = pipe(s["image"], s["mask"], s["reference"], seed=0).image  # both from refalign.json now
    assert len(starts) == len(originals) and a.shape == b.shape
    assert any(not torch.equal(x, y) for x, y in zip(starts, originals))
    with pytest.raises(InputError, match="masked_content"):
        pipe(s["image"], s["mask"], s["reference"], masked_content="blur")


def test_detail_transfer_restores_the_fine_band_from_the_registered_reference(one_thread):
    """``refinement.detail_transfer``: with the reference registered, the residual paste adds the band of the
    warped reference finer than the model's resolution — inside the hole only, and closer to the truth than the
    smooth fill; without a registration (or with the option off) nothing is added."""
    from conftest import textured_warp_pair
    from refalign.pipelines import zoom

    truth, reference, P = textured_warp_pair()
    mask = np.zeros(truth.shape[:2], bool)
    mask[140:170, 150:185] = True
    image = truth.copy()
    image[mask] = (255, 0, 255)  # the artifact
    plan = zoom.plan_windows(mask, context=2.0, min_size=32)[0]
    size, res = plan.window.size, 32
    pixels, valid = warp_to_window(reference, np.ones(reference.shape[:2], bool),
                                   P @ window_to_source(plan.window, size), size)
    detail = zoom.reference_detail(pixels, valid, ModelFrame(plan.window, res))
    assert detail.shape == (size, size, 3) and np.abs(detail).max() > 10
    assert not detail[~valid].any()
    base, fill_win, hole = zoom.classical_fill(image, mask, plan, res)
    # the model's part: the truth at model resolution (what a perfect refiner returns)
    perfect = zoom.resize_image(zoom.crop(truth, plan.window), res)
    plain = zoom.residual_patch(base, perfect, fill_win)
    sharp = zoom.residual_patch(base, perfect, fill_win, detail * hole[..., None])
    want = zoom.crop(truth, plan.window).astype(float)
    err = lambda x: np.abs(x.astype(float) - want)[hole].mean()  # noqa: E731
    assert err(sharp) < 0.7 * err(plain), (err(sharp), err(plain))
    outside = ~hole
    assert (sharp[outside] == plain[outside]).all()

    # through the pipeline: the option changes the hole only when the reference registers
    pipe = _guided_pipeline()
    cfg = pipe.refalign_config.refinement
    cfg.paste_mode = "residual"
    whole = np.ones(reference.shape[:2], bool)
    off = pipe(image, mask, reference, reference_mask=whole, seed=0).image
    cfg.detail_transfer = True
    on = pipe(image, mask, reference, reference_mask=whole, seed=0)
    assert on.guidance[0].startswith("warp (")
    changed = (on.image != off).any(-1)
    assert changed.any() and not (changed & ~dilate(mask, 8)).any()
    flat = np.full_like(reference, 120)
    assert (pipe(image, mask, flat, reference_mask=whole, seed=0).image
            == pipe(image, mask, flat, reference_mask=whole, seed=0, warped_guidance=False).image).all()
