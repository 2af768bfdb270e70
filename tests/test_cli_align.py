"""``refalign align`` and ``refalign align-search`` through typer's CliRunner on the dummy checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from refalign.cli import app

runner = CliRunner()


@pytest.fixture
def files(tmp_path, scene):
    paths = {}
    for name, arr in (("image", scene["image"]), ("reference", scene["reference"])):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(arr).save(paths[name])
    paths["mask"] = tmp_path / "mask.png"
    Image.fromarray(scene["mask"].astype(np.uint8) * 255).save(paths["mask"])
    paths["object"] = tmp_path / "object.png"
    Image.fromarray(scene["object_mask"].astype(np.uint8) * 255).save(paths["object"])
    return paths


def _args(files, *extra):
    return ["align", str(files["image"]), "--mask", str(files["mask"]), "--reference", str(files["reference"]), *extra]


def test_align_writes_mask_and_overlay(files, tmp_path, dummy_checkpoint, scene):
    out, ov = tmp_path / "corr.png", tmp_path / "overlay.png"
    res = runner.invoke(app, _args(files, "--output", str(out), "--overlay", str(ov), "--model", str(dummy_checkpoint),
                                   "--object-mask", str(files["object"]), "--layer", "2", "--step", "1"))
    assert res.exit_code == 0, res.output
    assert "step 1, layer 2" in res.output
    m = np.asarray(Image.open(out))
    assert m.shape == scene["reference"].shape[:2] and set(np.unique(m)) <= {0, 255}
    assert not (m[~scene["object_mask"]] > 0).any()  # inside the object mask
    o = np.asarray(Image.open(ov))  # the reference under a label bar naming the region and its confidence
    h, w = scene["reference"].shape[:2]
    assert o.shape[1:] == (w, 3) and o.shape[0] > h
    # the same seed gives the same mask; --overwrite is needed to replace it
    res = runner.invoke(app, _args(files, "--output", str(out), "--model", str(dummy_checkpoint),
                                   "--object-mask", str(files["object"]), "--layer", "2", "--step", "1"))
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = runner.invoke(app, _args(files, "--output", str(out), "--model", str(dummy_checkpoint), "--overwrite",
                                   "--object-mask", str(files["object"]), "--layer", "2", "--step", "1"))
    assert res.exit_code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), m)


@pytest.mark.parametrize("share, vague", [(0.9, True), (None, False)])
def test_align_warns_when_mstar_is_many_times_the_artifact(files, tmp_path, monkeypatch, scene, share, vague):
    """A large M* draws a large attention mass whatever its aim, so its confidence cannot say it is vague; its area
    against the artifact's does."""
    from types import SimpleNamespace

    h, w = scene["reference"].shape[:2]
    region = np.zeros((h, w), bool)
    if share is None:  # the artifact's own size
        region[: int(scene["mask"].sum() ** 0.5), : int(scene["mask"].sum() ** 0.5)] = True
    else:
        region[: int(h * share), :] = True
    fake = SimpleNamespace(align=lambda *a, **k: SimpleNamespace(mask=region, score=0.9, step=0, layer=0,
                                                                  path="cross-attention", path_reason=""))
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: fake)
    res = runner.invoke(app, _args(files, "--output", str(tmp_path / "corr.png")))
    assert res.exit_code == 0, res.output
    assert ("a vague match" in res.output) is vague, res.output


@pytest.mark.parametrize("path, words, confidence", [
    ("cross-attention", "(cross-attention,", 0.9), ("warp", "(registered,", 0.4),
    ("located", "(located, not registered,", 0.4)])
def test_the_overlay_gives_the_confidence_of_what_found_the_region(files, tmp_path, monkeypatch, scene, path, words,
                                                                   confidence):
    """M*'s label carries the attention's score; a region the registration registered or located carries that
    model's confidence (its score on the ring), and says whether it was accepted."""
    from types import SimpleNamespace

    region = np.zeros(scene["reference"].shape[:2], bool)
    region[10:30, 10:30] = True
    fit = SimpleNamespace(best=SimpleNamespace(score=SimpleNamespace(confidence=0.4)))
    fake = SimpleNamespace(align=lambda *a, **k: SimpleNamespace(
        mask=region, score=0.9, step=0, layer=0, path=path, path_reason="", correspondence=SimpleNamespace(fit=fit)))
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: fake)
    labels = []
    monkeypatch.setattr("refalign.demo.visuals.label", lambda picture, text: labels.append(text) or picture)
    res = runner.invoke(app, _args(files, "--output", str(tmp_path / "corr.png"), "--overlay", str(tmp_path / "o.png")))
    assert res.exit_code == 0, res.output
    assert words in labels[0] and labels[0].endswith(f"confidence {confidence:.2f}"), labels


def test_align_validates_inputs_before_loading_the_model(files, tmp_path):
    bad = tmp_path / "small_mask.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(bad)
    out = tmp_path / "corr.png"
    # the model path does not exist: the input error must be reported first
    args = ["align", str(files["image"]), "--mask", str(bad), "--reference", str(files["reference"]),
            "--output", str(out), "--model", str(tmp_path / "no-model")]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "small_mask.png" in res.output and "same size" in res.output
    assert not out.exists()
    res = runner.invoke(app, _args(files, "--output", str(files["mask"]), "--model", str(tmp_path / "no-model")))
    assert res.exit_code == 2 and "one of the inputs" in res.output


def test_align_layer_out_of_range(files, tmp_path, dummy_checkpoint):
    res = runner.invoke(app, _args(files, "--output", str(tmp_path / "c.png"), "--model", str(dummy_checkpoint),
                                   "--layer", "99"))
    assert res.exit_code == 2
    assert "layer 99 is out of range" in res.output and "7 cross-attention layers" in res.output
    assert not (tmp_path / "c.png").exists()


def test_align_search_cli(tmp_path, dummy_checkpoint, scene):
    from refalign.eval.cases import write_case

    cases = tmp_path / "cases"
    corr = np.zeros(scene["reference"].shape[:2], bool)
    corr[40:60, 30:50] = True
    for i in range(2):
        write_case(cases / f"c{i}", image=scene["image"], mask=scene["mask"], reference=scene["reference"],
                   correspondence=corr)
    ckpt = tmp_path / "ckpt"
    shutil.copytree(dummy_checkpoint, ckpt)
    out = tmp_path / "search"
    res = runner.invoke(app, ["align-search", str(cases), "--model", str(ckpt), "--output", str(out), "--steps", "2",
                              "--write-defaults"])
    assert res.exit_code == 0, res.output
    lines = (out / "gamma.csv").read_text().splitlines()
    assert len(lines) == 3 and len(lines[1].split(",")) == 2 + 7
    best = json.loads((out / "best.json").read_text())
    cfg = json.loads((ckpt / "refalign.json").read_text())["alignment"]
    assert (cfg["step"], cfg["layer"], cfg["num_inference_steps"]) == (best["step"], best["layer"], 2)
    assert cfg["score"] == pytest.approx(best["score"])
    # a second run refuses to overwrite the results
    res = runner.invoke(app, ["align-search", str(cases), "--model", str(ckpt), "--output", str(out), "--steps", "2"])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_align_search_needs_ground_truth(tmp_path, scene):
    from refalign.eval.cases import write_case

    write_case(tmp_path / "cases" / "a", image=scene["image"], mask=scene["mask"], reference=scene["reference"])
    res = runner.invoke(app, ["align-search", str(tmp_path / "cases"), "--model", str(tmp_path / "none")])
    assert res.exit_code == 2 and "correspondence.png" in res.output


def test_bench_mstar_size_tables_mstar_against_the_artifact(tmp_path, dummy_checkpoint, scene):
    """benchmarks/bench_mstar_size.py on one warp case with its true match, with the dummy model."""
    import subprocess
    import sys
    from pathlib import Path

    from refalign.eval.cases import write_case

    write_case(tmp_path / "cases" / "a", image=scene["image"], mask=scene["mask"], reference=scene["reference"],
               target=scene["image"], correspondence=np.roll(scene["mask"], (3, -2), axis=(0, 1)),
               meta={"reference_kind": "warp", "artifact_kind": "blot"})
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_mstar_size.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cases"), "--model", str(dummy_checkpoint)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| warp |" in proc.stdout and "IoU with the true match" in proc.stdout, proc.stdout
