"""Input layer (DESIGN §5): reading, converting and refusing user images and masks; safe outputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from refalign.errors import InputError, OutputError
from refalign.files import (
    check_output, load_image, load_mask, load_reference, load_refine_inputs, save_image,
)


def _png(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def test_missing_and_non_image(tmp_path):
    with pytest.raises(InputError, match="no such image file"):
        load_image(tmp_path / "x.png")
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "t.png")


def test_truncated_png(tmp_path):
    p = _png(tmp_path / "a.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(p)


def test_mode_conversions(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[:5, :5, 3] = 0
    ref = load_reference(_png(tmp_path / "rgba.png", rgba))
    assert ref.image.shape == (20, 30, 3) and ref.object_mask is not None and not ref.object_mask[0, 0]
    gray = load_image(_png(tmp_path / "g.png", np.full((20, 30), 77, np.uint8)))
    assert gray.shape == (20, 30, 3) and (gray == 77).all()
    Image.fromarray(np.full((20, 30), 65535, np.uint16)).save(tmp_path / "16.png")
    assert (load_image(tmp_path / "16.png") == 255).all()
    Image.new("P", (30, 20)).save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (20, 30, 3)


def test_exif_rotation(tmp_path):
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (40, 20, 3)


def test_mask_checks(tmp_path):
    img = (20, 30)
    with pytest.raises(InputError, match="mask is 31x20 but"):
        load_mask(_png(tmp_path / "m1.png", np.zeros((20, 31), np.uint8)), img)
    with pytest.raises(InputError, match="marks no pixels"):
        load_mask(_png(tmp_path / "m2.png", np.zeros((20, 30), np.uint8)), img)
    with pytest.raises(InputError, match="covers the whole image"):
        load_mask(_png(tmp_path / "m3.png", np.full((20, 30), 255, np.uint8)), img)
    m = np.zeros((20, 30), np.uint8)
    m[2:5, 3:9] = 255
    assert load_mask(_png(tmp_path / "m4.png", m), img).sum() == 18


def test_size_limit(tmp_path):
    p = _png(tmp_path / "big.png", np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(InputError, match="over the limit"):
        load_image(p, max_pixels=5000)


def test_load_refine_inputs_takes_alpha_as_reference_mask(tmp_path):
    img = _png(tmp_path / "i.png", np.zeros((20, 30, 3), np.uint8))
    m = np.zeros((20, 30), np.uint8)
    m[4:8, 4:8] = 255
    mask = _png(tmp_path / "m.png", m)
    rgba = np.full((16, 16, 4), 255, np.uint8)
    rgba[:8, :, 3] = 0
    ref = _png(tmp_path / "r.png", rgba)
    inputs = load_refine_inputs(img, mask, ref)
    assert inputs.reference_mask is not None and inputs.reference_mask.sum() == 128


def test_outputs(tmp_path):
    existing = tmp_path / "o.png"
    existing.write_bytes(b"x")
    with pytest.raises(OutputError, match="already exists"):
        check_output(existing)
    assert check_output(existing, overwrite=True) == existing
    with pytest.raises(OutputError, match="does not exist"):
        check_output(tmp_path / "missing" / "o.png")
    with pytest.raises(OutputError, match="is one of the inputs"):
        check_output(existing, overwrite=True, protected=(existing,))
    save_image(np.ones((4, 4), bool), tmp_path / "mask.png")
    assert np.asarray(Image.open(tmp_path / "mask.png")).max() == 255
    assert (tmp_path / "mask.png").stat().st_mode & 0o044, "outputs get open()'s permissions, not mkstemp's 0600"
    assert not list(tmp_path.glob(".*.tmp"))
