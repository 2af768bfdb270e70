"""Repair from the reference's own pixels (refalign.transfer): local registration, scoring, full-resolution source."""

import cv2
import numpy as np
import pytest

from conftest import textured_image

from refalign.transfer.register import register_hole, score_warp
from refalign.transfer.source import paste_hole, transfer_source


def _scene(seed=0, size=320):
    """A textured object (random blobs and letters) on a plain background."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 235, np.uint8)
    cv2.rectangle(img, (40, 40), (size - 40, size - 40), (60, 90, 150), -1)
    for _ in range(60):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.circle(img, tuple(int(v) for v in rng.integers(50, size - 50, 2)), int(rng.integers(3, 14)), c, -1)
    for i in range(6):
        cv2.putText(img, "REFALIGN"[i:i + 3], (60 + 30 * i, 120 + 25 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (250, 240, 200), 2)
    return cv2.GaussianBlur(img, (3, 3), 0)


def _warped_reference(target, seed=1):
    rng = np.random.default_rng(seed)
    h, w = target.shape[:2]
    a = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-10, 10)), float(rng.uniform(0.85, 1.0)))
    H = np.vstack([a, [0, 0, 1]])  # image → reference
    ref = cv2.warpPerspective(target, H, (w, h), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
    ref = np.clip(255 * (ref / 255.0) ** 1.2 * [1.05, 0.95, 1.0], 0, 255).astype(np.uint8)
    return ref, H


def _hole(shape, centre=(150, 160), r=18):
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, centre, (r, int(r * 0.7)), 20, 0, 360, 1, -1)
    return m.astype(bool)


def _psnr(a, b, m):
    d = a[m].astype(float) - b[m].astype(float)
    return 10 * np.log10(255 ** 2 / max((d ** 2).mean(), 1e-9))


def test_local_registration_recovers_the_warp_and_the_source_matches_the_truth():
    target = _scene()
    ref, H = _warped_reference(target)
    hole = _hole(target.shape[:2])
    image = target.copy()
    image[hole] = (255, 0, 255)  # the artifact
    reg = register_hole(image, hole, ref)
    assert reg.ok, reg.reason
    # the model maps the hole's centre where the true warp does (within a pixel or two)
    c = np.float32([[160, 150, 1]])
    p, q = (reg.matrix @ c.T).ravel(), (H @ c.T).ravel()
    assert np.linalg.norm(p[:2] / p[2] - q[:2] / q[2]) < 2.0
    src, valid, box = transfer_source(image, hole, ref, reg.matrix, reg.best.score.colour)
    out = image.copy()
    pasted = paste_hole(out, src, hole, box, valid)
    assert pasted.sum() >= 0.98 * hole.sum() and not (pasted & ~hole).any()
    assert _psnr(out, target, hole) > 28
    assert (out[~hole] == image[~hole]).all()  # outside the hole: bit-identical


def test_an_unrelated_reference_is_refused_with_a_reason():
    target = _scene(0)
    other = textured_image(seed=9)  # another textured object: nothing of the hole's surroundings is in it
    hole = _hole(target.shape[:2])
    reg = register_hole(target, hole, other)
    assert not reg.ok
    assert reg.reason


def test_scoring_prefers_the_true_model():
    target = _scene()
    ref, H = _warped_reference(target)
    hole = _hole(target.shape[:2])
    right = score_warp(target, hole, ref, H)
    shifted = score_warp(target, hole, ref, np.array([[1, 0, 9.0], [0, 1, -7.0], [0, 0, 1]]) @ H)
    assert right.passes and right.gradient_correlation > 0.8
    assert shifted.gradient_correlation < right.gradient_correlation - 0.3


@pytest.mark.parametrize("seed", range(20))
def test_paste_hole_never_writes_outside_the_hole_and_refuses_non_finite(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    hole = rng.random((64, 64)) < rng.uniform(0.01, 0.5)
    box = (int(rng.integers(0, 20)), int(rng.integers(0, 20)), int(rng.integers(40, 65)), int(rng.integers(40, 65)))
    h, w = box[2] - box[0], box[3] - box[1]
    source = rng.normal(128, 300, (h, w, 3)).astype(np.float32)  # far out of range: clipped, never outside
    out = image.copy()
    paste_hole(out, source, hole, box)
    assert (out[~hole] == image[~hole]).all()
    bad = source.copy()
    bad[rng.integers(0, h, 50), rng.integers(0, w, 50)] = rng.choice([np.nan, np.inf, -np.inf])
    sel = hole[box[0]:box[2], box[1]:box[3]]
    if not np.isfinite(bad[sel]).all():
        before = out.copy()
        with pytest.raises(ValueError, match="non-finite"):
            paste_hole(out, bad, hole, box)
        assert (out == before).all()
