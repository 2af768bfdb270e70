"""`refalign refine` without `--mask`: the detector proposes the mask, the command says so and saves it beside the
output; when detection cannot help, one line asks for `--mask` and nothing is written (DESIGN §5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import textured_image, textured_warp_pair
from refalign.cli import app
from refalign.eval.cases import write_case
from refalign.pipelines.outputs import RefineOutput

runner = CliRunner()

pytestmark = pytest.mark.usefixtures("one_thread")

BLOCK = (slice(140, 170), slice(100, 135))  # the painted artifact: 30×35 px of flat colour


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    image, reference, _ = textured_warp_pair()
    image = image.copy()
    image[BLOCK] = (200, 40, 40)
    paths = {"image": tmp_path / "img.png", "reference": tmp_path / "ref.png"}
    Image.fromarray(image).save(paths["image"])
    Image.fromarray(reference).save(paths["reference"])
    return paths


def _args(files, *extra, model="unused-model"):
    return ["refine", str(files["image"]), "--reference", str(files["reference"]), "--model", str(model),
            "--steps", "2", *extra]


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_user_error(result, *words):
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in result.output


def _no_model(monkeypatch):
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: pytest.fail("model loaded"))


def test_refine_without_mask_detects_saves_and_refines(files, dummy_checkpoint, tmp_path):
    out = tmp_path / "out.png"
    result = runner.invoke(app, _args(files, "-o", str(out), model=dummy_checkpoint))
    assert result.exit_code == 0, result.output
    assert "no --mask given" in result.output and "ref.png" in result.output
    mask_file = tmp_path / "out.mask.png"
    assert out.is_file() and mask_file.is_file()
    detected = np.asarray(Image.open(mask_file)) > 127
    painted = np.zeros(detected.shape, bool)
    painted[BLOCK] = True
    assert (detected & painted).sum() / (detected | painted).sum() > 0.3
    # the detected mask is what was refined: pixels far from it are untouched
    from refalign.pipelines.zoom import distance_to

    image = np.asarray(Image.open(files["image"]))
    refined = np.asarray(Image.open(out))
    far = distance_to(detected) > 16
    assert np.array_equal(refined[far], image[far])
    assert (refined[painted] != image[painted]).any()


def test_unregistrable_reference_asks_for_mask_and_writes_nothing(files, monkeypatch):
    _no_model(monkeypatch)
    Image.fromarray(np.full((320, 320, 3), 128, np.uint8)).save(files["reference"])  # flat grey: no features
    before = _listing(files["image"].parent)
    result = runner.invoke(app, _args(files))
    _assert_user_error(result, "--mask", "img.png", "too few features")
    assert _listing(files["image"].parent) == before


def test_detection_tries_the_next_reference_when_one_does_not_register(files, monkeypatch, tmp_path):
    """With several references the first that registers proposes the mask; when none does, each one's reason is
    given."""
    pipe = _RecordingPipe()
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: pipe)
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((320, 320, 3), 128, np.uint8)).save(flat)  # no features: cannot register
    args = ["refine", str(files["image"]), "-r", str(flat), "-r", str(files["reference"]), "--steps", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "by registering with" in result.output and "ref.png (after 1 that did not register" in result.output
    assert (np.asarray(Image.open(tmp_path / "img.refined.mask.png")) > 127)[BLOCK].any()
    before = _listing(tmp_path)
    result = runner.invoke(app, ["refine", str(files["image"]), "-r", str(flat), "-r", str(flat), "-o",
                                 str(tmp_path / "b.png")])
    _assert_user_error(result, "--mask", "detection failed with any of the 2 references", "flat.png: cannot register")
    assert _listing(tmp_path) == before


def test_nothing_found_asks_for_mask(files, monkeypatch):
    _no_model(monkeypatch)
    image, _, _ = textured_warp_pair()
    Image.fromarray(image).save(files["image"])  # no artifact painted
    before = _listing(files["image"].parent)
    result = runner.invoke(app, _args(files, "--detect-z", "1000"))
    _assert_user_error(result, "--mask", "found no artifact", "--detect-z")
    assert _listing(files["image"].parent) == before


def test_existing_detected_mask_output_refused_before_anything_runs(files, monkeypatch):
    _no_model(monkeypatch)
    monkeypatch.setattr("refalign.detect.detect_artifacts", lambda *a, **k: pytest.fail("detector ran"))
    existing = files["image"].parent / "img.refined.mask.png"
    existing.write_bytes(b"keep me")
    result = runner.invoke(app, _args(files))
    _assert_user_error(result, "img.refined.mask.png", "--overwrite")
    assert existing.read_bytes() == b"keep me" and not (files["image"].parent / "img.refined.png").exists()


class _RecordingPipe:
    """Stands in for the model: records the call and returns the input unchanged."""

    def __init__(self):
        self.kwargs = None

    def __call__(self, image, mask, reference, **kwargs):
        self.kwargs = dict(kwargs, mask=mask)
        return RefineOutput(image, None, None, [])


@pytest.mark.parametrize("flag,expected", [([], True), (["--no-warped-guidance"], False)])
def test_warped_guidance_and_detected_mask_reach_the_pipeline(files, monkeypatch, tmp_path, flag, expected):
    pipe = _RecordingPipe()
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: pipe)
    result = runner.invoke(app, _args(files, "--no-align", *flag))
    assert result.exit_code == 0, result.output
    assert pipe.kwargs["warped_guidance"] is expected
    saved = np.asarray(Image.open(tmp_path / "img.refined.mask.png")) > 127
    assert np.array_equal(pipe.kwargs["mask"], saved) and saved[BLOCK].any()


def test_a_detected_mask_is_repaired_only_where_it_registers_unless_told_otherwise(files, monkeypatch, tmp_path):
    """A detected region may be clean, so its unregistered windows are kept (``DETECTED_UNREGISTERED``), and the run
    says so; an explicit ``--unregistered`` wins; a painted mask keeps the model's default."""
    pipe = _RecordingPipe()
    monkeypatch.setattr("refalign.cli._common.load_pipeline", lambda *a, **k: pipe)
    result = runner.invoke(app, _args(files, "-o", str(tmp_path / "a.png")))
    assert result.exit_code == 0, result.output
    assert pipe.kwargs["unregistered"] == "keep" and "repaired only where it registers" in result.output
    result = runner.invoke(app, _args(files, "-o", str(tmp_path / "b.png"), "--unregistered", "auto"))
    assert result.exit_code == 0, result.output
    assert pipe.kwargs["unregistered"] == "auto" and "repaired only where it registers" not in result.output
    mask = tmp_path / "m.png"
    Image.fromarray(np.asarray(Image.open(tmp_path / "a.mask.png"))).save(mask)
    result = runner.invoke(app, _args(files, "-o", str(tmp_path / "c.png"), "--mask", str(mask)))
    assert result.exit_code == 0, result.output
    assert pipe.kwargs["unregistered"] is None


def test_the_command_lines_detector_threshold_is_the_detectors_own():
    """The options write the default again (importing the detector at start-up costs 0.3 s); they must agree."""
    import typer.main

    from refalign.detect import DETECT_Z

    commands = typer.main.get_command(app).commands
    defaults = {name: next(p.default for p in commands[name].params if p.name == param)
                for name, param in (("refine", "detect_z"), ("detect", "z"))}
    assert defaults == {"refine": DETECT_Z, "detect": DETECT_Z}


def test_bench_detected_tables_detection_and_each_policy(tmp_path, dummy_checkpoint):
    """benchmarks/bench_detected.py: a pair the detector registers (a painted block it finds) and one it refuses
    (an unrelated reference); the table counts both and scores the found one under each policy."""
    truth, reference, _ = textured_warp_pair()
    image = truth.copy()
    image[BLOCK] = (200, 40, 40)
    mask = np.zeros(image.shape[:2], bool)
    mask[BLOCK] = True
    meta = {"artifact_kind": "blot", "reference_kind": "warp"}
    write_case(tmp_path / "cases" / "a", image=image, mask=mask, reference=reference, target=truth, meta=meta)
    write_case(tmp_path / "cases" / "b", image=image, mask=mask, reference=textured_image(seed=9), target=truth,
               meta=dict(meta, reference_kind="multiview"))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_detected.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cases"), "--model", str(dummy_checkpoint)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 cases: detection refused 1, found nothing on 0, proposed a mask on 1" in proc.stdout, proc.stdout
    assert "| warp | 1 | 1 |" in proc.stdout and "keep: image PSNR / worse than input" in proc.stdout, proc.stdout


def test_batch_forwards_warped_guidance(tmp_path):
    from refalign.eval import batch

    case = tmp_path / "cases" / "c0"
    case.mkdir(parents=True)
    image, reference, _ = textured_warp_pair()
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[BLOCK] = 255
    for name, arr in ((batch.IMAGE, image), (batch.MASK, mask), (batch.REFERENCE, reference)):
        Image.fromarray(arr).save(case / name)
    pipe = _RecordingPipe()
    report = batch.refine_cases(pipe, tmp_path / "cases", warped_guidance=False)
    assert report.done == [case] and pipe.kwargs["warped_guidance"] is False
