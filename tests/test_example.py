"""The built-in example and the `refalign example` command."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from refalign.cli import app
from refalign.examples import make_example

runner = CliRunner()


def test_example_is_deterministic_and_only_changes_the_mask():
    a, b = make_example(), make_example()
    assert np.array_equal(a.image, b.image) and np.array_equal(a.reference, b.reference)
    assert (a.image != a.target).any(axis=2)[~a.mask].sum() == 0
    assert (a.image != a.target).any(axis=2)[a.mask].mean() > 0.3
    assert 0.005 < a.mask.mean() < 0.05


def test_cli_example_writes_every_picture_and_refuses_overwrite(dummy_checkpoint, tmp_path):
    out = tmp_path / "ex"
    args = ["example", "-o", str(out), "--model", str(dummy_checkpoint), "--steps", "2"]
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
