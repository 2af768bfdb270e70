"""Every bad input of `refalign refine` is a tested CLI behaviour (DESIGN §5): exit code 2, one line naming the
file, no traceback, nothing written — all before the model loads. Accepted conversions run to the end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_scene
from refalign.cli import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    s = synthetic_scene()
    paths = {"image": tmp_path / "img.png", "mask": tmp_path / "mask.png", "reference": tmp_path / "ref.png"}
    Image.fromarray(s["image"]).save(paths["image"])
    Image.fromarray(s["mask"].astype(np.uint8) * 255).save(paths["mask"])
    Image.fromarray(s["reference"]).save(paths["reference"])
    return paths


@pytest.fixture
def no_model(monkeypatch):
    """Bad inputs must be refused before any model loads."""
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: pytest.fail("model loaded"))


def _args(files, *extra, model="unused-model"):
    return ["refine", str(files["image"]), "--mask", str(files["mask"]), "--reference", str(files["reference"]),
            "--model", str(model), "--steps", "2", *extra]


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_user_error(result, named: str):
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1, result.output
    assert named in lines[0] and lines[0].startswith("error: ")
    assert "Traceback" not in result.output


def _png_with_text(path: Path):
    path.write_text("this is not an image\n")


def _truncated_png(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("which", ["image", "mask", "reference"])
def test_missing_file(files, no_model, which):
    files[which].unlink()
    before = _listing(files["image"].parent)
    result = runner.invoke(app, _args(files))
    _assert_user_error(result, files[which].name)
    assert _listing(files["image"].parent) == before


@pytest.mark.parametrize("which", ["image", "mask", "reference"])
@pytest.mark.parametrize("damage", [_png_with_text, _truncated_png], ids=["text", "truncated"])
def test_not_an_image_or_truncated(files, no_model, which, damage):
    damage(files[which])
    before = _listing(files["image"].parent)
    result = runner.invoke(app, _args(files))
    _assert_user_error(result, files[which].name)
    assert _listing(files["image"].parent) == before


@pytest.mark.parametrize(
    "mask,words",
    [
        (np.zeros((50, 60), np.uint8), "60x50"),
        (np.zeros((96, 96), np.uint8), "no pixels"),
        (np.full((96, 96), 255, np.uint8), "whole image"),
    ],
    ids=["size", "empty", "everything"],
)
def test_bad_masks(files, no_model, mask, words):
    Image.fromarray(mask).save(files["mask"])
    before = _listing(files["image"].parent)
    result = runner.invoke(app, _args(files))
    _assert_user_error(result, files["mask"].name)
    assert words in result.output
    assert _listing(files["image"].parent) == before


def test_image_over_max_pixels(files, no_model):
    result = runner.invoke(app, _args(files, "--max-pixels", "1000"))
    _assert_user_error(result, files["image"].name)
    assert "--max-pixels" in result.output


def test_existing_output_without_overwrite_is_untouched(files, no_model):
    out = files["image"].parent / "out.png"
    out.write_bytes(b"precious")
    result = runner.invoke(app, _args(files, "-o", str(out)))
    _assert_user_error(result, "out.png")
    assert "--overwrite" in result.output
    assert out.read_bytes() == b"precious"


def test_output_is_an_input(files, no_model):
    result = runner.invoke(app, _args(files, "-o", str(files["mask"]), "--overwrite"))
    _assert_user_error(result, files["mask"].name)


def test_output_directory_missing(files, no_model):
    result = runner.invoke(app, _args(files, "-o", str(files["image"].parent / "nope" / "out.png")))
    _assert_user_error(result, "nope")


def test_bad_reference_mask(files, no_model):
    rm = files["image"].parent / "rm.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(rm)
    result = runner.invoke(app, _args(files, "--reference-mask", str(rm)))
    _assert_user_error(result, "rm.png")


def test_corrupt_checkpoint_names_the_file(files, dummy_checkpoint, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(dummy_checkpoint, ckpt)
    weights = ckpt / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    result = runner.invoke(app, _args(files, model=ckpt))
    _assert_user_error(result, "unet/diffusion_pytorch_model.safetensors")
    assert not (files["image"].parent / "img.refined.png").exists()


# ------------------------------------------------------------------------------------------------ conversions


def _rgba(files):
    img = Image.open(files["image"]).convert("RGBA")
    img.putalpha(200)
    img.save(files["image"])


def _palette(files):
    Image.open(files["image"]).convert("P").save(files["image"])


def _gray16(files):
    gray = np.asarray(Image.open(files["image"]).convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray).save(files["image"])  # mode I;16
    assert Image.open(files["image"]).mode.startswith("I")


def _grayscale(files):
    Image.open(files["image"]).convert("L").save(files["image"])
    Image.open(files["reference"]).convert("L").save(files["reference"])


def _exif_jpeg(files):
    """A 96x64 (w x h) picture stored sideways with EXIF orientation 6; the 96x64 mask only fits once it is turned."""
    img = Image.open(files["image"]).crop((0, 16, 96, 80))
    Image.open(files["mask"]).crop((0, 16, 96, 80)).save(files["mask"])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise when displayed
    jpg = files["image"].with_suffix(".jpg")
    img.transpose(Image.Transpose.ROTATE_90).save(jpg, exif=exif, quality=95)
    files["image"].unlink()
    files["image"] = jpg
    return (96, 64)


def _transparent_reference(files):
    ref = Image.open(files["reference"]).convert("RGBA")
    alpha = np.zeros((96, 96), np.uint8)
    alpha[10:86, 15:80] = 255
    ref.putalpha(Image.fromarray(alpha))
    ref.save(files["reference"])


@pytest.mark.parametrize("convert", [_rgba, _palette, _gray16, _grayscale, _exif_jpeg, _transparent_reference],
                         ids=["rgba", "palette", "16bit", "grayscale", "exif-jpeg", "transparent-reference"])
def test_accepted_conversions_run(files, dummy_checkpoint, convert):
    size = convert(files) or (96, 96)
    extra = [] if convert is _transparent_reference else ["--no-align"]
    result = runner.invoke(app, _args(files, *extra, model=dummy_checkpoint))
    assert result.exit_code == 0, result.output
    out = files["image"].with_name(f"{files['image'].stem}.refined.png")
    refined = Image.open(out)
    # an RGBA input keeps its alpha, unchanged, on a PNG output (issue 17); a grey one stays grey; others give RGB
    grey = convert in (_gray16, _grayscale)
    assert refined.mode == ("RGBA" if convert is _rgba else "L" if grey else "RGB") and refined.size == size
    if convert is _rgba:
        assert (np.asarray(refined.getchannel("A")) == 200).all()
