"""`refalign refine` on one image and on a folder of cases (batch, resumable, split across processes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_scene
from refalign.cli import app
from refalign.eval import batch
from refalign.pipelines.outputs import RefineOutput

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def _write(folder: Path, seed: int = 0, names=("image.png", "mask.png", "reference.png")) -> dict:
    s = synthetic_scene(seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(s["image"]).save(folder / names[0])
    Image.fromarray(s["mask"].astype(np.uint8) * 255).save(folder / names[1])
    Image.fromarray(s["reference"]).save(folder / names[2])
    return s


def _single_args(tmp_path, model, *extra):
    return ["refine", str(tmp_path / "img.png"), "--mask", str(tmp_path / "m.png"), "--reference",
            str(tmp_path / "r.png"), "--model", str(model), "--steps", "2", *extra]


def test_single_image_default_output_and_background(tmp_path, dummy_checkpoint):
    s = _write(tmp_path, names=("img.png", "m.png", "r.png"))
    result = runner.invoke(app, _single_args(tmp_path, dummy_checkpoint, "--seed", "5"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "img.refined.png"
    assert out.is_file() and str(out) in result.output
    refined = np.asarray(Image.open(out))
    assert refined.shape == s["image"].shape
    from refalign.pipelines.zoom import distance_to

    far = distance_to(s["mask"]) > 16
    assert np.array_equal(refined[far], s["image"][far])
    assert (refined[s["mask"]] != s["image"][s["mask"]]).any()
    # deterministic per seed
    again = runner.invoke(app, _single_args(tmp_path, dummy_checkpoint, "--seed", "5", "-o", str(tmp_path / "b.png")))
    assert again.exit_code == 0, again.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), refined)


def test_refuses_to_overwrite_then_overwrites(tmp_path, dummy_checkpoint):
    _write(tmp_path, names=("img.png", "m.png", "r.png"))
    args = _single_args(tmp_path, dummy_checkpoint, "--no-align")
    assert runner.invoke(app, args).exit_code == 0
    out = tmp_path / "img.refined.png"
    before = out.read_bytes()
    result = runner.invoke(app, args + ["--seed", "9"])
    assert result.exit_code == 2 and "already exists" in result.output
    assert out.read_bytes() == before
    result = runner.invoke(app, args + ["--seed", "9", "--overwrite"])
    assert result.exit_code == 0 and out.read_bytes() != before


def test_reference_mask_and_save_correspondence(tmp_path, dummy_checkpoint):
    _write(tmp_path, names=("img.png", "m.png", "r.png"))
    region = np.zeros((96, 96), np.uint8)
    region[20:50, 30:70] = 255
    Image.fromarray(region).save(tmp_path / "rm.png")
    corr = tmp_path / "corr.png"
    result = runner.invoke(app, _single_args(tmp_path, dummy_checkpoint, "--reference-mask", str(tmp_path / "rm.png"),
                                             "--save-correspondence", str(corr), "--guidance", "1.5",
                                             "--strength", "0.8", "--samples", "2"))
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(corr)), region)


def test_with_alignment_saves_correspondence(tmp_path, dummy_checkpoint):
    pytest.importorskip("refalign.pipelines.alignment")
    _write(tmp_path, names=("img.png", "m.png", "r.png"))
    corr = tmp_path / "corr.png"
    result = runner.invoke(app, _single_args(tmp_path, dummy_checkpoint, "--save-correspondence", str(corr)))
    assert result.exit_code == 0, result.output
    assert Image.open(corr).size == (96, 96)


@pytest.mark.parametrize(
    "extra,words",
    [(["--no-align", "--reference-mask", "x.png"], "exclude"), (["--no-align", "--save-correspondence", "c.png"], "nothing")],
)
def test_conflicting_options(tmp_path, extra, words, monkeypatch):
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: pytest.fail("model loaded"))
    _write(tmp_path, names=("img.png", "m.png", "r.png"))
    Image.fromarray(np.full((96, 96), 255, np.uint8)).save(tmp_path / "x.png")
    extra = [str(tmp_path / e) if e.endswith(".png") else e for e in extra]
    result = runner.invoke(app, _single_args(tmp_path, "unused", *extra))
    assert result.exit_code == 2 and words in result.output
    assert not (tmp_path / "img.refined.png").exists()


def test_missing_arguments(tmp_path):
    result = runner.invoke(app, ["refine", str(tmp_path / "img.png"), "--model", "x"])
    assert result.exit_code == 2 and "--mask" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------------------------------ batch


def _cases(root: Path, n: int = 3, broken: int | None = 1) -> list[Path]:
    folders = []
    for i in range(n):
        case = root / f"case{i:02d}"
        _write(case, seed=i)
        folders.append(case)
    if broken is not None:
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(folders[broken] / "mask.png")
    return folders


def test_batch_writes_skips_and_records_failures(tmp_path, dummy_checkpoint):
    folders = _cases(tmp_path / "cases")
    obj = np.zeros((96, 96), np.uint8)
    obj[5:90, 5:90] = 255
    Image.fromarray(obj).save(folders[2] / "reference_mask.png")
    args = ["refine", "--cases", str(tmp_path / "cases"), "--model", str(dummy_checkpoint), "--steps", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "2 refined, 0 already finished, 1 failed" in result.output and "Traceback" not in result.output
    for case in (folders[0], folders[2]):
        assert Image.open(case / "refined.png").size == (96, 96)
        assert not (case / batch.ERROR).exists()
        if (case / "correspondence_pred.png").exists():
            assert Image.open(case / "correspondence_pred.png").mode == "L"
    assert not (folders[1] / "refined.png").exists()
    assert "mask.png" in (folders[1] / batch.ERROR).read_text()

    # resume: finished cases are skipped (untouched); the fixed case runs and its error record goes
    stamp = (folders[0] / "refined.png").stat().st_mtime_ns
    _write(folders[1], seed=1)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 refined, 2 already finished, 0 failed" in result.output
    assert (folders[0] / "refined.png").stat().st_mtime_ns == stamp
    assert (folders[1] / "refined.png").is_file() and not (folders[1] / batch.ERROR).exists()

    result = runner.invoke(app, args + ["--overwrite", "--no-align"])
    assert result.exit_code == 0 and "3 refined" in result.output


def test_batch_rejects_bad_folder_and_single_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: pytest.fail("model loaded"))
    result = runner.invoke(app, ["refine", "--cases", str(tmp_path / "none"), "--model", "x"])
    assert result.exit_code == 2 and "none" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["refine", "--cases", str(tmp_path / "empty"), "--model", "x"])
    assert result.exit_code == 2 and "no case folders" in result.output
    result = runner.invoke(app, ["refine", "x.png", "--cases", str(tmp_path / "empty"), "--model", "x"])
    assert result.exit_code == 2 and "IMAGE" in result.output


class _FakePipe:
    def __call__(self, image, mask, reference, **kwargs):
        return RefineOutput(image, mask[:1, :1].repeat(reference.shape[0], 0).repeat(reference.shape[1], 1), None, [])


def _state(rank: int, world: int):
    from accelerate import PartialState

    st = SimpleNamespace(num_processes=world, process_index=rank, is_local_main_process=rank == 0, device="cpu")
    st.split_between_processes = lambda inputs: PartialState.split_between_processes(st, inputs)
    return st


def test_batch_shares_cases_between_processes(tmp_path):
    folders = _cases(tmp_path / "cases", n=5, broken=None)
    reports = [batch.refine_cases(_FakePipe(), tmp_path / "cases", state=_state(r, 2)) for r in range(2)]
    done = [set(r.done) for r in reports]
    assert done[0] and done[1] and not (done[0] & done[1]) and done[0] | done[1] == set(folders)
    assert all((f / "refined.png").is_file() for f in folders)
    # a rerun with a different world size finds everything finished
    again = batch.refine_cases(_FakePipe(), tmp_path / "cases", state=_state(0, 1))
    assert not again.done and len(again.skipped) == 5


def _launcher() -> str:
    launcher = Path(sys.executable).parent / "accelerate"
    launcher = str(launcher) if launcher.exists() else shutil.which("accelerate")
    return launcher or pytest.skip("accelerate launcher not installed")


@pytest.mark.slow
@pytest.mark.parametrize(
    "launch,world",
    [
        # on CPU without MPI, accelerate's own --cpu launcher starts one process: it must still do every case
        (["launch", "--num_processes", "2", "--cpu"], 1),
        # torchrun-started processes on a CPU-only machine form a gloo group and split the cases
        (["launch", "--multi_gpu", "--num_processes", "2"], 2),
    ],
    ids=["cpu-flag", "torchrun"],
)
def test_batch_under_accelerate_launch(tmp_path, dummy_checkpoint, launch, world):
    folders = _cases(tmp_path / "cases", n=4, broken=None)
    cmd = [_launcher(), *launch, "-m", "refalign.cli", "refine", "--cases", str(tmp_path / "cases"),
           "--model", str(dummy_checkpoint), "--steps", "2", "--no-align"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all((f / "refined.png").is_file() for f in folders)
    if world == 2:
        assert "(process 1/2)" in proc.stdout and "(process 2/2)" in proc.stdout
        assert proc.stdout.count("2 refined") == 2
    else:
        assert "4 refined" in proc.stdout


def test_several_references_on_the_command_line(tmp_path, dummy_checkpoint):
    _write(tmp_path, names=("img.png", "m.png", "r.png"))
    _write(tmp_path / "other", seed=1)
    args = _single_args(tmp_path, dummy_checkpoint, "--reference", str(tmp_path / "other" / "reference.png"),
                        "--save-correspondence", str(tmp_path / "corr.png"))
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "reference chosen per artifact region" in result.output
    assert list(tmp_path.glob("corr.ref*.png"))
