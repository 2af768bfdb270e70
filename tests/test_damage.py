"""What the damaged pixels say (refalign.transfer.damage): an artifact continuous with its surroundings looks mild,
one that breaks from them does not."""

import cv2
import numpy as np
import pytest

from conftest import textured_image
from refalign.transfer.damage import MILD_EDGE_CONTRAST, edge_contrast, looks_mild


def _hole(shape=(320, 320), centre=(160, 150), axes=(26, 18)):
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, centre, axes, 30, 0, 360, 1, -1)
    return m.astype(bool)


def _damaged(kind, seed=0):
    img = textured_image(seed=seed)
    hole = _hole()
    out = img.copy()
    if kind == "blurred":
        out[hole] = cv2.GaussianBlur(img, (0, 0), 4)[hole]
    elif kind == "pasted":  # content from elsewhere in the image
        out[hole] = np.roll(img, (120, 90), axis=(0, 1))[hole]
    return out, hole, img


@pytest.mark.parametrize("seed", range(3))
def test_a_blurred_artifact_looks_mild_and_content_from_elsewhere_does_not(seed):
    image, hole, _ = _damaged("blurred", seed)
    assert looks_mild(image, hole), edge_contrast(image, hole)
    image, hole, _ = _damaged("pasted", seed)
    assert not looks_mild(image, hole), edge_contrast(image, hole)


def test_an_undamaged_region_has_an_edge_contrast_near_one():
    img = textured_image(seed=4)
    assert 0.6 < edge_contrast(img, _hole()) < 1.4 < MILD_EDGE_CONTRAST


def test_a_flat_ring_does_not_blow_up_faint_edges():
    img = np.full((128, 128, 3), 120, np.uint8)
    hole = _hole((128, 128), (64, 64), (20, 14))
    img[hole] = 122  # two grey levels: invisible, mild
    assert looks_mild(img, hole)


def test_edge_contrast_refuses_an_empty_or_full_hole():
    img = textured_image(seed=0)
    with pytest.raises(ValueError):
        edge_contrast(img, np.zeros(img.shape[:2], bool))
    with pytest.raises(ValueError):
        edge_contrast(img, np.ones(img.shape[:2], bool))
