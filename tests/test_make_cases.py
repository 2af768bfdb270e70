"""make-cases: synthetic artifacts on real-looking photos, both reference kinds, determinism, input errors."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import DREAMBOOTH, synthetic_scene, textured_image
from refalign.errors import InputError, OutputError
from refalign.eval import synth
from refalign.eval.cases import list_cases, read_case
from refalign.eval.make_cases import (CROSSVIEW_MIN_SHOWN, MakeCasesConfig, content_shown, fit_size, is_near_duplicate,
                                      make_cases, part_mask, same_picture)
from refalign.files import load_image


def _photo(seed: int, size: int = 160) -> np.ndarray:
    s = synthetic_scene(size, seed)
    img = s["image"].copy()
    rng = np.random.default_rng(seed)
    for _ in range(12):  # printed detail on the object
        y, x = rng.integers(size // 3, 2 * size // 3, 2)
        cv2.putText(img, "AB", (int(x) - 10, int(y)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (20, 20, 20), 1)
    return img


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for obj, seeds in {"toy": (1, 2), "mug": (3, 4)}.items():
        (root / obj).mkdir(parents=True)
        for i, s in enumerate(seeds):  # the second view is turned by 90°, so it is no near-duplicate
            Image.fromarray(np.ascontiguousarray(np.rot90(_photo(s), i))).save(root / obj / f"{i:02d}.jpg", quality=95)
    # the toy photos come with real object masks; the mug's come from GrabCut
    obj = synthetic_scene(160, 0)["object_mask"]
    for i in range(2):
        Image.fromarray(np.rot90(obj, i).astype(np.uint8) * 255).save(root / "toy" / f"{i:02d}.mask.png")
    return root


@pytest.mark.parametrize("kind", synth.KNOWN_KINDS)
def test_each_artifact_changes_only_the_mask(kind):
    s = synthetic_scene(128, 0)
    rng = np.random.default_rng(0)
    mask = synth.free_form_mask((128, 128), (64, 64), 14, rng) & s["object_mask"]
    out = synth.apply_artifact(kind, s["image"], mask, rng)
    diff = np.abs(out.astype(int) - s["image"]).sum(axis=2)
    assert (diff[~mask] == 0).all()
    assert diff[mask].mean() > 5, kind


def test_a_smear_keeps_the_colours_and_loses_the_structure():
    """``smeared``: the mean colour stays near the truth's and the detail is gone — unlike content from elsewhere —
    and it is asked for by name only (the default kinds, and so existing case sets, are unchanged)."""
    s = synthetic_scene(128, 0)
    mask = synth.free_form_mask((128, 128), (64, 64), 20, np.random.default_rng(1)) & s["object_mask"]
    inner = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # away from the seam at the mask's edge
    grey = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)  # noqa: E731
    detail = lambda im: np.abs(cv2.Laplacian(grey(im), cv2.CV_32F))[inner].mean()  # noqa: E731
    shift = lambda im: np.abs(im[mask].mean(0) - s["image"][mask].mean(0)).max()  # noqa: E731
    smeared, elsewhere = (synth.apply_artifact(k, s["image"], mask, np.random.default_rng(0))
                          for k in ("smeared", "hallucinated"))
    assert shift(smeared) < 10 < shift(elsewhere)
    assert detail(smeared) < 0.3 * detail(s["image"])
    assert "smeared" not in synth.ARTIFACT_KINDS and MakeCasesConfig().kinds == synth.ARTIFACT_KINDS


def test_free_form_mask_is_irregular_and_small():
    m = synth.free_form_mask((256, 256), (128, 128), 25, np.random.default_rng(3))
    assert 0.002 < m.mean() < 0.04
    area, hull = m.sum(), cv2.contourArea(cv2.convexHull(cv2.findNonZero(m.astype(np.uint8))))
    assert area < 0.97 * hull  # not a convex blob


def test_make_cases_layout_and_contents(photos, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="refalign.eval.make_cases"):
        written = make_cases(photos, tmp_path / "cases", MakeCasesConfig(seed=0, per_photo=2, size=128))
    assert len(written) == 8 and list_cases(tmp_path / "cases") == sorted(written)
    assert any("GrabCut" in r.message and "2 of 4" in r.message for r in caplog.records)
    kinds = set()
    for path in written:
        case = read_case(path)
        meta = case.meta
        kinds.add((meta["reference_kind"], meta["artifact_kind"]))
        assert meta["seed"] == 0 and meta["source_photo"].endswith(".jpg")
        assert meta["object_mask_source"] == ("file" if meta["object"] == "toy" else "grabcut")
        assert max(case.image.shape[:2]) == 128 and case.target.shape == case.image.shape
        changed = np.abs(case.image.astype(int) - case.target).sum(axis=2) > 0
        assert not changed[~case.mask].any() and changed[case.mask].any()
        assert case.mask.mean() < 0.06
        if meta["reference_kind"] == "warp":
            hom = np.array(meta["homography"])
            pushed = cv2.warpPerspective(case.mask.astype(np.float32), hom, case.reference.shape[1::-1]) >= 0.5
            assert (pushed == case.correspondence).all()
            assert meta["reference_photo"] == meta["source_photo"]
        else:
            assert case.correspondence is None and meta["reference_photo"] != meta["source_photo"]
            assert case.reference_mask is not None
    assert {k for k, _ in kinds} == {"warp", "multiview"} and len({a for _, a in kinds}) >= 4


def test_make_cases_is_deterministic(photos, tmp_path):
    cfg = MakeCasesConfig(seed=5, per_photo=1, size=96)
    a = make_cases(photos, tmp_path / "a", cfg)
    b = make_cases(photos, tmp_path / "b", cfg)
    c = make_cases(photos, tmp_path / "c", MakeCasesConfig(seed=6, per_photo=1, size=96))
    for pa, pb in zip(a, b):
        for f in ("image.png", "mask.png", "reference.png", "meta.json"):
            assert (pa / f).read_bytes() == (pb / f).read_bytes()
    assert any((pa / "mask.png").read_bytes() != (pc / "mask.png").read_bytes() for pa, pc in zip(a, c))


def test_duplicate_pairs_are_not_multiview_references(photos, tmp_path):
    cfg = MakeCasesConfig(seed=0, size=96, reference_kinds=("multiview",),
                          avoid_pairs=frozenset({("toy", "00", "01")}))
    for path in make_cases(photos, tmp_path / "cases", cfg):
        meta = json.loads((path / "meta.json").read_text())
        assert meta["reference_kind"] == ("warp" if meta["object"] == "toy" else "multiview")
    img = _photo(1)
    assert is_near_duplicate(img, img[:, ::-1].copy()) and not is_near_duplicate(img, np.rot90(_photo(3)).copy())


def test_a_crop_of_the_same_picture_is_a_duplicate_and_a_view_change_is_not():
    img = textured_image(seed=4, size=320)
    crop = cv2.resize(img[40:280, 60:300], (300, 300), interpolation=cv2.INTER_AREA)  # cropped and rescaled
    assert same_picture(img, crop) and is_near_duplicate(img, crop)
    assert is_near_duplicate(img, np.ascontiguousarray(crop[:, ::-1]))  # ... and mirrored
    turned = cv2.warpPerspective(img, np.array([[1.0, 0.08, -10], [0.05, 0.95, 8], [4e-4, 1e-4, 1.0]]), (320, 320))
    shaded = np.clip(turned.astype(np.float32) * np.linspace(0.7, 1.2, 320)[None, :, None], 0, 255).astype(np.uint8)
    assert not same_picture(img, shaded)  # another view under other light: the pixels differ
    assert not is_near_duplicate(img, textured_image(seed=5, size=320))


@pytest.mark.skipif(not (DREAMBOOTH / "cat" / "02.jpg").is_file(), reason="development photos not present")
def test_the_development_sets_one_picture_pairs_are_found():
    load = lambda o, s: fit_size(load_image(DREAMBOOTH / o / f"{s}.jpg"), 512)  # noqa: E731
    assert is_near_duplicate(load("cat", "02"), load("cat", "03"))  # a crop
    assert is_near_duplicate(load("dog5", "02"), load("dog5", "03"))  # a mirror image
    assert not is_near_duplicate(load("dog", "02"), load("dog", "03"))  # two shots against one wall
    assert not is_near_duplicate(load("cat", "01"), load("cat", "02"))


def test_bad_inputs(photos, tmp_path):
    with pytest.raises(InputError, match="no such photo folder"):
        make_cases(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no photos"):
        make_cases(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(InputError, match="unknown artifact kind 'blur'"):
        make_cases(photos, tmp_path / "out", MakeCasesConfig(kinds=("blur",)))
    make_cases(photos, tmp_path / "out", MakeCasesConfig(size=96))
    with pytest.raises(OutputError, match="already holds cases"):
        make_cases(photos, tmp_path / "out", MakeCasesConfig(size=96))


def test_cli_make_cases(photos, tmp_path):
    from typer.testing import CliRunner

    from refalign.cli import app

    res = CliRunner().invoke(app, ["make-cases", str(photos), "--out", str(tmp_path / "c"), "--seed", "1",
                                   "--size", "96", "--kinds", "shuffled,colour_drift"])
    assert res.exit_code == 0, res.output
    assert {read_case(p).artifact_kind for p in list_cases(tmp_path / "c")} == {"shuffled", "colour_drift"}
    res = CliRunner().invoke(app, ["make-cases", str(tmp_path / "missing"), "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "no such photo folder" in res.output and "Traceback" not in res.output


@pytest.mark.skipif(not DREAMBOOTH.is_dir(), reason="shared dreambooth-dev photos not present")
def test_real_photos(tmp_path):
    root = tmp_path / "photos" / "cat"
    root.mkdir(parents=True)
    for stem in ("01", "02", "03"):  # 03 is a crop of 02: neither may reference the other
        (root / f"{stem}.jpg").symlink_to(DREAMBOOTH / "cat" / f"{stem}.jpg")
    cfg = MakeCasesConfig(seed=0, per_photo=2, size=256, reference_kinds=("multiview",))
    cases = make_cases(tmp_path / "photos", tmp_path / "cases", cfg)
    assert len(cases) == 6
    for path in cases:
        case = read_case(path)
        assert {case.meta["source_photo"][-6:-4], case.meta["reference_photo"][-6:-4]} != {"02", "03"}
        assert case.mask.mean() < 0.05 and (case.image != case.target).any(axis=2)[case.mask].any()


def _textured_photo(seed: int, size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A flat object covered in random print (rich in local features) on a plain background, and its mask."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 230, np.uint8)
    obj = np.zeros((size, size), bool)
    obj[20:180, 20:180] = True
    img[obj] = (180, 140, 90)
    for _ in range(60):
        y, x = rng.integers(30, 170, 2)
        text = "".join(rng.choice(list("ABCDEFGHKMNPRSTXYZ"), 2))
        colour = tuple(int(c) for c in rng.integers(0, 120, 3))
        cv2.putText(img, text, (int(x) - 8, int(y) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    return img, obj


def test_crossview_cases_put_the_artifact_on_content_the_other_photo_shows(tmp_path):
    root = tmp_path / "photos" / "box"
    root.mkdir(parents=True)
    img, obj = _textured_photo(0)
    hom = np.array([[0.9, 0.12, 14.0], [-0.1, 0.92, 12.0], [2e-4, 1e-4, 1.0]])  # the second view
    views = [(img, obj), (cv2.warpPerspective(img, hom, (200, 200), borderValue=(230, 230, 230)),
                          cv2.warpPerspective(obj.astype(np.uint8), hom, (200, 200)) > 0)]
    for i, (v, m) in enumerate(views):
        Image.fromarray(v).save(root / f"{i:02d}.png")
        Image.fromarray(m.astype(np.uint8) * 255).save(root / f"{i:02d}.mask.png")
    cfg = MakeCasesConfig(seed=0, size=200, reference_kinds=("crossview",))
    written = make_cases(tmp_path / "photos", tmp_path / "cases", cfg)
    assert written, "no crossview case was made"
    for path in written:
        case = read_case(path)
        meta = case.meta
        assert meta["reference_kind"] == "crossview" and meta["reference_photo"] != meta["source_photo"]
        assert 0.015 <= case.mask.mean() <= 0.06 and case.correspondence is None
        assert meta["photos"] == "photos" and meta["matched_inliers"] >= 8
        # the estimated local homography agrees with the true one around the artifact
        est = np.asarray(meta["local_homography"])
        truth = hom if meta["source_photo"].endswith("00.png") else np.linalg.inv(hom)
        ys, xs = np.nonzero(case.mask)
        pts = np.float32(np.stack([xs, ys], 1))[None]
        assert np.abs(cv2.perspectiveTransform(pts, est) - cv2.perspectiveTransform(pts, truth)).max() < 3.0
        # and the other photo, through it, shows the clean content under the mask
        assert content_shown(case.target, case.reference, est, case.mask) >= CROSSVIEW_MIN_SHOWN


def test_content_shown_tells_the_right_view_from_a_wrong_one():
    img, _ = _textured_photo(0)
    hom = np.array([[0.9, 0.12, 14.0], [-0.1, 0.92, 12.0], [2e-4, 1e-4, 1.0]])
    other = cv2.warpPerspective(img, hom, (200, 200), borderValue=(230, 230, 230))
    mask = np.zeros((200, 200), bool)
    mask[80:110, 70:110] = True
    assert content_shown(img, other, hom, mask) > 0.9
    shifted = np.array([[1.0, 0, 9.0], [0, 1.0, -7.0], [0, 0, 1.0]]) @ hom  # 9 px off: another part of the print
    assert content_shown(img, other, shifted, mask) < CROSSVIEW_MIN_SHOWN
    away = np.array([[1.0, 0, 5000.0], [0, 1.0, 0], [0, 0, 1.0]])
    assert content_shown(img, other, away, mask) == -1.0  # the warp misses the mask


def test_warp_cases_store_the_exact_homography(photos, tmp_path):
    for path in make_cases(photos, tmp_path / "cases", MakeCasesConfig(seed=0, size=96, reference_kinds=("warp",))):
        case = read_case(path)
        hom = np.asarray(case.meta["homography"])
        assert any(len(repr(v)) > 10 for v in hom.ravel())  # not rounded
        back = cv2.warpPerspective(case.reference, hom, (96, 96), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        inside = cv2.warpPerspective(np.ones((96, 96), np.uint8), hom, (96, 96),
                                     flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        corr = np.corrcoef(back[inside].ravel(), case.target[inside].ravel())[0, 1]
        assert corr > 0.9  # the reference pulled back through the stored geometry lies on the target


def test_text_cases_cover_text_the_ocr_reads(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime", reason="the `ocr` extra (rapidocr-onnxruntime) is not installed")
    root = tmp_path / "photos" / "sign"
    root.mkdir(parents=True)
    for i in range(2):
        img = np.full((160, 320, 3), 235, np.uint8)
        cv2.putText(img, "REFINE", (30 + 10 * i, 95), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (20, 20, 120), 5)
        Image.fromarray(img).save(root / f"{i:02d}.png")
    (tmp_path / "photos" / "blank").mkdir()
    Image.fromarray(np.full((160, 320, 3), 200, np.uint8)).save(tmp_path / "photos" / "blank" / "00.png")
    cfg = MakeCasesConfig(seed=0, size=320, on_text=True, kinds=("shuffled",))
    written = make_cases(tmp_path / "photos", tmp_path / "cases", cfg)
    assert len(written) == 2 and all(p.name.endswith("-text") for p in written)  # the blank photo gives none
    for path in written:
        case = read_case(path)
        assert "REFINE" in case.meta["text_line"].upper()
        ys, xs = np.nonzero(case.mask)
        assert 40 < ys.mean() < 110 and 30 < xs.mean() < 300  # over the word
    with pytest.raises(InputError, match="choose one"):
        make_cases(tmp_path / "photos", tmp_path / "x", MakeCasesConfig(on_text=True, reference_kinds=("crossview",)))


def _faces(seed: int) -> np.ndarray:
    """A beige plush face on grey with one dark nose (a part) and fine fur-like noise."""
    rng = np.random.default_rng(seed)
    img = np.full((400, 400, 3), 120, np.uint8)
    cv2.circle(img, (200, 200), 160, (215, 195, 170), -1)
    img = np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    cv2.ellipse(img, (200 + 6 * seed, 220), (12, 8), 0, 0, 360, (60, 35, 30), -1)
    return img


def test_a_part_mask_hugs_the_part_with_a_margin():
    img = _faces(0)
    obj = np.zeros((400, 400), np.uint8)
    cv2.circle(obj, (200, 200), 160, 1, -1)
    nose = np.zeros((400, 400), np.uint8)
    cv2.ellipse(nose, (200, 220), (12, 8), 0, 0, 360, 1, -1)
    mask = part_mask(img, obj.astype(bool), np.random.default_rng(0), MakeCasesConfig())
    assert mask is not None
    assert mask[nose > 0].all()  # the whole nose, and a margin of a few pixels around it
    assert 1.2 * nose.sum() < mask.sum() < 2.5 * nose.sum()
    assert part_mask(np.full_like(img, 200), obj.astype(bool), np.random.default_rng(0), MakeCasesConfig()) is None


def test_part_cases_cover_a_part_and_refuse_other_placements(tmp_path):
    root = tmp_path / "photos" / "bear"
    root.mkdir(parents=True)
    obj = np.zeros((400, 400), np.uint8)
    cv2.circle(obj, (200, 200), 160, 255, -1)
    for i in range(2):
        Image.fromarray(_faces(i)).save(root / f"{i:02d}.png")
        Image.fromarray(obj).save(root / f"{i:02d}.mask.png")
    cfg = MakeCasesConfig(seed=0, size=400, on_parts=True, reference_kinds=("warp",), kinds=("garbled",))
    written = make_cases(tmp_path / "photos", tmp_path / "cases", cfg)
    assert len(written) == 2 and all(p.name.endswith("-warp-part") for p in written)
    for i, path in enumerate(written):
        case = read_case(path)
        assert case.meta["on_part"] is True
        ys, xs = np.nonzero(case.mask)
        assert abs(ys.mean() - 220) < 4 and abs(xs.mean() - (200 + 6 * i)) < 4  # over the nose
    for bad in (MakeCasesConfig(on_parts=True, reference_kinds=("crossview",)),
                MakeCasesConfig(on_parts=True, on_text=True)):
        with pytest.raises(InputError, match="choose one"):
            make_cases(tmp_path / "photos", tmp_path / "x", bad)
