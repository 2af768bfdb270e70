"""The two-stage pipeline ``pipe(image, mask, reference)`` (paper §3.5) on the dummy model."""

from __future__ import annotations

import importlib.util
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from refalign.errors import InputError
from refalign.mask_ops import dilate
from refalign.pipelines import zoom
from refalign.pipelines.correspondence import Correspondence
from refalign.windows import ModelFrame
from refalign.pipelines.outputs import RefineOutput

HAS_ALIGN = importlib.util.find_spec("refalign.pipelines.alignment") is not None


pytestmark = pytest.mark.usefixtures("one_thread")


def _fake_align(calls):
    """Stand-in for the alignment stage: M* = the left half of the reference."""

    def align(image, mask, reference, object_mask=None, generator=None, **kw):
        calls.append({"mask": mask.copy(), "object_mask": object_mask})
        m = np.zeros(reference.shape[:2], bool)
        m[:, : reference.shape[1] // 2] = True
        return SimpleNamespace(mask=m, soft_map=np.zeros((8, 8), np.float32), step=0, layer=3, score=None,
                               correspondence=Correspondence(m, "cross-attention", m_star=m))

    return align


def _outside_dilated(mask, windows, pipe):
    """Pixels farther from the mask than the largest dilation radius used."""
    r = max(ModelFrame(w, pipe.resolution).radius(pipe.refalign_config.refinement.dilation) for w in windows)
    return zoom.distance_to(mask) > r


def test_end_to_end_no_align(dummy_pipeline, scene):
    out = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], no_align=True, seed=0)
    assert isinstance(out, RefineOutput)
    assert out.image.shape == scene["image"].shape and out.image.dtype == np.uint8
    assert out.correspondence is None and out.alignment is None and len(out.windows) == 1
    changed = (out.image != scene["image"]).any(-1)
    assert changed[scene["mask"]].mean() > 0.5


def test_background_bit_identical_outside_dilated_mask(dummy_pipeline, scene):
    out = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], no_align=True, seed=1)
    outside = _outside_dilated(scene["mask"], out.windows, dummy_pipeline)
    assert outside.sum() > 0.5 * outside.size
    assert np.array_equal(out.image[outside], scene["image"][outside])


def test_deterministic_per_seed(dummy_pipeline, scene):
    args = (scene["image"], scene["mask"], scene["reference"])
    a = dummy_pipeline(*args, no_align=True, seed=3).image
    b = dummy_pipeline(*args, no_align=True, generator=torch.Generator().manual_seed(3)).image
    c = dummy_pipeline(*args, no_align=True, seed=4).image
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_border_and_multi_region(dummy_pipeline, scene):
    h, w = 160, 200
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[0:6, w - 9 : w] = True  # corner
    mask[100:108, 20:30] = True  # far away
    mask[150:160, 100:106] = True  # bottom edge
    out = dummy_pipeline(image, mask, scene["reference"], no_align=True, seed=0)
    assert len(out.windows) == 3
    for win in out.windows:
        assert win.top >= 0 and win.left >= 0 and win.bottom <= h and win.right <= w
    changed = (out.image != image).any(-1)
    for t, l, b, r in [(0, w - 9, 6, w), (100, 20, 108, 30), (150, 100, 160, 106)]:
        assert changed[t:b, l:r].any()
    outside = _outside_dilated(mask, out.windows, dummy_pipeline)
    assert np.array_equal(out.image[outside], image[outside])


def test_small_image_window_padded(dummy_pipeline, scene):
    image = scene["image"][:20, :40]
    mask = np.zeros((20, 40), bool)
    mask[5:10, 30:38] = True
    out = dummy_pipeline(image, mask, scene["reference"], no_align=True, seed=0)
    assert out.windows[0].size == 40 and out.image.shape == image.shape
    outside = _outside_dilated(mask, out.windows, dummy_pipeline)
    assert np.array_equal(out.image[outside], image[outside])


def test_large_image_cost_independent_of_size(dummy_pipeline, scene):
    image = np.full((4096, 4096, 3), 120, np.uint8)
    mask = np.zeros((4096, 4096), bool)
    mask[2000:2012, 3000:3010] = True
    calls = []
    orig = dummy_pipeline.prepare_inpainting_inputs

    def spy(img, m, **kwargs):
        calls.append(tuple(img.shape))
        return orig(img, m, **kwargs)

    dummy_pipeline.prepare_inpainting_inputs = spy
    start = time.perf_counter()
    out = dummy_pipeline(image, mask, scene["reference"], no_align=True, seed=0)
    elapsed = time.perf_counter() - start
    assert calls == [(1, 3, dummy_pipeline.resolution, dummy_pipeline.resolution)]
    assert out.windows[0].size == dummy_pipeline.refalign_config.refinement.min_window
    assert elapsed < 20
    outside = _outside_dilated(mask, out.windows, dummy_pipeline)
    assert np.array_equal(out.image[outside], image[outside])


def test_callback_called_per_step_and_can_replace_latents(dummy_pipeline, scene):
    seen = []

    def cb(pipe, step, timestep, kwargs):
        seen.append((step, int(timestep), sorted(kwargs)))
        return {"latents": torch.zeros_like(kwargs["latents"])} if step == 2 else {}

    out = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], no_align=True, seed=0,
                         num_inference_steps=3, callback_on_step_end=cb,
                         callback_on_step_end_tensor_inputs=("latents", "noise_pred"))
    assert [s[0] for s in seen] == [0, 1, 2]
    assert seen[0][1] > seen[1][1] > seen[2][1]
    assert all(s[2] == ["latents", "noise_pred"] for s in seen)
    # zero latents decode to mid-grey, which the paste then blends in on the artifact
    assert (np.abs(out.image[scene["mask"]].astype(int) - 128) <= 1).all()


def test_reference_mask_skips_alignment(dummy_pipeline, scene, monkeypatch):
    monkeypatch.setattr(dummy_pipeline, "_align", lambda *a, **k: pytest.fail("alignment must be skipped"))
    region = np.zeros(scene["reference"].shape[:2], bool)
    region[10:40, 20:60] = True
    out = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], reference_mask=region, seed=0)
    assert out.alignment is None and np.array_equal(out.correspondence, region)
    other = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], no_align=True, seed=0)
    assert not np.array_equal(out.image, other.image)  # the conditioning differs


def test_alignment_runs_per_window(dummy_pipeline, scene, monkeypatch):
    calls = []
    monkeypatch.setattr(dummy_pipeline, "_align", _fake_align(calls))
    image = np.full((200, 200, 3), 90, np.uint8)
    mask = np.zeros((200, 200), bool)
    mask[5:10, 5:10] = True
    mask[180:190, 180:190] = True
    obj = np.ones(scene["reference"].shape[:2], bool)
    out = dummy_pipeline(image, mask, scene["reference"], object_mask=obj, seed=0)
    assert len(calls) == 2 and len(out.alignment) == 2
    assert sum(int(c["mask"].sum()) for c in calls) == mask.sum()
    assert calls[0]["object_mask"] is obj
    assert out.correspondence[:, :48].all() and not out.correspondence[:, 48:].any()


def _record_unet_batches(pipe, monkeypatch) -> list[int]:
    """The batch size of every U-Net pass ``pipe`` makes from now on (until the test ends)."""
    batches: list[int] = []
    orig = pipe.unet_forward

    def spy(latents, *a, **k):
        batches.append(latents.shape[0])
        return orig(latents, *a, **k)

    monkeypatch.setattr(pipe, "unet_forward", spy)
    return batches


def test_guidance_one_is_single_pass_and_strength(dummy_pipeline, scene, monkeypatch):
    batches = _record_unet_batches(dummy_pipeline, monkeypatch)
    args = (scene["image"], scene["mask"], scene["reference"])
    dummy_pipeline(*args, no_align=True, guidance_scale=1.0, num_inference_steps=2, seed=0)
    assert batches == [1, 1]
    batches.clear()
    dummy_pipeline(*args, no_align=True, guidance_scale=3.0, num_inference_steps=4, strength=0.5, seed=0)
    assert batches == [2, 2]


def test_scheduler_is_swappable(dummy_pipeline, scene):
    from diffusers import DPMSolverMultistepScheduler

    dummy_pipeline.scheduler = DPMSolverMultistepScheduler.from_config(dummy_pipeline.scheduler.config)
    out = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], no_align=True, seed=0,
                         num_inference_steps=3, output_type="pil")
    assert out.image.size == (96, 96)


def test_paths_and_pil_inputs(dummy_pipeline, scene, tmp_path):
    from PIL import Image

    Image.fromarray(scene["image"]).save(tmp_path / "i.png")
    Image.fromarray(scene["mask"].astype(np.uint8) * 255).save(tmp_path / "m.png")
    out = dummy_pipeline(tmp_path / "i.png", tmp_path / "m.png", Image.fromarray(scene["reference"]),
                         no_align=True, seed=0)
    ref = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], no_align=True, seed=0)
    assert np.array_equal(out.image, ref.image)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"mask": np.zeros((50, 50), bool)}, "mask is 50x50"),
        ({"mask": np.zeros((96, 96), bool)}, "marks no pixels"),
        ({"strength": 0.0}, "strength"),
        ({"reference_mask": np.zeros((5, 5), bool)}, "reference_mask"),
        ({"output_type": "latent"}, "output_type"),
        ({"callback_on_step_end_tensor_inputs": ("foo",)}, "foo"),
    ],
)
def test_bad_arguments_raise_input_error(dummy_pipeline, scene, change, message):
    kwargs = {"image": scene["image"], "mask": scene["mask"], "reference": scene["reference"], "no_align": True}
    kwargs.update(change)
    with pytest.raises(InputError, match=message):
        dummy_pipeline(**kwargs)


@pytest.mark.skipif(not HAS_ALIGN, reason="alignment stage not built yet")
def test_with_real_alignment(dummy_pipeline, scene):
    out = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], seed=0)
    assert len(out.alignment) == len(out.windows) == 1
    assert out.correspondence is None or out.correspondence.shape == scene["reference"].shape[:2]
    outside = _outside_dilated(scene["mask"], out.windows, dummy_pipeline)
    assert np.array_equal(out.image[outside], scene["image"][outside])
    again = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], seed=0)
    assert np.array_equal(out.image, again.image)


def test_several_references_choose_the_best_aligned_per_window(dummy_pipeline, scene):
    """Each window aligns with every reference and is refined from the one with the highest alignment score."""
    flat = np.full_like(scene["reference"], 128)
    out = dummy_pipeline(scene["image"], scene["mask"], [flat, scene["reference"]], seed=0)
    scores = [dummy_pipeline.align(scene["image"], scene["mask"], r).score for r in (flat, scene["reference"])]
    assert out.reference_indices == [int(np.argmax(scores))]
    assert isinstance(out.correspondence, list) and len(out.correspondence) == 2
    assert out.correspondence[1 - out.reference_indices[0]] is None
    with pytest.raises(InputError, match="several references"):
        dummy_pipeline(scene["image"], scene["mask"], [flat, flat], no_align=True)
    with pytest.raises(InputError, match="one object mask per reference"):
        dummy_pipeline(scene["image"], scene["mask"], [flat, flat], object_mask=[None])


def test_residual_paste_keeps_full_resolution_surroundings(scene):
    """A model that returns its input fill changes nothing but the hole, which gets the full-resolution Telea
    fill; the model's change over the fill is added on top, upsampled (low band model, high band fill)."""
    from refalign.fill import telea_fill

    image, mask = scene["image"], scene["mask"]
    plan = zoom.plan_windows(mask, context=2.0, min_size=32)[0]
    base, fill_win, hole = zoom.classical_fill(image, mask, plan, 32)
    assert fill_win.shape == (32, 32, 3) and (fill_win == zoom.resize_image(base, 32)).all()
    same = zoom.residual_patch(base, fill_win, fill_win)
    win_img = zoom.crop(image, plan.window)
    assert (hole == (zoom.crop(mask, plan.window) | plan.region_mask())).all()
    assert (same[~hole] == win_img[~hole]).all()
    assert (same[hole] == telea_fill(win_img, hole)[hole]).all()
    brighter = np.clip(fill_win.astype(int) + 20, 0, 255).astype(np.uint8)
    lifted = zoom.residual_patch(base, brighter, fill_win)
    assert lifted[hole].astype(int).mean() > same[hole].astype(int).mean() + 10
    # a ramp fades the model's change in from the hole's edge: small at the edge, whole deep inside, none outside
    ramped = zoom.residual_patch(base, brighter, fill_win, hole=hole, ramp=4.0)
    depth = zoom.distance_to(~hole)
    lift = ramped.astype(int).mean(-1) - same.astype(int).mean(-1)
    assert (ramped[~hole] == same[~hole]).all()
    assert lift[(depth >= 1) & (depth < 2)].mean() < 0.5 * lift[depth >= 4].mean()
    with pytest.raises(ValueError, match="ramp needs the hole"):
        zoom.residual_patch(base, brighter, fill_win, ramp=1.0)


def test_residual_mode_and_feather_from_refalign_json(dummy_pipeline, scene):
    cfg = dummy_pipeline.refalign_config.refinement
    wide = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], seed=0, no_align=True).image
    cfg.paste_mode, cfg.feather = "residual", 0.5
    narrow = dummy_pipeline(scene["image"], scene["mask"], scene["reference"], seed=0, no_align=True).image
    changed_wide = (wide != scene["image"]).any(-1)
    changed_narrow = (narrow != scene["image"]).any(-1)
    assert changed_narrow.sum() < changed_wide.sum()
    assert not (changed_narrow & ~dilate(scene["mask"], 3)).any()


def test_num_samples_draws_a_batch_and_averages(dummy_pipeline, scene, monkeypatch):
    """``num_samples = k``: one batch of k samples per window (2k with classifier-free guidance), averaged; the
    average varies less between seeds than one sample does."""
    args = (scene["image"], scene["mask"], scene["reference"])
    with monkeypatch.context() as patch:
        batches = _record_unet_batches(dummy_pipeline, patch)
        dummy_pipeline(*args, no_align=True, guidance_scale=2.0, num_samples=3, seed=0)
    assert set(batches) == {6}
    spread = {}
    for k in (1, 8):
        a, b = (dummy_pipeline(*args, no_align=True, guidance_scale=1.0, num_samples=k, seed=s).image for s in (0, 1))
        spread[k] = np.abs(a.astype(float) - b.astype(float))[scene["mask"]].mean()
    assert spread[8] < 0.85 * spread[1], spread  # random weights saturate, so less than 1/sqrt(8)
    with pytest.raises(InputError, match="num_samples"):
        dummy_pipeline(*args, no_align=True, num_samples=0)
