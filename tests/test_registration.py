"""Registration (SIFT + RANSAC homography) and artifact detection by disagreement with the reference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from refalign.detect import DetectionError, detect_artifacts, shift_tolerant_distance
from refalign.registration import register, transfer_mask, warp_reference

from conftest import textured_image as _texture, textured_warp_pair as _warp_pair


def test_register_recovers_known_homography():
    img, ref, P = _warp_pair()
    reg = register(img, ref)
    assert reg.ok, reg.reason
    pts = np.float32([[50, 60], [200, 220], [160, 90]]).reshape(-1, 1, 2)
    est = cv2.perspectiveTransform(pts, reg.homography)
    true = cv2.perspectiveTransform(pts, P)
    assert np.abs(est - true).max() < 1.5


def test_register_reports_failure_on_unrelated_images():
    reg = register(np.full((100, 100, 3), 128, np.uint8), _texture())
    assert not reg.ok and "features" in reg.reason


def test_transfer_mask_and_warp_agree_with_truth():
    img, ref, P = _warp_pair()
    mask = np.zeros(img.shape[:2], bool)
    mask[100:140, 120:170] = True
    moved = transfer_mask(mask, P, ref.shape[:2])
    truth = cv2.warpPerspective(mask.astype(np.uint8), P, (ref.shape[1], ref.shape[0]), flags=cv2.INTER_NEAREST) > 0
    assert (moved & truth).sum() / (moved | truth).sum() > 0.9
    warped, valid = warp_reference(ref, P, img.shape[:2])
    inner = valid.copy()
    inner[:20], inner[-20:], inner[:, :20], inner[:, -20:] = False, False, False, False
    assert np.abs(warped.astype(int) - img.astype(int))[inner].mean() < 12


def test_shift_tolerant_distance_ignores_small_shifts():
    a = _texture(64).astype(np.float32)
    b = np.roll(a, 1, axis=1)
    assert shift_tolerant_distance(a, b, 1)[:, 2:-2].max() < 1e-4
    assert shift_tolerant_distance(a, b, 0).mean() > 1


def test_detect_finds_planted_artifact():
    img, ref, _ = _warp_pair(seed=1)
    ref = np.clip(ref.astype(np.float32) * 1.1 + 8, 0, 255).astype(np.uint8)  # lighting change
    art = img.copy()
    yy, xx = np.mgrid[0:320, 0:320]
    mask = (yy - 170) ** 2 + (xx - 150) ** 2 < 22**2
    art[mask] = np.roll(img, (60, 60), axis=(0, 1))[mask]
    det = detect_artifacts(art, ref)
    iou = (det.mask & mask).sum() / (det.mask | mask).sum()
    assert iou > 0.5, iou


def test_detect_refuses_unregistrable_pair():
    with pytest.raises(DetectionError, match="paint the mask yourself"):
        detect_artifacts(np.full((80, 80, 3), 100, np.uint8), _texture(80))


def test_cli_detect_writes_mask_and_refuses_overwrite(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from refalign.cli import app

    img, ref, _ = _warp_pair(seed=1)
    art = img.copy()
    art[150:190, 130:170] = np.roll(img, (60, 60), axis=(0, 1))[150:190, 130:170]
    Image.fromarray(art).save(tmp_path / "a.png")
    Image.fromarray(ref).save(tmp_path / "r.png")
    runner = CliRunner()
    args = ["detect", str(tmp_path / "a.png"), "-r", str(tmp_path / "r.png"), "-o", str(tmp_path / "m.png")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    found = np.asarray(Image.open(tmp_path / "m.png")) > 127
    assert found[150:190, 130:170].mean() > 0.5 and found.mean() < 0.1
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output
