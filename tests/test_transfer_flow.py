"""The dense-flow correction of a transferred source (refalign.transfer.flow): it moves a paste that the ring shows
to be off, and leaves a right one exactly as it was."""

import cv2
import numpy as np
import pytest

from test_transfer import _hole, _psnr, _scene

from refalign.transfer.flow import (
    FLOW_MAX_CORRELATION, FLOW_MIN_SHIFT, flow_confidence, flow_correct, min_shift, ring_flow, spread_flow,
)
from refalign.transfer.register import colour_box


def _shifted_source(target, hole, dx, dy):
    """The box's source as a registration ``(dx, dy)`` pixels off would give it: ``source(x) = target(x − d)``."""
    t, l, b, r = box = colour_box(hole)
    source = np.roll(target, (dy, dx), axis=(0, 1))[t:b, l:r].astype(np.float32)
    return source, np.ones(source.shape[:2], bool), box


#: a ring correlation of a model that explains the ring only in part (accepted cross-view windows: 0.51–0.78)
PART = 0.6


@pytest.fixture(scope="module")
def scene():
    target = _scene(size=320)
    hole = _hole(target.shape[:2], centre=(160, 160), r=26)
    image = target.copy()
    image[hole] = (255, 0, 255)
    return target, image, hole


def test_a_paste_three_pixels_off_is_moved_back(scene):
    target, image, hole = scene
    source, valid, box = _shifted_source(target, hole, 3, -2)
    moved, still, correction = flow_correct(image, hole, source, valid, box, PART)
    assert correction.applied and 2.5 < correction.shift < 4.5, correction
    t, l, b, r = box
    field = ring_flow(image, hole, source, box)[hole[t:b, l:r]].mean(0)
    assert np.allclose(field, (3, -2), atol=0.8), field  # image(x) = source(x + d): d = the registration's offset
    sub = hole[t:b, l:r] & still
    before, after = _psnr(source, target[t:b, l:r], sub), _psnr(moved, target[t:b, l:r], sub)
    assert after > before + 6, (before, after)
    assert "moved by dense flow" in correction.describe()


def test_a_right_paste_is_left_bit_for_bit(scene):
    target, image, hole = scene
    source, valid, box = _shifted_source(target, hole, 0, 0)
    moved, still, correction = flow_correct(image, hole, source, valid, box, PART)
    assert not correction.applied and correction.shift < 0.5 * FLOW_MIN_SHIFT
    assert moved is source and still is valid
    assert "not applied" in correction.describe()


def test_the_flow_is_measured_on_one_source_and_moves_another(scene):
    """``measured_on``: the geometry comes from the paste as measured, the pixels moved are the ones given (the
    registered paste measures its flow before the colour-space correction and moves the corrected pixels)."""
    target, image, hole = scene
    source, valid, box = _shifted_source(target, hole, 3, -2)
    right, _, _ = _shifted_source(target, hole, 0, 0)
    moved, _, correction = flow_correct(image, hole, source, valid, box, PART, measured_on=right)
    assert not correction.applied and moved is source  # measured on a right paste: nothing to move
    recoloured = source * 0.8
    moved, _, correction = flow_correct(image, hole, recoloured, valid, box, PART, measured_on=source)
    assert correction.applied
    plain, _, _ = flow_correct(image, hole, source, valid, box, PART)
    assert np.allclose(moved, plain * 0.8, atol=1e-3)  # the same field, applied to the pixels given


def test_moved_pixels_next_to_the_warps_edge_are_no_longer_valid(scene):
    target, image, hole = scene
    source, valid, box = _shifted_source(target, hole, 4, 0)
    t, l, b, r = box
    cols = np.nonzero(hole[t:b, l:r].any(0))[0]
    edge = cols[len(cols) // 2]
    valid[:, edge:] = False  # the reference ends in the hole's right half
    _, still, correction = flow_correct(image, hole, source, valid, box, PART)
    assert correction.applied
    # inside the hole d points right (+4 px): a pixel within 4 px left of the edge now reads beyond it
    sub = hole[t:b, l:r]
    near, far = sub.copy(), sub.copy()
    near[:, : edge - 3], far[:, edge - 6:] = False, False
    assert not still[near].any() and still[far].all()


def test_a_model_that_explains_the_ring_is_not_moved_even_when_the_flow_says_so(scene):
    target, image, hole = scene
    source, valid, box = _shifted_source(target, hole, 3, -2)
    moved, still, correction = flow_correct(image, hole, source, valid, box, FLOW_MAX_CORRELATION)
    assert moved is source and still is valid
    assert correction.shift is None and not correction.applied
    assert "the model explains the ring" in correction.describe()


def test_the_minimum_shift_follows_the_image_size():
    assert min_shift((512, 384)) == FLOW_MIN_SHIFT == min_shift((200, 200))
    assert min_shift((768, 1024)) == 2 * FLOW_MIN_SHIFT


def test_a_part_of_the_ring_whose_flow_disagrees_drops_out_of_the_field():
    """A real label (session 23): part of the ring around it (a flat, shadowed fold of fabric) got DIS flows of tens
    of pixels, and averaged with the rest they moved the label 12 px off its place. The spread reweights each ring
    pixel by its flow's deviation from the field, so a minority that disagrees drops out."""
    hole = np.zeros((200, 200), bool)
    hole[80:120, 80:120] = True
    ring = ~hole & (np.abs(np.mgrid[0:200, 0:200] - 100).max(0) < 70)
    flow = np.zeros((200, 200, 2), np.float32)
    flow[ring] = (3.0, -2.0)
    flow[ring & (np.mgrid[0:200, 0:200][1] < 60)] = (40.0, 16.0)  # the ring's left part
    field = spread_flow(flow, ring, sigma=20.0)[hole].mean(0)
    assert np.allclose(field, (3, -2), atol=0.3), field
    plain = spread_flow(flow, ring, sigma=20.0, steps=0)[hole].mean(0)  # normalised convolution alone
    assert np.linalg.norm(plain - (3, -2)) > 2.0, plain


def test_flow_confidence_is_nil_where_a_shift_cannot_be_seen(scene):
    """Flat areas and straight edges (the aperture problem) get no weight; texture does."""
    target, _, _ = scene
    flat = np.full((64, 64), 120, np.uint8)
    ramp = np.repeat(np.linspace(60, 180, 64)[None, :], 64, 0).astype(np.uint8)
    edge = flat.copy()
    edge[:, 32:] = 200
    texture = cv2.cvtColor(np.ascontiguousarray(target[60:260, 60:260]), cv2.COLOR_RGB2GRAY)
    assert flow_confidence(flat).max() == 0.0
    assert np.median(flow_confidence(ramp)) < 1e-3 and np.median(flow_confidence(edge)) < 1e-3
    assert np.median(flow_confidence(texture)) > 0.1
