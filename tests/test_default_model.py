"""The model shipped inside the package (src/refalign/default_model): present, small, loads without network, and
drives the README's first command (`refalign example`)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from refalign.cli import app
from refalign import default_model_path


def _size_mb(folder) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def test_shipped_model_is_there_small_and_documented():
    path = default_model_path()
    assert _size_mb(path) <= 40.0
    card = (path / "README.md").read_text()
    for words in ("Telea", "PSNR", "seam", "mIoU", "refalign train", "s/region"):
        assert words in card, words
    cfg = json.loads((path / "refalign.json").read_text())
    assert cfg["alignment"]["score"] is not None  # the step x layer search ran and was stored


def test_info_and_example_run_on_the_shipped_model(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # loading needs no network
    res = CliRunner().invoke(app, ["info"])
    assert res.exit_code == 0, res.output
    assert "warped-reference guidance" in res.output
    out = tmp_path / "ex"
    res = CliRunner().invoke(app, ["example", "--kind", "procedural", "--output-dir", str(out)])
    assert res.exit_code == 0, res.output
    # the shipped model repairs the procedural example better than classical inpainting (measured over the mask's
    # box + 8 px: 22.37 dB against Telea's 18.90 and doing nothing's 14.43)
    import re

    scores = {name.strip(): float(p) for name, p in re.findall(r"^  (.+?) +PSNR +([\d.]+) dB", res.output, re.M)}
    before, after, telea = scores["doing nothing"], scores["refalign"], scores["OpenCV Telea"]
    assert after > telea + 1.0 and after > before, res.output
    for name in ("refined.png", "overlay.png", "before_after.png"):
        assert (out / name).is_file(), name
    from PIL import Image

    refined = np.asarray(Image.open(out / "refined.png"))
    image = np.asarray(Image.open(out / "image.png"))
    mask = np.asarray(Image.open(out / "mask.png")) > 127
    assert refined.shape == image.shape and (refined[mask] != image[mask]).any()
