"""Training samples sourced by the transfer engine (refalign.data.engine_pairs) and their use in training:
the harmonizer's masked-image input, the pool draw, the config checks and a short run."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import textured_image

from refalign.data.dataset import SynthesisDataset, to_tensors
from refalign.data.engine_pairs import engine_pool
from refalign.data.procedural import procedural_objects
from refalign.data.samples import MODES, ObjectPhoto, SampleSpec
from refalign.errors import InputError
from refalign.training.trainer import sourced_fill


def _object_pair(size: int = 256) -> list[ObjectPhoto]:
    """Two photos of one textured object: the second is the first under a small rotation and a colour change."""
    img = textured_image(size, seed=5)
    obj = np.zeros((size, size), bool)
    obj[24:size - 24, 24:size - 24] = True
    img[~obj] = 240
    a = cv2.getRotationMatrix2D((size / 2, size / 2), 8.0, 0.95)
    other = cv2.warpAffine(img, a, (size, size), borderValue=(240, 240, 240))
    other = np.clip(other.astype(np.float32) * [1.05, 0.95, 1.0], 0, 255).astype(np.uint8)
    other_obj = cv2.warpAffine(obj.astype(np.uint8), a, (size, size)) > 0
    return [ObjectPhoto(img, obj, "thing", "a"), ObjectPhoto(other, other_obj, "thing", "b")]


def test_engine_pool_sources_the_hole_from_the_registered_reference(tmp_path):
    photos = _object_pair()
    spec = SampleSpec(resolution=64, reference_size=64)
    pool = engine_pool(photos, 6, 0, spec, cache_dir=tmp_path)
    harm = [s for s in pool if s["source_valid"].any()]
    align = [s for s in pool if s["mode"] == MODES["alignment"]]
    assert harm and align, "a clean textured pair registers: both kinds of sample are made"
    assert len(harm) >= 5, "the engine sees the hole emptied, so the damage check accepts nearly every attempt"
    for s in harm:
        assert s["mode"] == MODES["refinement"]
        assert not (s["source_valid"] & ~s["mask"]).any(), "the source lies inside the hole"
        far = cv2.dilate(s["mask"].astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        assert np.array_equal(s["source"][far], s["image"][far]), "outside the hole the window is the photo's"
        d = s["source"][s["source_valid"]].astype(float) - s["image"][s["source_valid"]]
        assert 10 * np.log10(255**2 / max((d**2).mean(), 1e-9)) > 22, "the transferred pixels match the truth"
        assert s["correspondence"].any() and s["warp_valid"].any()
    for s in align:
        assert s["correspondence"].any() and not s["source_valid"].any()
    # cached: the second call reads the .npz and gives the same samples
    assert len(list(tmp_path.glob("engine-pool-*.npz"))) == 1
    again = engine_pool(photos, 6, 0, spec, cache_dir=tmp_path)
    assert len(again) == len(pool)
    for a, b in zip(pool, again):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_engine_pool_gives_nothing_when_nothing_registers():
    flat = np.full((128, 128, 3), 128, np.uint8)
    obj = np.zeros((128, 128), bool)
    obj[20:108, 20:108] = True
    assert engine_pool([ObjectPhoto(flat, obj, "flat", "a")], 3, 0, SampleSpec()) == []


def test_sourced_fill_is_the_source_where_valid_and_the_classical_fill_elsewhere():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 8:20] = 1
    source = torch.full_like(image, 0.5)
    valid = torch.zeros_like(mask)
    assert sourced_fill({"image": image, "mask": mask, "source": source, "source_valid": valid}) is None
    valid[0, :, 8:20, 8:14] = 1
    fill = sourced_fill({"image": image, "mask": mask, "source": source, "source_valid": valid})
    sel = valid.expand_as(image) >= 0.5
    assert torch.equal(fill[sel], source[sel])
    outside = (mask < 0.5).expand_as(image)
    assert torch.equal(fill[outside], image[outside])
    rest = ((mask >= 0.5) & (valid < 0.5)).expand_as(image)
    assert not torch.allclose(fill[rest], source[rest]), "the rest of the hole is filled classically"


def test_dataset_draws_the_pool_at_its_ratio_and_is_unchanged_without_one():
    photos = procedural_objects(3, size=96, views=2, seed=3)
    spec = SampleSpec(resolution=32, reference_size=32, min_window=32)
    plain = SynthesisDataset(photos, spec, seed=1)
    empty = SynthesisDataset(photos, spec, seed=1, pool=[], pool_ratio=0.5)
    for i in range(4):
        a, b = plain.sample(i), empty.sample(i)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    marker = dict(plain.sample(0), mode=MODES["refinement"])
    marker["source"] = np.full_like(marker["image"], 7)
    marker["source_valid"] = marker["mask"].copy()
    always = SynthesisDataset(photos, spec, seed=1, pool=[marker], pool_ratio=1.0)
    assert always.sample(3) is marker
    t = to_tensors(plain.sample(0))
    assert t["source"].shape == t["image"].shape and not t["source_valid"].any()


def test_engine_source_config_is_checked():
    from refalign.training.config import load_config

    with pytest.raises(InputError, match="needs a path"):
        load_config(None, ["data.sources=[{kind: procedural}, {kind: engine}]"])
    with pytest.raises(InputError, match="no photo source"):
        load_config(None, ["data.sources=[{kind: engine, path: photos}]"])
    with pytest.raises(InputError, match="engine_ratio"):
        load_config(None, ["data.engine_ratio=1.5"])


def test_training_with_an_engine_source_runs_and_feeds_the_source(tmp_path, monkeypatch):
    """A short run whose data holds engine samples: the trainer's masked-image input is the transferred
    reference for them (checked on the fill it builds), and a checkpoint is written."""
    from test_training import dummy_config

    from refalign.training import trainer

    folder = tmp_path / "photos" / "thing"
    folder.mkdir(parents=True)
    for p in _object_pair():
        Image.fromarray(p.image).save(folder / f"{p.name}.png")
        Image.fromarray(p.mask.astype(np.uint8) * 255).save(folder / f"{p.name}.mask.png")
    seen = []
    original = trainer.sourced_fill

    def spy(batch):
        out = original(batch)
        seen.append(out is not None)
        return out

    monkeypatch.setattr(trainer, "sourced_fill", spy)
    sources = ("data.sources=[{kind: procedural, count: 3, size: 64, views: 2}, "
               f"{{kind: engine, path: {tmp_path / 'photos'}, count: 6, seed: 0}}]")
    cfg = dummy_config(tmp_path / "run", "max_steps=3", "data.val_holdout=0", "model.masked_fill=telea",
                       sources, "data.engine_ratio=1.0", f"data.cache_dir={tmp_path / 'cache'}")
    final = trainer.train(cfg)
    assert (final / "refalign.json").is_file()
    assert any(seen), "engine samples with a source reached the model's masked-image input"
