"""`refalign --help`, `refalign info` and the CLI's error contract."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from refalign.cli import app

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("refine", "align", "align-search", "train", "bench", "make-cases", "demo", "info"):
        assert cmd in result.output


def test_info_prints_components_and_alignment_defaults(dummy_checkpoint):
    result = runner.invoke(app, ["info", str(dummy_checkpoint)])
    assert result.exit_code == 0, result.output
    assert "unet" in result.output and "UNet2DConditionModel" in result.output
    assert "layer 3" in result.output and "8x8 reference tokens" in result.output
    result = runner.invoke(app, ["info", str(dummy_checkpoint), "--json"])
    summary = json.loads(result.output)
    assert summary["components"]["unet"]["parameters"] > 0
    assert summary["num_cross_attention_layers"] == 7


def test_info_on_broken_checkpoint_is_one_line_exit_2(dummy_checkpoint, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(dummy_checkpoint, ckpt)
    (ckpt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage!" * 4)
    result = runner.invoke(app, ["info", str(ckpt)])
    assert result.exit_code == 2
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "unet/diffusion_pytorch_model.safetensors" in lines[0]
    assert "Traceback" not in result.output
