"""The refine path with ``refinement.source="reference"`` (DESIGN §6): registered windows get the reference's own
pixels inside the mask only; unregistered windows are kept (or refined by the model) and the user is told."""

import cv2
import numpy as np
import pytest

from conftest import textured_image, textured_warp_pair
from refalign.errors import InputError
from refalign.eval.synth import apply_artifact
from refalign.pipelines.config import apply_overrides
import refalign.pipelines.pipeline_refine_by_align as pipeline_module
import refalign.transfer.damage as damage_module
from refalign.transfer.damage import (BLURRED_DETAIL, BLURRED_INTERIOR, edge_colours, interior_blur, interior_detail,
                                     looks_mild)

pytestmark = pytest.mark.usefixtures("one_thread")


def _artifact_case():
    img, ref, _ = textured_warp_pair(seed=2)
    mask = np.zeros(img.shape[:2], bool)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    mask[(yy - 150) ** 2 + ((xx - 170) / 1.5) ** 2 < 15**2] = True
    art = img.copy()
    art[mask] = (255, 0, 255)
    return img, art, mask, ref


def _from_elsewhere(truth, mask):
    """``truth`` with the ``mask`` pixels taken from another texture: content that does not belong there and whose
    colours do not follow the surroundings' (a map across the edge explains 0.15 of their spread, as on photos:
    hallucinated and shuffled windows explain at most 0.35; :data:`~refalign.transfer.damage.FOLLOWS_EXPLAINED`)."""
    out = truth.copy()
    out[mask] = textured_image(seed=3)[mask]
    assert not edge_colours(out, mask).follows_surroundings
    return out


def _set(pipe, *items):
    pipe.refalign_config = apply_overrides(pipe.refalign_config, list(items))
    return pipe


def _psnr(a, b, m):
    d = a[m].astype(float) - b[m].astype(float)
    return 10 * np.log10(255**2 / max((d**2).mean(), 1e-9))


def test_a_registered_window_gets_the_references_pixels_inside_the_mask_only(dummy_pipeline):
    truth, art, mask, ref = _artifact_case()
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    out = pipe(art, mask, ref, seed=0, num_inference_steps=2)
    assert out.sources == ["reference"]
    assert (out.image[~mask] == art[~mask]).all()
    assert _psnr(out.image, truth, mask) > 25  # the dummy model could never do this: the reference's own pixels
    assert out.confidence[0] > 0.5
    assert "the reference's own pixels" in out.reports[0] and "registered" in out.reports[0]
    assert "dense flow" not in out.reports[0]  # a right registration is pasted as warped
    assert out.alignment[0].path == "warp"  # the same correspondence feeds the alignment's report


def test_no_paste_gives_a_registered_window_the_unregistered_choice_and_says_so(dummy_pipeline):
    """The user's recourse for a paste that looks wrong: the window registers as before, gets ``unregistered``, and
    its line says both."""
    truth, art, mask, ref = _artifact_case()
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    pasted = pipe(art, mask, ref, seed=0, unregistered="keep")
    kept = pipe(art, mask, ref, seed=0, unregistered="keep", paste=False)
    assert pasted.sources == ["reference"] and kept.sources == ["kept"] and (kept.image == art).all()
    assert kept.doubts == [()]  # nothing pasted, nothing to doubt
    assert kept.confidence == pasted.confidence and kept.confidence[0] > 0.5  # it still registered
    assert "left as it was, not the registered reference's pixels (--no-paste; registered: homography" in \
        kept.reports[0], kept.reports[0]
    assert kept.reports[0].endswith("--paste to paste them")
    synthesised = pipe(art, mask, ref, seed=0, unregistered="synthesize", paste=False)
    assert synthesised.sources == ["synthesis"] and (synthesised.image[~mask] == art[~mask]).all()
    assert synthesised.reports[0].split(": ", 1)[1].startswith("synthesised from the registered region ("), \
        synthesised.reports[0]
    refined = pipe(art, mask, ref, seed=0, num_inference_steps=2, unregistered="model", paste=False)
    assert refined.sources == ["model"] and "refined by the model, not the registered" in refined.reports[0]
    assert _set(pipe, "refinement.paste=false")(art, mask, ref, seed=0, unregistered="keep").sources == ["kept"]


def test_paste_can_be_refused_for_some_windows_only(dummy_pipeline):
    """One bool per window, in ``RefineOutput.windows``' order (the same mask plans the same windows): the refused
    window gets ``unregistered``, the other its paste, as in a run without the switch."""
    truth, art, mask, ref = _artifact_case()
    yy, xx = np.mgrid[0 : truth.shape[0], 0 : truth.shape[1]]
    second = (yy - 60) ** 2 + (xx - 70) ** 2 < 12**2
    both, damaged = mask | second, art.copy()
    damaged[second] = (0, 255, 255)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    full = pipe(damaged, both, ref, seed=0, unregistered="keep")
    assert full.sources == ["reference", "reference"] and len(full.windows) == 2
    first = full.windows[0].top <= 150 < full.windows[0].top + full.windows[0].size  # which window is the mask's
    refused = pipe(damaged, both, ref, seed=0, unregistered="keep", paste=[True, False])
    assert refused.sources == ["reference", "kept"] and refused.windows == full.windows
    kept_region, pasted_region = (second, mask) if first else (mask, second)
    assert (refused.image[kept_region] == damaged[kept_region]).all()
    assert (refused.image[pasted_region] == full.image[pasted_region]).all()
    assert pipe(damaged, both, ref, seed=0, unregistered="keep", paste=np.array([True, True])).sources == full.sources
    with pytest.raises(InputError, match=r"paste: 1 values for 2 window\(s\); give one per window"):
        pipe(damaged, both, ref, seed=0, paste=[False])
    for bad in (["no", "no"], 1):
        with pytest.raises(InputError, match="paste must be a bool or one bool per window"):
            pipe(damaged, both, ref, seed=0, paste=bad)


def test_a_paste_accepted_on_a_small_damage_ratio_is_reported_as_a_close_call(dummy_pipeline, monkeypatch):
    import refalign.pipelines.window_job as window_job

    _, art, mask, ref = _artifact_case()
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    clear = pipe(art, mask, ref, seed=0)
    assert clear.sources == ["reference"] and "close call" not in clear.reports[0] and clear.doubts == [()]
    monkeypatch.setattr(window_job, "CLEAR_DAMAGE_RATIO", 1e6)  # the magenta hole's ratio is large, not infinite
    close = pipe(art, mask, ref, seed=0)
    assert close.sources == ["reference"] and np.array_equal(close.image, clear.image)
    assert "— a close call: the damaged pixels differ from the paste" in close.reports[0], close.reports[0]
    assert close.reports[0].endswith("if it looks wrong, --no-paste leaves the region to --unregistered")
    assert close.doubts == [("close call",)]


def test_a_paste_across_views_that_breaks_the_masks_edge_is_pasted_with_that_doubt(dummy_pipeline):
    """Drawn with a margin of clean pixels, the mask's edge continues its surroundings; a paste a few pixels off
    does not. That speaks against a paste only where the mask hugs its artifact, so it is reported, not refused:
    here the paste is right and far better than the input."""
    truth, art, mask, ref = _artifact_case()
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    bent = _bent(ref, 6.0)  # registered across "views": ring correlation below 0.85
    margin = cv2.dilate(mask.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0
    hugging = pipe(art, mask, bent, seed=0, unregistered="keep")
    drawn_wide = pipe(art, margin, bent, seed=0, unregistered="keep")
    assert hugging.sources == drawn_wide.sources == ["reference"]
    assert "continues the surroundings less well" not in hugging.reports[0]
    assert "breaks the edge" not in hugging.doubts[0] and "breaks the edge" in drawn_wide.doubts[0]
    assert "— it continues the surroundings less well than the damaged pixels do (edge step " in drawn_wide.reports[0]
    assert drawn_wide.reports[0].endswith("if it looks wrong, --no-paste leaves the region to --unregistered")
    assert _psnr(drawn_wide.image, truth, margin) > _psnr(art, truth, margin) + 6
    # a paste the model explains (the same view) is not asked
    assert "continues the surroundings" not in pipe(art, margin, ref, seed=0, unregistered="keep").reports[0]


def test_auto_pastes_a_model_refused_only_for_its_damage_ratio_where_it_would_synthesise(dummy_pipeline,
                                                                                         monkeypatch):
    """A feature painted around, clean or smeared in its own colours, differs from the reference hardly more than
    its surroundings do: the registration is refused for its damage ratio, and a synthesis would rebuild the
    feature as the surroundings' texture. ``auto`` pastes that model instead where it would synthesise (a window
    that breaks from its surroundings, or a blurred one); not where it keeps the window, nor when pastes are
    refused or ``unregistered`` is another mode."""
    truth, art, mask, ref = _artifact_case()
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    monkeypatch.setattr("refalign.transfer.register.MIN_DAMAGE_RATIO", 1e6)  # every model refused for its ratio alone
    out = pipe(art, mask, ref, seed=0, unregistered="auto")
    assert out.sources == ["reference"] and out.alignment[0].path == "located" and out.confidence == [0.0]
    assert (out.image[~mask] == art[~mask]).all() and _psnr(out.image, truth, mask) > 25
    report = out.reports[0]
    assert "the reference's own pixels through the model that locates it — not registered (" in report, report
    assert "refused only because the damaged pixels differ from it" in report and "pasted, not rebuilt" in report
    assert "if it looks wrong, --unregistered keep to leave it as it was" in report and "close call" not in report
    assert pipe(art, mask, ref, seed=0, unregistered="auto", paste=False).sources == ["synthesis"]
    assert pipe(art, mask, ref, seed=0, unregistered="keep").sources == ["kept"]
    assert pipe(art, mask, ref, seed=0, unregistered="synthesize").sources == ["synthesis"]
    region = np.zeros(ref.shape[:2], bool)
    region[100:200, 100:240] = True  # painted by the user around where the artifact's content lies
    told = pipe(art, mask, ref, region, seed=0, unregistered="auto")
    assert told.sources == ["reference"] and "through the model found around your --reference-mask" in told.reports[0]
    blurred = truth.copy()
    blurred[mask] = cv2.GaussianBlur(truth, (0, 0), 4)[mask]
    assert looks_mild(blurred, mask) and interior_detail(blurred, mask) < BLURRED_DETAIL
    soft = pipe(blurred, mask, ref, seed=0, unregistered="auto")
    assert soft.sources == ["reference"] and ", but blurred (detail" in soft.reports[0]
    assert _psnr(soft.image, truth, mask) > _psnr(blurred, truth, mask)
    clean = pipe(truth, mask, ref, seed=0, unregistered="auto")  # continuous with its surroundings, not blurred: kept
    assert clean.sources == ["kept"] and (clean.image == truth).all()


def test_a_greyscale_picture_is_repaired_in_grey_from_a_colour_reference(dummy_pipeline):
    """Registered (the reference's pixels) and unregistered (the refiner, which paints colour): no colour comes into
    a picture that had none, and the pixels a colour picture's repair leaves alone keep their values."""
    from refalign.files import grey_rgb

    truth, art, mask, ref = _artifact_case()
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    outs = []
    for reference, source in ((ref, "reference"), (textured_image(seed=9), "model")):
        coloured = pipe(art, mask, reference, seed=0, num_inference_steps=2)
        out = pipe(grey_rgb(art), mask, reference, seed=0, num_inference_steps=2)
        assert out.sources == coloured.sources == [source]
        assert (out.image[..., 0] == out.image[..., 1]).all() and (out.image[..., 1] == out.image[..., 2]).all()
        untouched = ~mask & (coloured.image == art).all(axis=2)
        assert (out.image[untouched] == grey_rgb(art)[untouched]).all()
        outs.append(out.image)
    assert _psnr(outs[0], grey_rgb(truth), mask) > 25  # the reference's pixels, in grey
    # the alignment stage alone reads the same grey copy of the reference
    other = textured_image(seed=9)
    alone, grey_ref = pipe.align(grey_rgb(art), mask, other), pipe.align(grey_rgb(art), mask, grey_rgb(other))
    assert np.array_equal(alone.mask, grey_ref.mask) and alone.score == grey_ref.score


def test_an_unregistered_window_is_refined_or_kept_and_the_user_is_told(dummy_pipeline):
    _, art, mask, _ = _artifact_case()
    other = textured_image(seed=9)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    out = pipe(art, mask, other, seed=0, num_inference_steps=2)  # default: the refiner fills it
    assert out.sources == ["model"] and out.confidence == [0.0] and not (out.image == art).all()
    assert "no reliable correspondence" in out.reports[0] and "refined by the model instead" in out.reports[0]
    kept = pipe(art, mask, other, seed=0, num_inference_steps=2, unregistered="keep")
    assert kept.sources == ["kept"] and (kept.image == art).all()
    assert "left as it was" in kept.reports[0] and "paint the matching region with --reference-mask" in kept.reports[0]
    # told where to look already, the user is not told to paint the region again
    region = np.zeros(other.shape[:2], bool)
    region[100:200, 120:220] = True
    told = pipe(art, mask, other, region, seed=0, num_inference_steps=2, unregistered="keep")
    assert told.sources == ["kept"] and "paint the matching region" not in told.reports[0]
    assert "your --reference-mask region does not explain it either" in told.reports[0], told.reports[0]
    assert _set(pipe, "refinement.unregistered=keep")(art, mask, other, seed=0).sources == ["kept"]
    with pytest.raises(InputError, match="unregistered"):
        pipe(art, mask, other, unregistered="fill")


def test_auto_keeps_a_mild_artifact_and_synthesises_one_from_elsewhere(dummy_pipeline, monkeypatch):
    truth, _, mask, _ = _artifact_case()
    monkeypatch.setattr(pipeline_module, "VAGUE_AREA_RATIO", float("inf"))  # as if M* were sharp (the dummy's is not)
    other = textured_image(seed=9)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    moved = truth.copy()
    moved[mask] = np.roll(truth, (2, 0), axis=(0, 1))[mask]
    pasted = _from_elsewhere(truth, mask)
    assert looks_mild(moved, mask) and not looks_mild(pasted, mask)
    kept = pipe(moved, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert kept.sources == ["kept"] and (kept.image == moved).all()
    rebuilt = pipe(pasted, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert rebuilt.sources == ["synthesis"] and not (rebuilt.image == pasted).all()
    assert "auto: the artifact breaks from its surroundings" in rebuilt.reports[0]
    # content from elsewhere: guiding the synthesis by it would carry its break into the hole
    assert "its own pixels do not guide the synthesis (edge step" in rebuilt.reports[0]
    plain = pipe(pasted, mask, other, seed=0, num_inference_steps=2, unregistered="synthesize")
    assert (plain.image == rebuilt.image).all()
    assert "auto: the artifact looks continuous" in kept.reports[0]
    assert (rebuilt.image[~mask] == pasted[~mask]).all()
    # without a matching region (no alignment) there is nothing to synthesise from: the refiner, said so
    alone = pipe(pasted, mask, other, seed=0, num_inference_steps=2, unregistered="auto", no_align=True)
    assert alone.sources == ["model"] and "refined by the model instead" in alone.reports[0]


def test_auto_guides_the_synthesis_of_a_blurred_artifact_by_its_own_pixels(dummy_pipeline):
    truth, _, mask, _ = _artifact_case()
    other = textured_image(seed=9)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    blurred = truth.copy()
    blurred[mask] = cv2.GaussianBlur(truth, (0, 0), 4)[mask]
    assert looks_mild(blurred, mask) and interior_detail(blurred, mask) < BLURRED_DETAIL
    out = pipe(blurred, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert out.sources == ["synthesis"] and (out.image[~mask] == blurred[~mask]).all()
    assert "but blurred (detail 0.47x its surroundings' < 0.6)" in out.reports[0]
    assert "guided by its own pixels" in out.reports[0] and "--unregistered keep" in out.reports[0]
    # the blur's structure stays (its coarse band, away from the edge), unlike a plain synthesis's: nearer the truth
    plain = pipe(blurred, mask, other, seed=0, num_inference_steps=2, unregistered="synthesize")
    inner = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0

    def coarse_change(x):
        return np.abs(cv2.GaussianBlur(x.astype(np.float32), (0, 0), 4) - cv2.GaussianBlur(
            blurred.astype(np.float32), (0, 0), 4))[inner].mean()

    assert coarse_change(out.image) < 6
    assert coarse_change(plain.image) > 12
    assert _psnr(out.image, truth, mask) > _psnr(plain.image, truth, mask) + 2
    # without a region to take the detail from, a blurred artifact is kept as before
    alone = pipe(blurred, mask, other, seed=0, num_inference_steps=2, unregistered="auto", no_align=True)
    assert alone.sources == ["kept"] and (alone.image == blurred).all()


def test_auto_takes_the_guided_synthesis_when_it_continues_the_surroundings_nearly_as_well(dummy_pipeline,
                                                                                         monkeypatch):
    truth, _, mask, _ = _artifact_case()
    other = textured_image(seed=9)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    pasted = _from_elsewhere(truth, mask)
    monkeypatch.setattr(pipeline_module, "VAGUE_AREA_RATIO", float("inf"))  # as if M* were sharp (the dummy's is not)
    plain = pipe(pasted, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    monkeypatch.setattr(pipeline_module, "GUIDED_STEP_RATIO", 100.0)
    guided = pipe(pasted, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert guided.sources == ["synthesis"] and "its own pixels guide the synthesis" in guided.reports[0]
    assert "guided by its own pixels" in guided.reports[0] and not (guided.image == plain.image).all()
    assert (guided.image[~mask] == pasted[~mask]).all()


def test_auto_keeps_the_strokes_of_an_artifact_whose_colours_follow_its_surroundings_in_the_synthesiss_colours(
        dummy_pipeline, monkeypatch):
    truth, _, mask, _ = _artifact_case()
    other = textured_image(seed=9)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    moved = truth.copy()
    moved[mask] = np.roll(truth, (120, 90), axis=(0, 1))[mask]  # the texture's own colours, out of place
    edge = edge_colours(moved, mask)
    assert not looks_mild(moved, mask) and not edge.recolours and edge.follows_surroundings
    assert interior_blur(moved, mask) < BLURRED_INTERIOR
    out = pipe(moved, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert out.sources == ["synthesis"] and (out.image[~mask] == moved[~mask]).all()
    assert "auto: the artifact breaks from its surroundings" in out.reports[0]
    assert (f"its own strokes then kept in the synthesis's colours (its colours follow its surroundings': the colour "
            f"map across its edge explains {edge.explained:.2f} of their spread >= 0.3)") in out.reports[0]
    assert "--unregistered guided" not in out.reports[0]  # its layout is kept already
    # the strokes are the damaged pixels': the result follows them far more closely than a synthesis does
    plain = pipe(moved, mask, other, seed=0, num_inference_steps=2, unregistered="synthesize")
    grey = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[mask].astype(float)  # noqa: E731
    assert np.corrcoef(grey(out.image), grey(moved))[0, 1] > 0.8
    assert np.corrcoef(grey(plain.image), grey(moved))[0, 1] < 0.5
    # a map explaining less still counts when the map fitted the other way undoes it closely
    with monkeypatch.context() as m:
        m.setattr(damage_module, "FOLLOWS_EXPLAINED", edge.explained + 0.01)
        m.setattr(damage_module, "FOLLOWS_EXPLAINED_INVERTIBLE", edge.explained - 0.01)
        m.setattr(damage_module, "FOLLOWS_ROUND_TRIP", edge.round_trip + 0.01)
        close = pipe(moved, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert (close.image == out.image).all()
    assert (f"explains {edge.explained:.2f} of their spread >= {edge.explained - 0.01} and the map fitted the other "
            f"way undoes it within {edge.round_trip:.2f} <= {edge.round_trip + 0.01} natural steps)"
            ) in close.reports[0]
    # colours that do not follow the surroundings' (content from elsewhere) get the synthesis itself
    with monkeypatch.context() as m:
        m.setattr(damage_module, "FOLLOWS_EXPLAINED", edge.explained + 0.01)
        m.setattr(damage_module, "FOLLOWS_EXPLAINED_INVERTIBLE", edge.explained - 0.01)
        m.setattr(damage_module, "FOLLOWS_ROUND_TRIP", edge.round_trip - 0.01)
        rebuilt = pipe(moved, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert rebuilt.sources == ["synthesis"] and "its own strokes" not in rebuilt.reports[0]
    assert not (rebuilt.image == out.image).all()
    # nor does a blurred interior, rebuilt around its own pixels instead
    with monkeypatch.context() as m:
        for module in (pipeline_module, damage_module):  # the guide's rule and the strokes' rule read the same bar
            m.setattr(module, "BLURRED_INTERIOR", 0.0)
        m.setattr(pipeline_module, "VAGUE_AREA_RATIO", float("inf"))  # as if M* were sharp (the dummy's is not)
        blurred = pipe(moved, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert "its interior is a blur" in blurred.reports[0] and "its own strokes" not in blurred.reports[0]
    # nor one with less detail than its surroundings (lost detail: its strokes are a blur too)
    assert interior_detail(moved, mask) >= BLURRED_DETAIL
    with monkeypatch.context() as m:
        m.setattr(damage_module, "BLURRED_DETAIL", 100.0)
        flat = pipe(moved, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert flat.sources == ["synthesis"] and "its own strokes" not in flat.reports[0]
    assert (flat.image == rebuilt.image).all()


def test_auto_recolours_an_artifact_that_only_changed_colours(dummy_pipeline):
    truth, _, mask, _ = _artifact_case()
    other = textured_image(seed=9)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    tinted = truth.copy()
    tinted[mask] = np.clip(255 * (truth[mask] / 255.0) ** 0.6 * [0.8, 1.1, 0.9], 0, 255).astype(np.uint8)
    out = pipe(tinted, mask, other, seed=0, num_inference_steps=2)  # the pipeline's own default
    assert out.sources == ["model"]  # the class default is the paper's refiner; "auto" recolours
    out = pipe(tinted, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert out.sources == ["recoloured"] and out.confidence == [0.0]
    assert (out.image[~mask] == tinted[~mask]).all()
    assert _psnr(out.image, truth, mask) > _psnr(tinted, truth, mask) + 5
    assert "its own pixels recoloured to their surroundings" in out.reports[0]
    assert "auto: colour step at its edge" in out.reports[0] and "--unregistered keep" in out.reports[0]
    kept = pipe(tinted, mask, other, seed=0, num_inference_steps=2, unregistered="keep")
    assert kept.sources == ["kept"] and (kept.image == tinted).all()


def _bent(image, amplitude, seed=0):
    """``image`` under a smooth random displacement of up to ``amplitude`` px: another view that no plane model
    registers exactly."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    field = [cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 12) for _ in range(2)]
    dx, dy = (f / np.abs(f).max() * amplitude for f in field)
    x, y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, x + dx, y + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_auto_prefers_a_recoloured_artifact_to_a_paste_the_model_explains_only_in_part(dummy_pipeline):
    truth, art, mask, ref = _artifact_case()
    tinted = truth.copy()
    tinted[mask] = np.clip(255 * (truth[mask] / 255.0) ** 0.6 * [0.8, 1.1, 0.9], 0, 255).astype(np.uint8)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    bent = _bent(ref, 6.0)  # registered, but a few pixels off (ring correlation about 0.8)
    out = pipe(tinted, mask, bent, seed=0, unregistered="auto")
    pasted = pipe(tinted, mask, bent, seed=0, unregistered="keep")
    assert out.sources == ["recoloured"] and pasted.sources == ["reference"]
    assert "which they continue better than the registered reference's pixels" in out.reports[0]
    assert "--unregistered keep to paste the reference's pixels instead" in out.reports[0]
    assert (out.image[~mask] == tinted[~mask]).all()
    assert _psnr(out.image, truth, mask) > _psnr(pasted.image, truth, mask) + 3
    # a paste the model explains (the same view) stays, and so does one over an artifact that did not only recolour
    assert pipe(tinted, mask, ref, seed=0, unregistered="auto").sources == ["reference"]
    assert pipe(art, mask, bent, seed=0, unregistered="auto").sources == ["reference"]


def test_an_unregistered_window_is_synthesised_from_the_region_inside_the_mask_only(dummy_pipeline):
    truth, art, mask, _ = _artifact_case()
    other = textured_image(seed=9)
    region = np.zeros(other.shape[:2], bool)
    region[40:160, 60:200] = True
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    out = pipe(art, mask, other, region, seed=0, unregistered="synthesize")
    assert out.sources == ["synthesis"] and out.confidence == [0.0]
    assert (out.image[~mask] == art[~mask]).all() and not (out.image[mask] == art[mask]).all()
    assert "synthesised from your --reference-mask region" in out.reports[0]
    again = pipe(art, mask, other, region, seed=0, unregistered="synthesize")
    assert (again.image == out.image).all()  # deterministic for a seed
    # without a region (no alignment: the whole reference) the window falls back to the refiner, and says so
    whole = pipe(art, mask, other, no_align=True, seed=0, num_inference_steps=2, unregistered="synthesize")
    assert whole.sources == ["model"] and "not synthesised (no matching region" in whole.reports[0]
    assert "refined by the model instead" in whole.reports[0]
    harmonized = _set(pipe, "refinement.paste_mode=residual", "refinement.harmonize=true")(
        art, mask, other, region, seed=0, num_inference_steps=2, unregistered="synthesize")
    assert harmonized.sources == ["synthesis+model"] and (harmonized.image[~mask] == art[~mask]).all()
    assert "harmonized by the model" in harmonized.reports[0]


def test_a_window_that_does_not_register_is_synthesised_from_where_its_best_model_locates_it(dummy_pipeline):
    """Heavy noise on the reference: its model still lines the texture up (the located path) but leaves too much
    colour error on the ring to paste. The synthesis draws from the located region, the output's correspondence is
    that region, and the report says so."""
    truth, art, mask, ref = _artifact_case()
    rng = np.random.default_rng(0)
    noisy = np.clip(ref.astype(np.float64) + rng.normal(0, 60, ref.shape), 0, 255).astype(np.uint8)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    out = pipe(art, mask, noisy, seed=0, unregistered="synthesize")
    assert out.sources == ["synthesis"] and out.confidence == [0.0]  # nothing pasted through the located model
    assert out.alignment[0].path == "located"
    located = out.alignment[0].correspondence.region
    assert out.correspondence is not None and (out.correspondence == located).all()
    assert "synthesised from the region the registration located" in out.reports[0], out.reports[0]
    assert "its best model still locates the matching region" in out.reports[0]
    assert (out.image[~mask] == art[~mask]).all()
    # the located model explains the ring's gradients (only its colours fail): its warp of the reference is averaged
    # into the synthesis, which brings it nearer the truth than the synthesis alone — unless pastes are refused
    assert "averaged with the reference warped through the model that located it" in out.reports[0]
    unmixed = pipe(art, mask, noisy, seed=0, unregistered="synthesize", paste=False)
    assert unmixed.sources == ["synthesis"] and "averaged" not in unmixed.reports[0]
    assert _psnr(out.image, truth, mask) > _psnr(unmixed.image, truth, mask) + 1


def test_several_references_take_the_registrable_one(dummy_pipeline):
    _, art, mask, ref = _artifact_case()
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    out = pipe(art, mask, [textured_image(seed=9), ref], seed=0, num_inference_steps=2)
    assert out.reference_indices == [1] and out.sources == ["reference"]


def test_harmonize_runs_the_model_over_the_transfer_and_keeps_the_outside(dummy_pipeline):
    _, art, mask, ref = _artifact_case()
    pipe = _set(dummy_pipeline, "refinement.source=reference", "refinement.paste_mode=residual",
                "refinement.harmonize=true")
    out = pipe(art, mask, ref, seed=0, num_inference_steps=2)
    assert out.sources == ["reference+model"]
    assert (out.image[~mask] == art[~mask]).all()


@pytest.mark.parametrize("settings, words", [
    (["refinement.paste_mode=residual", "refinement.harmonize=true"], "refinement.harmonize"),
    (["refinement.unregistered=keep"], "refinement.unregistered"),
    (["refinement.dense_flow=false"], "refinement.dense_flow"),
    (["refinement.paste=false"], "refinement.paste"),
    (["refinement.source=reference", "refinement.harmonize=true"], "harmonize needs paste_mode residual"),
])
def test_settings_without_effect_are_refused(dummy_pipeline, settings, words):
    with pytest.raises(InputError, match=words):
        apply_overrides(dummy_pipeline.refalign_config, settings)


def test_bad_source_values_are_refused(dummy_pipeline):
    with pytest.raises(InputError, match="source"):
        apply_overrides(dummy_pipeline.refalign_config, ["refinement.source=photo"])


def test_cli_unregistered_option_is_checked_before_any_model_work(tmp_path, monkeypatch):
    from PIL import Image
    from typer.testing import CliRunner

    from refalign.cli import app

    img = tmp_path / "img.png"
    Image.fromarray(textured_image(seed=1)).save(img)
    mask = np.zeros((320, 320), np.uint8)
    mask[100:120, 100:130] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: pytest.fail("model loaded"))
    res = CliRunner().invoke(app, ["refine", str(img), "--mask", str(tmp_path / "mask.png"), "--reference", str(img),
                                   "-o", str(tmp_path / "out.png"), "--unregistered", "fill"])
    assert res.exit_code == 2, res.output
    assert "--unregistered fill: use keep, model, synthesize, guided, auto" in res.output, res.output
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("flag, key, passed", [
    ([], "dense_flow", None), (["--no-dense-flow"], "dense_flow", False), (["--dense-flow"], "dense_flow", True),
    ([], "paste", None), (["--no-paste"], "paste", False), (["--paste"], "paste", True),
])
def test_cli_switches_reach_the_pipeline(tmp_path, monkeypatch, flag, key, passed):
    from PIL import Image
    from typer.testing import CliRunner

    from refalign.cli import app
    from refalign.pipelines.outputs import RefineOutput

    calls = []

    def fake(image, mask, reference, **kwargs):
        calls.append(kwargs)
        return RefineOutput(image, None, None)

    img = tmp_path / "img.png"
    Image.fromarray(textured_image(seed=1)).save(img)
    mask = np.zeros((320, 320), np.uint8)
    mask[100:120, 100:130] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: fake)
    res = CliRunner().invoke(app, ["refine", str(img), "--mask", str(tmp_path / "mask.png"), "--reference", str(img),
                                   "-o", str(tmp_path / "out.png"), *flag])
    assert res.exit_code == 0, res.output
    assert len(calls) == 1 and calls[0][key] is passed


def test_bench_guided_compares_auto_with_its_session_9_choice(tmp_path, dummy_checkpoint):
    """benchmarks/bench_guided.py on one blurred case: auto guides its synthesis, the table scores it beside the
    session-9 choice (kept), doing nothing and Telea, and the time ratio is printed."""
    import subprocess
    import sys
    from pathlib import Path

    from refalign.eval.cases import write_case

    truth, _, mask, _ = _artifact_case()
    blurred = truth.copy()
    blurred[mask] = cv2.GaussianBlur(truth, (0, 0), 4)[mask]
    write_case(tmp_path / "cases" / "0000-blur-lost_detail-multiview", image=blurred, mask=mask,
               reference=textured_image(seed=9), target=truth,
               meta={"artifact_kind": "lost_detail", "reference_kind": "multiview"})
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_guided.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cases"), "--model", str(dummy_checkpoint),
                           "--set", "refinement.source=reference"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| lost_detail | 1 |" in proc.stdout and "| guided (blurred) |" in proc.stdout, proc.stdout
    assert "session 9's choice" in proc.stdout and "x\n" in proc.stdout, proc.stdout


def _flat_drift_case():
    """A nearly flat surface (a lid, a label's ground) whose masked part drifted green: the colour map across the edge
    removes the step, but pairs of two nearly flat colours cannot confirm it (the ring test refuses)."""
    yy, xx = np.mgrid[0:256, 0:256]
    wave = np.sin(xx / 9.0 + yy / 13.0)[..., None] * np.float32([2, 1.3, 0.7])
    noise = np.random.default_rng(0).normal(0, 3, (256, 256, 3))
    truth = np.clip(cv2.GaussianBlur(np.float32([150, 95, 50]) + wave + noise, (0, 0), 1.5), 0, 255).astype(np.uint8)
    mask = ((yy - 128) / 40.0) ** 2 + ((xx - 128) / 60.0) ** 2 < 1
    hsv = cv2.cvtColor(truth, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0], hsv[..., 1] = (hsv[..., 0] + 50) % 180, np.clip(hsv[..., 1] * 1.6 + 20, 0, 255)
    drifted = truth.copy()
    drifted[mask] = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[mask]
    return truth, drifted, mask


def test_a_drift_the_ring_cannot_confirm_is_recoloured_where_the_reference_never_shows_its_colours(dummy_pipeline):
    truth, drifted, mask = _flat_drift_case()
    edge = edge_colours(drifted, mask)
    assert edge.removes_step() and not edge.recolours
    # the object's colours without its structure: nothing registers
    reference = truth.reshape(-1, 3)[np.random.default_rng(1).permutation(truth.shape[0] * truth.shape[1])]
    reference = reference.reshape(truth.shape)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    out = pipe(drifted, mask, reference, seed=0, num_inference_steps=2, unregistered="auto")
    assert out.sources == ["recoloured"] and "the ring alone does not confirm the map" in out.reports[0]
    assert "the reference shows 0.00 of its colours (<= 0.1) and 0.95 of them recoloured" in out.reports[0]
    assert (out.image[~mask] == drifted[~mask]).all()
    assert _psnr(out.image, truth, mask) > _psnr(drifted, truth, mask) + 10
    # "guided" asks the reference the same way
    guided = pipe(drifted, mask, reference, seed=0, num_inference_steps=2, unregistered="guided")
    assert guided.sources == ["recoloured"] and (guided.image == out.image).all()
    # an object that shows the damaged colours (a green label of its own) does not confirm it
    shows = reference.copy()
    shows[:64] = np.resize(drifted[mask], (64, 256, 3))
    kept = pipe(drifted, mask, shows, seed=0, num_inference_steps=2, unregistered="auto")
    assert kept.sources != ["recoloured"] and "the reference does" not in kept.reports[0]


def _smeared_feature_case():
    """A dark feature (an eye, a nose) on a soft surface, a mask painted around it, the feature smeared as
    ``make-cases --kinds smeared`` does (turned half a turn, blurred, mixed with a coarse copy): its colours kept."""
    truth = cv2.GaussianBlur(textured_image(seed=3), (0, 0), 5)
    yy, xx = np.mgrid[0 : truth.shape[0], 0 : truth.shape[1]]
    truth[(yy - 150) ** 2 + (xx - 170) ** 2 < 11**2] = (40, 20, 25)
    mask = (yy - 150) ** 2 + (xx - 170) ** 2 < 16**2
    return truth, apply_artifact("smeared", truth, mask, np.random.default_rng(0)), mask


def test_a_smeared_feature_keeps_its_layout(dummy_pipeline, monkeypatch):
    """Where ``M*`` is a vague match it cannot say what the region held: ``auto`` guides the synthesis by the
    damaged pixels, as ``guided`` does, and the smeared feature stays. From a sharp ``M*`` too, because its interior
    is a blur (:func:`~refalign.transfer.damage.interior_blur`), though the guided synthesis breaks from the
    surroundings at the mask's edge as the true feature does. Where the interior does not read as a blur, ``auto``
    rebuilds the region as its surroundings' texture, and its report names ``--unregistered guided``."""
    truth, smeared, mask = _smeared_feature_case()
    other = textured_image(seed=9)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    vague = pipe(smeared, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert vague.sources == ["synthesis"] and "M* is a vague match (40.3x" in vague.reports[0]
    assert "guided by its own pixels" in vague.reports[0] and "edge step" not in vague.reports[0]
    guided = pipe(smeared, mask, other, seed=0, num_inference_steps=2, unregistered="guided")
    assert (vague.image == guided.image).all()
    monkeypatch.setattr(pipeline_module, "VAGUE_AREA_RATIO", float("inf"))  # as if M* were sharp (the dummy's is not)
    assert interior_blur(smeared, mask) >= BLURRED_INTERIOR
    auto = pipe(smeared, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert auto.sources == ["synthesis"] and "its interior is a blur" in auto.reports[0]
    assert (auto.image == guided.image).all()
    monkeypatch.setattr(pipeline_module, "BLURRED_INTERIOR", 1.5)  # as if it did not read as a blur
    rebuilt = pipe(smeared, mask, other, seed=0, num_inference_steps=2, unregistered="auto")
    assert rebuilt.sources == ["synthesis"] and "its own pixels do not guide the synthesis" in rebuilt.reports[0]
    assert "--unregistered guided to keep its layout" in rebuilt.reports[0]
    assert guided.sources == ["synthesis"] and "guided by its own pixels" in guided.reports[0]
    assert "--unregistered guided" not in guided.reports[0] and (guided.image[~mask] == smeared[~mask]).all()
    feature = cv2.erode(mask.astype(np.uint8), np.ones((11, 11), np.uint8)) > 0
    grey = lambda im: cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2GRAY)[feature].mean()  # noqa: E731
    assert grey(guided.image) < grey(rebuilt.image) - 30  # the dark feature stays; the plain synthesis lit it up
    assert _psnr(guided.image, truth, mask) > _psnr(rebuilt.image, truth, mask) + 2


def test_guided_recolours_first_and_needs_a_region(dummy_pipeline):
    truth, _, mask, _ = _artifact_case()
    other = textured_image(seed=9)
    pipe = _set(dummy_pipeline, "refinement.source=reference")
    tinted = truth.copy()
    tinted[mask] = np.clip(truth[mask].astype(int) * [1.3, 0.8, 0.6] + [20, 0, 0], 0, 255).astype(np.uint8)
    out = pipe(tinted, mask, other, seed=0, num_inference_steps=2, unregistered="guided")
    assert out.sources == ["recoloured"] and "[guided: colour step" in out.reports[0]
    assert (out.image == pipe(tinted, mask, other, seed=0, unregistered="auto").image).all()
    blurred = truth.copy()
    blurred[mask] = cv2.GaussianBlur(truth, (0, 0), 4)[mask]
    alone = pipe(blurred, mask, other, seed=0, num_inference_steps=2, unregistered="guided", no_align=True)
    assert alone.sources == ["model"] and "refined by the model instead" in alone.reports[0]
