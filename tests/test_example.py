"""The built-in example and the `refalign example` command."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from refalign.cli import app
from refalign.mask_ops import dilate
from refalign.examples import EXAMPLE_SEED, assets_dir, damage_print, make_example, photo_example, print_mask

runner = CliRunner()


def test_example_is_deterministic_and_only_changes_the_mask():
    a, b = make_example(), make_example()
    assert np.array_equal(a.image, b.image) and np.array_equal(a.reference, b.reference)
    assert (a.image != a.target).any(axis=2)[~a.mask].sum() == 0
    assert (a.image != a.target).any(axis=2)[a.mask].mean() > 0.3
    assert 0.005 < a.mask.mean() < 0.05


def test_cli_example_writes_every_picture_and_refuses_overwrite(dummy_checkpoint, tmp_path):
    out = tmp_path / "ex"
    args = ["example", "--kind", "procedural", "-o", str(out), "--model", str(dummy_checkpoint), "--steps", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("image.png", "mask.png", "reference.png", "refined.png", "overlay.png", "before_after.png"):
        assert (out / name).is_file(), name
    image = np.asarray(Image.open(out / "image.png"))
    refined = np.asarray(Image.open(out / "refined.png"))
    mask = np.asarray(Image.open(out / "mask.png")) > 127
    changed = (image != refined).any(axis=2)
    assert changed[mask].any()
    assert "PSNR" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output


# ------------------------------------------------------------------------------------- the photo pair (default)


def test_photo_example_damages_only_the_print_of_one_real_photo():
    a, b = photo_example(), photo_example()
    assert np.array_equal(a.image, b.image)  # deterministic
    assert a.image.shape == a.target.shape == a.reference.shape == (640, 640, 3)
    changed = (a.image != a.target).any(axis=2)
    assert not changed[~a.mask].any()  # outside the mask: the photo as shipped
    assert changed[a.mask].mean() > 0.9
    assert 0.002 < a.mask.mean() < 0.01  # a small artifact, as generators leave
    assert np.abs(a.reference.astype(int) - a.target.astype(int)).mean() > 20  # another photo, not a copy
    # the damage is a smear: the label's fine detail (Laplacian energy) drops inside the mask
    import cv2

    lap = lambda im: np.abs(cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_32F))[a.mask].mean()
    assert lap(a.image) < 0.7 * lap(a.target)


def test_damage_print_keeps_outside_pixels_and_follows_the_seed():
    img = np.random.default_rng(1).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    mask = print_mask((96, 96), centre=(48, 48), axes=(20, 12))
    out1 = damage_print(img, mask, np.random.default_rng(EXAMPLE_SEED))
    out2 = damage_print(img, mask, np.random.default_rng(EXAMPLE_SEED))
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_array_equal(out1[~mask], img[~mask])


def test_shipped_photos_are_small_and_credited():
    folder = assets_dir()
    for name in ("backpack-02.jpg", "backpack-03.jpg"):
        path = folder / name
        assert path.stat().st_size < 150_000, name
        assert 512 <= max(Image.open(path).size) <= 640, name
    credits = (folder / "CREDITS.md").read_text()
    for words in ("https://unsplash.com/photos/KGq78h_aO2E", "https://unsplash.com/photos/H4pgFraBoeg",
                  "Laura Chouette", "Unsplash License", "CC BY 4.0", "https://github.com/google/dreambooth"):
        assert words in credits, words


def test_the_two_photos_share_the_label_for_feature_matching():
    """Why this pair: SIFT + RANSAC around the label register the two photos (not near-duplicates: they differ)."""
    import cv2

    ex = photo_example()
    grey = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)
    near_a, near_b = np.zeros((640, 640), np.uint8), np.zeros((640, 640), np.uint8)
    cv2.circle(near_a, (466, 511), 110, 255, -1)  # around the label on each photo, (x, y)
    cv2.circle(near_b, (532, 463), 130, 255, -1)
    sift = cv2.SIFT_create()
    ka, da = sift.detectAndCompute(grey(ex.target), near_a)
    kb, db = sift.detectAndCompute(grey(ex.reference), near_b)
    good = [m for m, n in cv2.BFMatcher().knnMatch(da, db, k=2) if m.distance < 0.8 * n.distance]
    pa = np.float32([ka[m.queryIdx].pt for m in good])
    pb = np.float32([kb[m.trainIdx].pt for m in good])
    H, inliers = cv2.findHomography(pa, pb, cv2.RANSAC, 4.0)
    assert int(inliers.sum()) >= 15
    label = cv2.perspectiveTransform(np.float32([[[466, 511]]]), H)[0, 0]
    assert np.hypot(*(label - (532, 463))) < 12  # the label lands on the label of the other photo


def test_cli_example_runs_the_photo_pair_by_default_with_the_shipped_model(tmp_path, one_thread):
    out = tmp_path / "ex"
    result = runner.invoke(app, ["example", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "example (photo)" in result.output and "refined 1 window" in result.output
    import re

    scores = {n.strip(): float(p) for n, p in re.findall(r"^  (.+?) +PSNR +([\d.]+) dB", result.output, re.M)}
    assert set(scores) == {"doing nothing", "OpenCV Telea", "refalign"}, result.output
    # the registered label, pasted as warped (21.7 dB; bent by a dense flow it misread, 18.9: below the input)
    assert scores["refalign"] > scores["doing nothing"] + 1.5 > scores["OpenCV Telea"], result.output
    ex = photo_example()
    refined = np.asarray(Image.open(out / "refined.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "image.png")), ex.image)
    changed = (refined != ex.image).any(axis=2)
    assert changed[ex.mask].any() and not changed[~ex.mask].any()  # the transfer writes inside the mask only
    for name in ("overlay.png", "token_map.png", "before_after.png", "zoom.png", "reference.png", "target.png"):
        assert (out / name).is_file(), name
    # the repair is the other photo's own label: registered, and its print's texture is back (detail ratio = mean
    # |Laplacian| in the mask, over the undamaged photo's: the smeared input has 0.19)
    assert "the reference's own pixels" in result.output and "confidence" in result.output

    def detail(x):
        grey = np.asarray(Image.fromarray(x).convert("L"), np.float32)
        lap = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])
        return lap[ex.mask[1:-1, 1:-1]].mean()

    assert detail(ex.image) < 0.3 * detail(ex.target)
    assert 0.6 * detail(ex.target) < detail(refined) < 1.5 * detail(ex.target)
    # refusing the paste, as a report line offers: the label registers still, and the region gets `auto`'s choice
    refused = runner.invoke(app, ["example", "-o", str(tmp_path / "no-paste"), "--no-paste"])
    assert refused.exit_code == 0, refused.output
    assert "not the registered reference's pixels (--no-paste; registered:" in refused.output, refused.output
    other = np.asarray(Image.open(tmp_path / "no-paste" / "refined.png"))
    assert (other != refined).any(axis=2)[ex.mask].any() and (other == ex.image)[~ex.mask].all()


def test_cli_example_refuses_an_unknown_kind(tmp_path, monkeypatch):
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: pytest.fail("model loaded"))
    result = runner.invoke(app, ["example", "--kind", "painting", "-o", str(tmp_path / "ex")])
    assert result.exit_code == 2 and "--kind painting: use photo or procedural" in result.output
