"""Training-data synthesis (paper §3.4): mask generator G, perturbations S/T, sample builders, readers, dataset."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from conftest import DREAMBOOTH
from refalign.data.dataset import ShardedBatchSampler, SynthesisDataset
from refalign.data.masks import KINDS, MaskSpec, area_ratios, detail_map, sample_artifact_mask
from refalign.data.perturb import ColorSpec, GeometrySpec, apply_color, preserves_orientation, sample_color, sample_geometry, warp_mask
from refalign.data.procedural import procedural_objects
from refalign.data.readers import grabcut_mask, read_coco, read_multiview_folder, rle_decode
from refalign.data.samples import GREY, MODES, SampleSpec, alignment_sample, make_reference, multiview_sample, refinement_sample
from refalign.errors import InputError
from refalign.mask_ops import grabcut_foreground


def _ellipse_object(size=128):
    yy, xx = np.mgrid[0:size, 0:size]
    return ((yy - size / 2) ** 2 / (0.4 * size) ** 2 + (xx - size / 2) ** 2 / (0.3 * size) ** 2) < 1


# ------------------------------------------------------------------------------------------ G
@pytest.mark.parametrize("kind", KINDS)
def test_artifact_mask_is_nonempty_and_inside_object(kind):
    obj = _ellipse_object()
    spec = MaskSpec(kinds=(kind,))
    rng = np.random.default_rng(0)
    for _ in range(40):
        m = sample_artifact_mask(obj, rng, spec)
        assert m.dtype == bool and m.shape == obj.shape
        assert m.any() and not (m & ~obj).any()
        assert m.sum() <= spec.max_object_fraction * obj.sum() * 1.6  # strokes overshoot their target a little


def test_artifact_area_distribution_matches_pal():
    """§A.2: most artifacts cover under 4 % of the image; irregular shapes of varied size."""
    obj = np.ones((128, 128), bool)
    rng = np.random.default_rng(1)
    ratios = area_ratios([sample_artifact_mask(obj, rng) for _ in range(300)])
    assert np.mean(ratios < 0.04) > 0.5
    assert np.median(ratios) < 0.04
    assert ratios.max() < 0.3 and ratios.min() > 0
    assert np.std(np.log(ratios)) > 0.5  # a spread of sizes, not one size


def test_detail_bias_places_masks_on_detail():
    image = np.full((96, 96, 3), 128, np.uint8)
    image[:, 48:] = (np.indices((96, 48)).sum(0) % 2 * 255)[..., None]  # checkerboard right half
    obj = np.ones((96, 96), bool)
    rng = np.random.default_rng(2)
    spec = MaskSpec(detail_bias=1.0, kinds=("ellipse",), area_max=0.01)
    centres = [np.argwhere(sample_artifact_mask(obj, rng, spec, detail_map(image)))[:, 1].mean() for _ in range(40)]
    assert np.mean(np.array(centres) > 40) > 0.9


# ------------------------------------------------------------------------------------------ S, T
def test_geometry_never_mirrors():
    rng = np.random.default_rng(3)
    strong = GeometrySpec(rotation=40, shear=20, perspective=0.15, translation=0.1)
    for _ in range(200):
        h = sample_geometry(rng, strong, 64)
        assert preserves_orientation(h, 64)
        assert np.linalg.det(h[:2, :2]) > 0
    flip = np.diag([-1.0, 1.0, 1.0])
    assert not preserves_orientation(flip, 64)


def test_warp_of_labelled_pattern_is_exact():
    """Correspondence bookkeeping: the mask pushed through T selects exactly the labels it covered."""
    size = 64
    labels = (np.arange(size)[:, None] // 8 * 8 + np.arange(size)[None, :] // 8).astype(np.uint8)  # 64 blocks
    mask = np.isin(labels, [18, 19, 27, 42])
    rng = np.random.default_rng(4)
    for _ in range(20):
        h = sample_geometry(rng, GeometrySpec(), size)
        wl = warp_mask(labels + 1, h, size, nearest=True)  # 0 = outside the frame
        wm = warp_mask(mask.astype(np.uint8), h, size, nearest=True).astype(bool)
        assert wm.any()
        assert set(np.unique(wl[wm]) - 1) <= {18, 19, 27, 42}
        assert not np.isin(wl[~wm] - 1, [18, 19, 27, 42]).any()


def test_reference_correspondence_tracks_pixels_under_crop_resize_and_T():
    """End to end through make_reference (crop to bbox, pad, resize, bilinear T): interior pixels of the returned
    correspondence carry the artifact's colours, interior pixels outside it do not."""
    size = 160
    palette = np.random.default_rng(5).integers(0, 256, (100, 3)).astype(np.uint8)
    lab = np.arange(size)[:, None] // 16 * 10 + np.arange(size)[None, :] // 16
    image = palette[lab]
    obj = _ellipse_object(size)
    art_labels = [33, 34, 43, 44, 54]
    artifact = np.isin(lab, art_labels) & obj
    spec = SampleSpec(color=ColorSpec(0, 0, 0, 0, 0))
    rng = np.random.default_rng(6)
    for _ in range(10):
        ref, (corr,), _ = make_reference(image, obj, [artifact], 64, rng, spec)
        assert corr.any()
        flat = ref.reshape(-1, 3).astype(int)
        dist = np.abs(flat[:, None, :] - palette[None].astype(int)).sum(-1)
        exact = dist.min(1) == 0
        lbl = dist.argmin(1).reshape(64, 64)
        interior = (exact.reshape(64, 64)) & (lbl == np.roll(lbl, 1, 0)) & (lbl == np.roll(lbl, 1, 1))
        in_art = np.isin(lbl, art_labels)
        assert (in_art[corr & interior]).mean() > 0.98
        assert (in_art[~corr & interior]).mean() < 0.02


def test_colour_perturbation_keeps_background():
    img = np.random.default_rng(7).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    keep = np.zeros((32, 32), bool)
    keep[8:24, 8:24] = True
    out = apply_color(img, sample_color(np.random.default_rng(8), ColorSpec(hue=30)), keep=keep)
    assert np.array_equal(out[~keep], img[~keep]) and not np.array_equal(out[keep], img[keep])


# ------------------------------------------------------------------------------------------ samples
@pytest.fixture(scope="module")
def photos():
    return procedural_objects(3, size=96, views=2, seed=3)


def _check(sample, res=32, ref=32):
    assert sample["image"].shape == (res, res, 3) and sample["image"].dtype == np.uint8
    assert sample["mask"].shape == (res, res) and sample["mask"].any() and not sample["mask"].all()
    assert sample["reference"].shape == (ref, ref, 3)
    assert sample["correspondence"].shape == (ref, ref) and sample["correspondence"].any()


def test_sample_builders(photos):
    spec = SampleSpec(resolution=32, reference_size=32, min_window=32)
    rng = np.random.default_rng(9)
    for _ in range(5):
        a = alignment_sample(photos[0], rng, spec)
        r = refinement_sample(photos[1], rng, spec)
        m = multiview_sample(photos[2], photos[3], rng, spec)
        for s in (a, r, m):
            _check(s)
        assert (a["mode"], r["mode"], m["mode"]) == (MODES["alignment"], MODES["refinement"], MODES["multiview"])
        # refinement reference = the local region only: mostly neutral grey around it
        assert (np.abs(r["reference"].astype(int) - GREY).sum(-1) == 0).mean() > 0.1
        assert a["correspondence"].mean() < 0.6  # a part of the whole object, not all of it


def test_dataset_is_deterministic_and_mixes_modes(photos):
    spec = SampleSpec(resolution=32, reference_size=32, min_window=32)
    ds = SynthesisDataset(photos, spec, alignment_ratio=0.5, multiview_ratio=0.3, seed=1)
    a, b = ds[5], SynthesisDataset(photos, spec, alignment_ratio=0.5, multiview_ratio=0.3, seed=1)[5]
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy())
    assert a["image"].shape == (3, 32, 32) and a["mask"].shape == (1, 32, 32)
    assert a["image"].min() >= -1 and a["image"].max() <= 1
    modes = {int(ds[i]["mode"]) for i in range(40)}
    assert modes == {0, 1, 2}
    other = SynthesisDataset(photos, spec, seed=2)[5]
    assert not np.array_equal(other["image"].numpy(), a["image"].numpy())


def test_sharded_sampler_covers_the_global_sequence():
    one = [b for b in ShardedBatchSampler(2, 8, 3)]
    two = [ShardedBatchSampler(2, 8, 3, 2, r) for r in (0, 1)]
    merged = [b for pair in zip(*two) for b in pair]
    assert merged == one and one[0] == [6, 7, 8]


# ------------------------------------------------------------------------------------------ readers
def _write_photo(path, seed):
    Image.fromarray(procedural_objects(1, size=80, views=1, seed=seed)[0].image).save(path)


def test_multiview_folder_with_and_without_masks(tmp_path, caplog):
    cache = tmp_path / "cache"
    tmp_path = tmp_path / "data"
    (tmp_path / "mug").mkdir(parents=True)
    _write_photo(tmp_path / "mug" / "a.jpg", 1)
    _write_photo(tmp_path / "mug" / "b.jpg", 2)
    m = np.zeros((80, 80), np.uint8)
    m[10:70, 20:60] = 255
    Image.fromarray(m).save(tmp_path / "mug" / "a.mask.png")
    with caplog.at_level(logging.INFO, logger="refalign.data.readers"):
        photos = read_multiview_folder(tmp_path, max_side=64, cache_dir=cache)
    assert [p.mask_source for p in photos] == ["file", "grabcut"]
    assert photos[0].image.shape == (64, 64, 3) and photos[0].mask.shape == (64, 64)
    assert "GrabCut" in caplog.text and "1 of 2" in caplog.text
    assert list(cache.glob("*.png"))  # cached for the next run
    again = read_multiview_folder(tmp_path, max_side=64, cache_dir=cache)
    assert np.array_equal(again[1].mask, photos[1].mask)
    with pytest.raises(InputError, match="no such data folder"):
        read_multiview_folder(tmp_path / "missing")


def test_grabcut_finds_a_centred_object():
    image = np.full((80, 80, 3), 30, np.uint8)
    obj = _ellipse_object(80)
    image[obj] = (220, 60, 40)
    m = grabcut_mask(image)
    iou = (m & obj).sum() / (m | obj).sum()
    assert iou > 0.8


@pytest.mark.skipif(not DREAMBOOTH.is_dir(), reason="shared dreambooth-dev data not present")
def test_grabcut_gives_the_same_mask_whatever_the_callers_opencv_generator_and_leaves_it_alone():
    """GrabCut's k-means draws from OpenCV's generator: on this photo two seeds give masks 2700 px apart."""
    import cv2

    image = np.asarray(Image.open(DREAMBOOTH / "backpack_dog" / "01.jpg").convert("RGB").resize((256, 256)))
    masks = []
    for seed in (1, 2):
        cv2.setRNGSeed(seed)
        masks.append(grabcut_foreground(image)[0])
        after = np.zeros(4, np.float32)
        cv2.randu(after, 0.0, 1.0)
        cv2.setRNGSeed(seed)
        fresh = np.zeros(4, np.float32)
        cv2.randu(fresh, 0.0, 1.0)
        assert np.array_equal(after, fresh)
    assert np.array_equal(masks[0], masks[1])


def _rle_encode_string(mask: np.ndarray) -> str:
    """pycocotools' compressed RLE (rleToString), for the test."""
    flat = mask.T.reshape(-1)
    counts, cur, run = [], False, 0
    for v in flat:
        if bool(v) != cur:
            counts.append(run)
            cur, run = bool(v), 0
        run += 1
    counts.append(run)
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_rle_decode_round_trip():
    mask = np.zeros((23, 31), bool)
    mask[3:17, 5:29] = True
    mask[10:12, :] = False
    assert np.array_equal(rle_decode({"size": [23, 31], "counts": _rle_encode_string(mask)}), mask)
    runs = {"size": [2, 3], "counts": [1, 2, 3]}  # column-major, zeros first
    assert np.array_equal(rle_decode(runs), np.array([[0, 1, 0], [1, 0, 0]], bool))


def test_coco_instance_and_panoptic(tmp_path):
    img = procedural_objects(1, size=64, views=1, seed=4)[0].image
    Image.fromarray(img).save(tmp_path / "x.jpg")
    box = np.zeros((64, 64), bool)
    box[8:40, 10:50] = True
    ann = {
        "images": [{"id": 1, "file_name": "x.jpg", "height": 64, "width": 64}],
        "annotations": [
            {"id": 7, "image_id": 1, "segmentation": [[10, 10, 50, 10, 50, 50, 10, 50]], "iscrowd": 0},
            {"id": 8, "image_id": 1, "segmentation": {"size": [64, 64], "counts": _rle_encode_string(box)}, "iscrowd": 0},
            {"id": 9, "image_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]], "iscrowd": 0},  # too small
        ],
    }
    (tmp_path / "inst.json").write_text(json.dumps(ann))
    photos = read_coco(tmp_path / "inst.json", tmp_path, max_side=64)
    assert len(photos) == 2
    assert abs(photos[0].mask.sum() - 41 * 41) < 120 and np.array_equal(photos[1].mask, box)

    ids = np.zeros((64, 64, 3), np.uint8)
    ids[box] = (44, 1, 0)  # id 44 + 256 = 300
    (tmp_path / "pan").mkdir()
    Image.fromarray(ids).save(tmp_path / "pan" / "x.png")
    pan = {"images": ann["images"], "annotations": [{"image_id": 1, "file_name": "x.png", "segments_info": [{"id": 300}]}]}
    (tmp_path / "pan.json").write_text(json.dumps(pan))
    photos = read_coco(tmp_path / "pan.json", tmp_path, max_side=64)
    assert len(photos) == 1 and np.array_equal(photos[0].mask, box)


def test_procedural_objects_are_deterministic_groups():
    a = procedural_objects(2, size=64, views=2, seed=5)
    b = procedural_objects(2, size=64, views=2, seed=5)
    assert [p.group for p in a] == ["proc00000", "proc00000", "proc00001", "proc00001"]
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) for x, y in zip(a, b))
    assert all(0.1 < p.mask.mean() < 0.8 for p in a)


@pytest.mark.skipif(not DREAMBOOTH.is_dir(), reason="shared dreambooth-dev data not present")
def test_reads_dreambooth_dev(tmp_path):
    photos = read_multiview_folder(DREAMBOOTH, max_side=64, cache_dir=tmp_path)
    assert len({p.group for p in photos}) == 15 and len(photos) >= 70
    assert all(0.02 < p.mask.mean() < 0.98 for p in photos)
