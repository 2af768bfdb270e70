"""Region-level synthesis (issue 15 part 4): PatchMatch + multiscale EM voting from a reference region, with a
distribution colour map, pasted inside the hole only."""

import cv2
import numpy as np
import pytest

from refalign.fill import telea_fill
from refalign.transfer.source import paste_hole
from refalign.transfer.synthesis import (
    GUIDED_DETAIL, Level, SynthesisError, patch_distances, prepare_hole, pyramid_levels, region_colour, solve_hole,
    structure_and_texture, synthesize_hole, target_patches, vote,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _periodic(size=160, shift=(0, 0)):
    """A smooth periodic colour texture (periods 12, 9 and 16 px); ``shift`` moves it (a different crop of it)."""
    yy, xx = np.mgrid[0:size, 0:size]
    yy, xx = yy + shift[0], xx + shift[1]
    return np.stack([128 + 60 * np.sin(xx * 2 * np.pi / 12), 128 + 60 * np.sin(yy * 2 * np.pi / 9),
                     128 + 40 * np.sin((xx + yy) * 2 * np.pi / 16)], -1).astype(np.uint8)


def _hole(size=160, box=(60, 70, 96, 106)):
    hole = np.zeros((size, size), bool)
    t, l, b, r = box
    hole[t:b, l:r] = True
    return hole


def _mae(a, b, m):
    return float(np.abs(a[m].astype(float) - b[m].astype(float)).mean())


def test_a_periodic_texture_hole_is_refilled_from_a_region_of_the_same_texture():
    truth = _periodic()
    hole = _hole()
    image = truth.copy()
    image[hole] = (255, 0, 255)
    reference = _periodic(shift=(5, 3))  # another view of the same texture: no pixel corresponds
    region = np.zeros(hole.shape, bool)
    region[10:50, 10:50] = True
    syn = synthesize_hole(image, hole, reference, region, seed=0, structure_sigma=0)
    out = image.copy()
    pasted = paste_hole(out, syn.pixels, hole, syn.box)
    assert (pasted == hole).all()
    assert _mae(out, truth, hole) < 8.0  # the texture continues through the hole
    assert _mae(telea_fill(image, hole), truth, hole) > 25.0  # which a diffusion-type fill cannot do
    assert (out[~hole] == image[~hole]).all()  # bit-identical outside the hole
    t, l, b, r = syn.box
    assert (syn.pixels[~hole[t:b, l:r]] == image[t:b, l:r][~hole[t:b, l:r]]).all()


def test_the_colour_map_carries_the_regions_colours_into_the_images():
    truth = _periodic()
    hole = _hole()
    image = truth.copy()
    image[hole] = 0
    darker = np.clip(_periodic(shift=(5, 3)).astype(int) * 0.7 + 10, 0, 255).astype(np.uint8)
    region = np.zeros(hole.shape, bool)
    region[20:60, 20:60] = True
    fit = region_colour(image, hole, darker, region)
    mapped = fit.apply(darker[region])
    assert abs(mapped.mean() - truth[region].mean()) < 4.0 < abs(darker[region].mean() - truth[region].mean())
    syn = synthesize_hole(image, hole, darker, region, seed=0, structure_sigma=0)
    t, l, b, r = syn.box
    assert _mae(syn.pixels, truth[t:b, l:r], hole[t:b, l:r]) < 10.0


def test_structure_comes_from_the_surroundings_and_texture_from_the_synthesis():
    crop = np.full((64, 64, 3), 100.0, np.float32)
    hole = np.zeros((64, 64), bool)
    hole[8:56, 8:56] = True
    checker = ((np.indices((64, 64)).sum(0) % 2) * 40 - 20).astype(np.float32)[..., None]
    synthesized = crop.copy()
    synthesized[hole] = (150.0 + checker)[hole]  # the right texture at the wrong level
    out = structure_and_texture(crop, hole, synthesized, sigma=4.0)
    inner = np.zeros_like(hole)
    inner[28:36, 28:36] = True
    assert abs(out[inner].mean() - 100.0) < 6.0  # the level of the surroundings (as Telea continues it), not 150
    assert np.allclose(out[inner] - out[inner].mean(), checker[inner] * np.ones(3), atol=3.0)  # the texture
    assert (out[~hole] == crop[~hole]).all()
    assert structure_and_texture(crop, hole, synthesized, sigma=0) is synthesized


def test_guided_structure_comes_from_the_holes_own_pixels():
    crop = np.full((64, 64, 3), 100.0, np.float32)
    hole = np.zeros((64, 64), bool)
    hole[8:56, 8:56] = True
    crop[hole] = 160.0  # a blurred artifact: the right level, no texture
    checker = ((np.indices((64, 64)).sum(0) % 2) * 40 - 20).astype(np.float32)[..., None]
    synthesized = crop.copy()
    synthesized[hole] = (120.0 + checker)[hole]
    out = structure_and_texture(crop, hole, synthesized, sigma=4.0, guided=True)
    inner = np.zeros_like(hole)
    inner[28:36, 28:36] = True
    assert abs(out[inner].mean() - 160.0) < 2.0  # the artifact's own level, not the surroundings' 100 nor 120
    # the synthesised texture, a guess at the lost detail, at its weight
    assert np.allclose(out[inner] - out[inner].mean(), GUIDED_DETAIL * checker[inner] * np.ones(3), atol=3.0)
    assert (out[~hole] == crop[~hole]).all()


def test_a_blurred_hole_guided_by_its_own_pixels_gets_its_detail_back_in_place():
    truth = _periodic()
    hole = _hole()
    image = truth.copy()
    image[hole] = cv2.GaussianBlur(truth, (0, 0), 3)[hole]
    reference = _periodic(shift=(5, 3))
    region = np.zeros(hole.shape, bool)
    region[10:50, 10:50] = True
    guided = synthesize_hole(image, hole, reference, region, seed=0, guided=True)
    plain = synthesize_hole(image, hole, reference, region, seed=0)
    assert guided.guided and not plain.guided
    t, l, b, r = guided.box
    sub = hole[t:b, l:r]
    assert _mae(guided.pixels, truth[t:b, l:r], sub) < _mae(image[t:b, l:r], truth[t:b, l:r], sub) - 5

    def fine(x):  # the band finer than 2 px inside the hole
        x = np.asarray(x, np.float32)
        return (x - cv2.GaussianBlur(x, (0, 0), 2))[sub].ravel()

    truth_fine, blur_fine, guided_fine = fine(truth[t:b, l:r]), fine(image[t:b, l:r]), fine(guided.pixels)
    assert np.corrcoef(guided_fine, truth_fine)[0, 1] > 0.9  # the detail in place
    assert np.corrcoef(blur_fine, truth_fine)[0, 1] < 0.7
    # at its weight: this periodic texture is the best case, where the guess matches the truth's detail
    assert abs(guided_fine.std() / truth_fine.std() - GUIDED_DETAIL) < 0.1
    assert blur_fine.std() / truth_fine.std() < 0.3
    assert (guided.pixels[~sub] == image[t:b, l:r][~sub]).all()


def test_one_prepared_hole_serves_a_plain_and_a_guided_solve():
    image, hole = _periodic(), _hole()
    image[hole] = cv2.GaussianBlur(image, (0, 0), 3)[hole]
    reference = _periodic(shift=(2, 7))
    region = np.zeros(hole.shape, bool)
    region[10:60, 10:60] = True
    problem = prepare_hole(image, hole, reference, region)
    before = [lv.target.copy() for lv in problem.levels]
    for guided in (False, True, False):
        syn = solve_hole(problem, seed=3, guided=guided)
        assert (syn.pixels == synthesize_hole(image, hole, reference, region, seed=3, guided=guided).pixels).all()
    assert all((lv.target == b).all() and lv.ny is None for lv, b in zip(problem.levels, before))  # left unchanged


def test_synthesis_is_deterministic_for_a_seed():
    image, hole = _periodic(), _hole()
    reference = _periodic(shift=(2, 7))
    region = np.zeros(hole.shape, bool)
    region[10:60, 10:60] = True
    a = synthesize_hole(image, hole, reference, region, seed=3, scale=1.0)
    b = synthesize_hole(image, hole, reference, region, seed=3, scale=1.0)
    assert (a.pixels == b.pixels).all() and a.box == b.box


def test_non_finite_inputs_and_unusable_regions_are_refused():
    image, hole = _periodic().astype(np.float32), _hole()
    region = np.zeros(hole.shape, bool)
    region[10:60, 10:60] = True
    bad = image.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        synthesize_hole(bad, hole, image, region)
    with pytest.raises(ValueError, match="non-finite"):
        synthesize_hole(image, hole, bad, region)
    with pytest.raises(SynthesisError, match="empty"):
        synthesize_hole(image, hole, image, np.zeros_like(region))
    tiny = np.zeros_like(region)
    tiny[0, 0] = True  # a corner pixel: no whole patch fits
    with pytest.raises(SynthesisError, match="fewer than"):
        synthesize_hole(image, hole, image, tiny)


def test_patch_distance_is_zero_for_the_matching_patch_and_voting_reproduces_an_exact_field():
    texture = _periodic(64).astype(np.float32)
    known = np.ones((64, 64), bool)
    known[20:40, 20:40] = False
    level = Level.build(texture, known, texture, np.ones((64, 64), bool), 3)
    patches = target_patches(level, 3)
    inside = (level.ys >= 3) & (level.ys < 61) & (level.xs >= 4) & (level.xs < 61)
    ys, xs = level.ys[inside], level.xs[inside]
    d = patch_distances(patches[inside], level.bank, level.rows[ys * 64 + xs])
    assert np.allclose(d, 0.0)  # every patch against itself
    assert (patch_distances(patches[inside], level.bank, level.rows[ys * 64 + xs - 1]) > 1.0).all()
    level.ny, level.nx = np.clip(level.ys, 3, 60), np.clip(level.xs, 3, 60)
    level.cost = np.zeros(len(level.ys))
    assert np.allclose(vote(level, 3)[~known], texture[~known], atol=1e-3)


def test_a_reference_at_another_scale_is_resized_to_the_images():
    truth = _periodic()
    hole = _hole()
    image = truth.copy()
    image[hole] = 0
    yy, xx = np.mgrid[0:240, 0:240] / 1.5  # the same texture seen 1.5x larger
    big = np.stack([128 + 60 * np.sin(xx * 2 * np.pi / 12), 128 + 60 * np.sin(yy * 2 * np.pi / 9),
                    128 + 40 * np.sin((xx + yy) * 2 * np.pi / 16)], -1).astype(np.uint8)
    region = np.zeros((240, 240), bool)
    region[30:120, 30:120] = True
    t, l, b, r = synthesize_hole(image, hole, big, region, scale=1.5).box
    right = synthesize_hole(image, hole, big, region, scale=1.5, structure_sigma=0).pixels
    wrong = synthesize_hole(image, hole, big, region, scale=1.0, structure_sigma=0).pixels
    sub = hole[t:b, l:r]
    assert _mae(right, truth[t:b, l:r], sub) < 0.6 * _mae(wrong, truth[t:b, l:r], sub)
    with pytest.raises(ValueError, match="scale"):
        synthesize_hole(image, hole, big, region, scale=0.0)


def test_levels_follow_the_sizes():
    assert pyramid_levels(_hole(box=(0, 0, 10, 10)), (200, 200)) == 1
    assert pyramid_levels(_hole(box=(0, 0, 120, 120)), (400, 400)) == 4


def test_a_large_hole_and_a_large_region_stay_within_bounds(monkeypatch):
    monkeypatch.setattr("refalign.transfer.synthesis.MAX_HOLE_SIDE", 40)  # small bounds, so the test is quick
    monkeypatch.setattr("refalign.transfer.synthesis.MAX_SOURCE_SIDE", 64)
    truth = _periodic(200)
    hole = _hole(200, (70, 70, 130, 130))  # longer than MAX_HOLE_SIDE: synthesised at a reduced scale
    image = truth.copy()
    image[hole] = 0
    region = np.ones((200, 200), bool)  # larger than MAX_SOURCE_SIDE: read around its centre only
    syn = synthesize_hole(image, hole, _periodic(200, shift=(4, 1)), region, seed=0)
    out = image.copy()
    paste_hole(out, syn.pixels, hole, syn.box)
    assert (out[~hole] == image[~hole]).all()
    assert _mae(out, truth, hole) < 0.8 * _mae(telea_fill(image, hole), truth, hole)
