"""A new user's first run (issue 17): the public way to load the shipped model, one line for every failure
(unwritable outputs included, checked before any model work), outputs written as one set, messages, help and logs
that fit an 80-column or piped terminal, errors before torch is imported, labelled pictures, housekeeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image
from typer.main import get_command
from typer.testing import CliRunner

import refalign
from refalign.cli import app
from test_cli_inputs import files, no_model  # noqa: F401  (shared fixtures: the scene's files; no model may load)

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _one_error_line(result, named: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.output
    assert "Traceback" not in result.output
    return lines[0]


# ------------------------------------------------------------------------------------- 1. the public API


def test_dir_lists_the_public_names_and_the_shipped_model_has_a_public_path():
    names = dir(refalign)
    for name in ("RefineByAlignPipeline", "default_model_path", "load_example", "load_image", "__version__"):
        assert name in names, name
    assert (refalign.default_model_path() / "model_index.json").is_file()


def test_from_pretrained_with_a_missing_path_names_it_instead_of_asking_the_hub():
    with pytest.raises(refalign.CheckpointError, match="path/to/checkpoint: no such model folder"):
        refalign.RefineByAlignPipeline.from_pretrained("path/to/checkpoint")


def test_package_doctests_run_as_written():
    """The package docstring shows the API on the shipped model and the photo example; it must run."""
    import doctest

    import refalign.shipped

    for module in (refalign, refalign.shipped):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]


def test_readme_python_snippets_run_as_written(tmp_path, monkeypatch):
    blocks = _readme_python_blocks()
    assert blocks, "the README has no Python snippet"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


# -------------------------------------------------------------- 2. unwritable outputs, one line, one set


@pytest.mark.parametrize("command", ["refine", "align", "example"])
def test_output_under_a_file_is_refused_before_the_model_loads(files, tmp_path, no_model, command):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    before = sorted(p.name for p in tmp_path.iterdir())
    refs = ["--mask", str(files["mask"]), "-r", str(files["reference"])]
    args = {
        "refine": ["refine", str(files["image"]), *refs, "-o", str(blocker / "x.png")],
        "align": ["align", str(files["image"]), *refs, "-o", str(tmp_path / "corr.png"),
                  "--overlay", str(blocker / "ov.png")],
        "example": ["example", "-o", str(blocker / "ex")],
    }[command]
    line = _one_error_line(runner.invoke(app, args), str(blocker))
    assert "not a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_before_the_model_loads(files, tmp_path, no_model):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        args = ["refine", str(files["image"]), "--mask", str(files["mask"]), "-r", str(files["reference"]),
                "-o", str(ro / "x.png")]
        assert "cannot write here" in _one_error_line(runner.invoke(app, args), str(ro))
    finally:
        ro.chmod(0o755)


def test_check_writable_uses_a_real_write(tmp_path, monkeypatch):
    from refalign.cli._common import check_writable
    from refalign.errors import OutputError

    def refuse(*a, **k):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(OutputError, match="cannot write here .Read-only file system"):
        check_writable(tmp_path)


def _fail_writing(monkeypatch, name: str, error: OSError) -> None:
    """Make :func:`refalign.files.save_image` raise ``error`` (naming the path) for files called ``name``."""
    import refalign.files

    real = refalign.files.save_image

    def failing(image, path):
        if Path(path).name == name:
            error.filename = str(path)
            raise error
        real(image, path)

    monkeypatch.setattr("refalign.files.save_image", failing)


def test_outputs_are_written_as_one_set(tmp_path, monkeypatch):
    """When the second file cannot be written, the first is removed again and the OSError is one line."""
    from refalign.cli import _common

    _fail_writing(monkeypatch, "b.png", OSError(28, "No space left on device"))
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(OSError):
        _common.write_outputs({tmp_path / "a.png": img, tmp_path / "b.png": img})
    assert not (tmp_path / "a.png").exists()


def test_align_writes_correspondence_and_overlay_together_or_neither(files, tmp_path, dummy_checkpoint, monkeypatch):
    _fail_writing(monkeypatch, "ov.png", PermissionError(13, "Permission denied"))
    corr, ov = tmp_path / "corr.png", tmp_path / "ov.png"
    res = runner.invoke(app, ["align", str(files["image"]), "--mask", str(files["mask"]), "-r", str(files["reference"]),
                              "-o", str(corr), "--overlay", str(ov), "--model", str(dummy_checkpoint)])
    assert "Permission denied" in _one_error_line(res, str(ov))
    assert not corr.exists() and not ov.exists()


# ---------------------------------------------------------------------------------------------- 3. messages


def test_folder_given_as_reference_reads_well(files, tmp_path, no_model):
    res = runner.invoke(app, ["refine", str(files["image"]), "--mask", str(files["mask"]), "-r", str(tmp_path)])
    line = _one_error_line(res, str(tmp_path))
    assert "is a folder; give the path of the reference file" in line and " an reference" not in line


def test_fully_transparent_reference_says_its_alpha_was_read_as_the_object(files, no_model):
    ref = Image.open(files["reference"]).convert("RGBA")
    ref.putalpha(0)
    ref.save(files["reference"])
    res = runner.invoke(app, ["refine", str(files["image"]), "--mask", str(files["mask"]), "-r",
                              str(files["reference"])])
    line = _one_error_line(res, str(files["reference"]))
    assert "transparency is read as the object mask" in line and "--object-mask" in line


def test_existing_folder_as_output_says_so_at_once(files, tmp_path, no_model):
    folder = tmp_path / "outdir"
    folder.mkdir()
    res = runner.invoke(app, ["refine", str(files["image"]), "--mask", str(files["mask"]), "-r",
                              str(files["reference"]), "-o", str(folder)])
    assert "is a folder; give a file name" in _one_error_line(res, str(folder))


def test_rgba_to_jpeg_says_the_alpha_is_dropped(files, tmp_path, dummy_checkpoint):
    img = Image.open(files["image"]).convert("RGBA")
    img.putalpha(180)
    img.save(files["image"])
    out = tmp_path / "out.jpg"
    res = runner.invoke(app, ["refine", str(files["image"]), "--mask", str(files["mask"]), "-r",
                              str(files["reference"]), "-o", str(out), "--model", str(dummy_checkpoint), "--no-align",
                              "--steps", "1"])
    assert res.exit_code == 0, res.output
    assert "has transparency" in res.output and "without alpha" in res.output
    assert Image.open(out).mode == "RGB"


# ------------------------------------------------------------------------------------- 4. help and logs


def _run(args: list[str], **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "80", **env}
    return subprocess.run([sys.executable, "-m", "refalign.cli", *args], capture_output=True, text=True, env=environ)


def test_help_of_every_command_fits_80_piped_columns_with_option_names_whole():
    group = get_command(app)
    for name, command in group.commands.items():
        res = _run([name, "--help"])
        assert res.returncode == 0, res.stderr
        assert "…" not in res.stdout, name
        assert all(len(line) <= 80 for line in res.stdout.splitlines()), name
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts + param.secondary_opts:
                    assert opt in res.stdout, f"{name}: {opt}"


def test_info_fits_80_columns_and_says_how_to_see_all_training_settings():
    res = _run(["info"])
    assert res.returncode == 0, res.stderr
    assert all(len(line) <= 80 for line in res.stdout.splitlines()), res.stdout
    assert "refalign info --json" in " ".join(res.stdout.split()) and "Loading pipeline" not in res.stderr


def test_refine_is_quiet_without_v_and_ends_with_a_summary_line(files, tmp_path, dummy_checkpoint):
    out = tmp_path / "out.png"
    args = ["refine", str(files["image"]), "--mask", str(files["mask"]), "-r", str(files["reference"]), "-o", str(out),
            "--model", str(dummy_checkpoint), "--steps", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "INFO" not in res.output and "it/s" not in res.output  # no logs, no progress bar when piped
    assert "refined 1 window in" in res.output and "confidence" in res.output
    assert res.output.rstrip().splitlines()[-1] == f"wrote {out}"
    loud = runner.invoke(app, ["-v", *args, "--overwrite"])
    assert loud.exit_code == 0 and ("DEBUG" in loud.output or "INFO" in loud.output), loud.output


# ----------------------------------------------------------------------------------------------- 5. start-up


def test_bad_input_errors_come_before_torch_is_imported(tmp_path):
    """The mechanism behind the < 0.5 s error (timed in benchmarks/bench_startup.py): validation first."""
    code = (
        "import sys\n"
        "from refalign.cli import app\n"
        "try:\n"
        f"    app(['refine', {str(tmp_path / 'missing.png')!r}, '--mask', 'm.png', '-r', 'r.png'])\n"
        "except SystemExit as e:\n"
        "    heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "    print(e.code, heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.stdout.strip() == "2 []", res.stdout + res.stderr
    assert "no such image file" in res.stderr


def test_cli_process_ends_quickly_with_its_outputs_and_lines_complete(files, tmp_path, dummy_checkpoint):
    """A finished command leaves without the libraries' teardown (os._exit): the file and every line are there,
    the exit code is kept; an error still exits 2."""
    out = tmp_path / "out.png"
    res = _run(["refine", str(files["image"]), "--mask", str(files["mask"]), "-r", str(files["reference"]),
                "-o", str(out), "--model", str(dummy_checkpoint), "--steps", "1"], OMP_NUM_THREADS="1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith(f"wrote {out}") and Image.open(out).size == (96, 96)
    res = _run(["refine", str(files["image"]), "--mask", str(files["mask"]), "-r", str(files["reference"]),
                "-o", str(out), "--model", str(dummy_checkpoint)])
    assert res.returncode == 2 and "already exists" in res.stderr


# ---------------------------------------------------------------------------------------- 6. pictures


def test_label_puts_text_on_a_bar_above_the_unchanged_image():
    from refalign.demo.visuals import LABEL_BACKGROUND, label

    img = np.random.default_rng(0).integers(0, 255, (60, 200, 3), dtype=np.uint8)
    out = label(img, "reference: region used for the repair, outlined, confidence 0.87")
    bar = out.shape[0] - 60
    assert out.shape[1:] == img.shape[1:] and bar > 0
    np.testing.assert_array_equal(out[bar:], img)
    text = (out[:bar] != np.array(LABEL_BACKGROUND, np.uint8)).any(axis=2)
    assert 0.01 < text.mean() < 0.5  # there is text, and it is text, not a filled block
    narrow = label(img[:, :80], "a long label that has to wrap over several lines to fit")
    assert narrow.shape[0] - 60 > bar  # wrapped, not cut


def test_correspondence_and_token_map_are_separate_labelled_pictures():
    from refalign.demo.visuals import correspondence_picture, labelled_before_after, token_map_picture

    ref = np.full((64, 300, 3), 120, np.uint8)
    region = np.zeros((64, 300), bool)
    region[10:30, 20:60] = True
    soft = np.zeros((64, 300), np.float32)
    soft[40:60, 200:250] = 1.0
    used = correspondence_picture(ref, region, 0.5, "warp")
    tokens = token_map_picture(ref, soft)
    for pic in (used, tokens):
        assert pic.shape[1:] == (300, 3) and pic.shape[0] > 64
    # the picture of the region used carries no heat tint; the token map does, where the map is
    assert not (used[-64:][40:60, 200:250] != used[-64:][40:60, 100:150]).any()
    assert (tokens[-64:][45, 220] != tokens[-64:][45, 100]).any()
    panel = labelled_before_after(ref, ref, region, ("input", "refined"))
    assert panel.shape[1] == 2 * 300 + 8 and panel.shape[0] > 64
    from refalign.demo.visuals import artifact_zoom

    zoom = artifact_zoom([ref, ref, ref], ["input", "refined", "undamaged"], region, size=128)
    assert zoom.shape[1] == 3 * 128 + 2 * 8 and zoom.shape[0] > 128


# ------------------------------------------------------------------------------------------ 7. housekeeping


def test_example_output_folder_is_ignored_by_git():
    assert "refalign-example/" in (ROOT / ".gitignore").read_text()


def test_shipped_model_records_no_absolute_paths():
    def strings(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from strings(v)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)
        elif isinstance(node, str):
            yield node

    folder = refalign.default_model_path()
    for path in folder.rglob("*.json"):
        for s in strings(json.loads(path.read_text())):
            assert not os.path.isabs(s) and not s.startswith("~"), f"{path.name}: {s}"
