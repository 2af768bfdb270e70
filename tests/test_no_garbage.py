"""No garbage with exit 0, no traceback (issue: numbers, formats and broken state checked like files are).

Bad numbers are refused with one line and exit code 2 before any model work; a model that returns NaN or infinity
for a window is refused instead of pasted; and — property-style, over many seeded random masks and corrupted
model outputs — no pixel outside the paste's allowed band ever changes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import make_dummy_pipeline, synthetic_scene
from test_cli_inputs import files, no_model  # noqa: F401  (fixtures: the scene's three PNGs; no model may load)
from refalign.checks import NonFiniteError, check_number, check_seed, finite_or_none, require_finite
from refalign.cli import app
from refalign.errors import CheckpointError, InputError
from refalign.pipelines import zoom
from refalign.pipelines.config import RefalignConfig

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def _args(files, *extra, model="unused-model"):
    return ["refine", str(files["image"]), "--mask", str(files["mask"]), "--reference", str(files["reference"]),
            "--model", str(model), *extra]


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(result, *named: str, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    text = result.output.replace("\r", "\n")  # a progress bar (stderr) may share the captured output
    lines = [line for line in text.splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for word in named:
        assert word in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------- numbers, unit level


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_check_number_refuses_non_finite(value):
    with pytest.raises(InputError, match="--guidance"):
        check_number(value, "--guidance", lo=0.0)


def test_check_number_ranges_and_types():
    assert check_number(0.5, "x", lo=0.0, hi=1.0) == 0.5
    assert check_number(None, "x", lo=0.0) is None
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        check_number(0.0, "x", lo=0.0, hi=1.0, lo_open=True)
    with pytest.raises(InputError, match="whole number"):
        check_number(2.5, "x", lo=1, integer=True)
    with pytest.raises(InputError):
        check_number("ten", "x")
    with pytest.raises(InputError):
        check_number(True, "x")


@pytest.mark.parametrize("seed", [-1, 2**64, 18446744073709551616, 1.5])
def test_check_seed(seed):
    with pytest.raises(InputError, match="2\\^64-1"):
        check_seed(seed)
    assert check_seed(2**64 - 1) == 2**64 - 1


def test_require_finite_and_strict_json_records():
    require_finite(np.zeros(3), "x")
    require_finite(torch.zeros(3), "x")
    with pytest.raises(NonFiniteError, match="50.0%"):
        require_finite(torch.tensor([0.0, float("nan")]), "x")
    line = json.dumps(finite_or_none({"loss": float("nan"), "step": 3, "miou": float("inf")}), allow_nan=False)
    assert json.loads(line) == {"loss": None, "step": 3, "miou": None}


# ------------------------------------------------------------------------------------------- numbers, CLI level


@pytest.mark.parametrize(
    "extra,named",
    [
        (["--guidance", "inf"], "--guidance"),
        (["--guidance", "nan"], "--guidance"),
        (["--guidance", "1000"], "--guidance"),
        (["--strength", "nan"], "--strength"),
        (["--detect-z", "inf"], "--detect-z"),
        (["--seed", "18446744073709551616"], "--seed"),
        (["--seed", "-3"], "--seed"),
    ],
    ids=["guidance-inf", "guidance-nan", "guidance-huge", "strength-nan", "detect-z-inf", "seed-2^64", "seed-neg"],
)
def test_bad_numbers_refused_before_model(files, no_model, extra, named):
    before = _listing(files["image"].parent)
    result = runner.invoke(app, _args(files, *extra))
    assert_one_line_error(result, named)
    assert _listing(files["image"].parent) == before


@pytest.mark.parametrize(
    "command,named",
    [(["align", "{image}", "--mask", "{mask}", "--reference", "{reference}", "--seed", str(2**64)], "--seed"),
     (["align-search", "{cases}", "--steps", "5000"], "--steps"),
     (["detect", "{image}", "--reference", "{reference}", "-o", "{out}", "--z", "nan"], "--z"),
     (["detect", "{image}", "--reference", "{reference}", "-o", "{out}", "--max-regions", "0"], "--max-regions"),
     (["bench", "{cases}", "--method", "refalign", "-o", "{out}", "--steps", "5000"], "--steps"),
     (["bench", "{cases}", "--method", "telea", "-o", "{out}", "--seed", "-1"], "--seed"),
     (["example", "-o", "{out}", "--steps", "5000"], "--steps"),
     (["example", "-o", "{out}", "--seed", str(2**64)], "--seed")],
    ids=["align-seed", "align-search-steps", "detect-z-nan", "detect-regions-0", "bench-steps", "bench-seed",
         "example-steps", "example-seed"],
)
def test_other_commands_refuse_bad_numbers_before_model(files, no_model, dummy_checkpoint, command, named):
    names = {k: str(v) for k, v in files.items()} | {"cases": str(files["image"].parent), "out": str(
        files["image"].parent / "out.png")}
    before = _listing(files["image"].parent)
    model = ["--model", str(dummy_checkpoint)] if "detect" not in command else []
    args = [a.format(**names) for a in command] + model
    assert_one_line_error(runner.invoke(app, args), named)
    assert _listing(files["image"].parent) == before


def test_steps_above_the_schedule_refused_before_model(files, no_model, dummy_checkpoint):
    before = _listing(files["image"].parent)
    result = runner.invoke(app, _args(files, "--steps", "2000", model=dummy_checkpoint))
    assert_one_line_error(result, "--steps", "1000")
    assert _listing(files["image"].parent) == before


def test_largest_seed_runs(files, dummy_checkpoint):
    result = runner.invoke(app, _args(files, "--no-align", "--steps", "1", "--seed", str(2**64 - 1),
                                      model=dummy_checkpoint))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "section,key,value,named",
    [
        ("refinement", "num_inference_steps", "ten", "num_inference_steps"),
        ("refinement", "guidance_scale", float("nan"), "guidance_scale"),
        ("refinement", "strength", 2.0, "strength"),
        ("refinement", "dilation", -1.0, "dilation"),
        ("alignment", "threshold", float("inf"), "threshold"),
        ("alignment", "layer", 2.5, "layer"),
    ],
)
def test_bad_refalign_json_refused_before_model(files, dummy_checkpoint, tmp_path, monkeypatch, section, key, value,
                                                named):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(dummy_checkpoint, ckpt)
    data = json.loads((ckpt / "refalign.json").read_text())
    data[section][key] = value
    (ckpt / "refalign.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=named):
        RefalignConfig.load(ckpt / "refalign.json")
    result = runner.invoke(app, _args(files, "--no-align", model=ckpt))
    assert_one_line_error(result, "refalign.json", named)
    assert not (files["image"].parent / "img.refined.png").exists()


# ------------------------------------------------------------------------------------------- the paste band


def _random_mask(rng, h, w) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(1, 4))):
        t, l = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        mask[t : t + int(rng.integers(1, 12)), l : l + int(rng.integers(1, 12))] = True
    if mask.all():
        mask[0, 0] = False
    return mask


def _corrupt(rng, shape) -> np.ndarray:
    """A float patch with NaN, +inf and -inf sprinkled in (or, in some trials, none)."""
    patch = rng.uniform(-1e6, 1e6, shape).astype(np.float32)
    bad = rng.random(shape[:2]) < rng.choice([0.0, 0.01, 0.5, 1.0])
    patch[bad] = rng.choice([np.nan, np.inf, -np.inf], size=(int(bad.sum()), shape[2]))
    return patch


def test_paste_never_touches_a_pixel_outside_its_band_property():
    """300 seeded trials: random masks, windows, radii and weights (some NaN/inf) and patches with NaN/inf.
    Either the paste is refused and the image is untouched, or only pixels of weight > 0 changed."""
    rng = np.random.default_rng(18)
    refused = pasted = 0
    for _ in range(300):
        h, w = int(rng.integers(16, 60)), int(rng.integers(16, 60))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = _random_mask(rng, h, w)
        plan = zoom.plan_windows(mask, context=float(rng.uniform(1.0, 3.0)), min_size=8)[0]
        size = plan.window.size
        weights = zoom.paste_weights(plan.region_mask(), int(rng.integers(1, 6)),
                                     zoom.valid_region((h, w), plan.window))
        if rng.random() < 0.2:
            weights = weights.copy()
            weights[rng.random(weights.shape) < 0.05] = rng.choice([np.nan, np.inf])
        patch = _corrupt(rng, (size, size, 3)) if rng.random() < 0.7 else rng.integers(0, 256, (size, size, 3),
                                                                                        dtype=np.uint8)
        before = image.copy()
        try:
            zoom.paste(image, patch, weights, plan.window)
        except NonFiniteError:
            refused += 1
            assert np.array_equal(image, before)
            continue
        pasted += 1
        band = np.zeros((h, w), bool)
        band_win = weights > 0
        t0, l0 = max(0, plan.window.top), max(0, plan.window.left)
        t1, l1 = min(h, plan.window.bottom), min(w, plan.window.right)
        band[t0:t1, l0:l1] = band_win[t0 - plan.window.top : t1 - plan.window.top,
                                      l0 - plan.window.left : l1 - plan.window.left]
        assert np.array_equal(image[~band], before[~band])
    assert refused > 50 and pasted > 50  # both branches exercised


def test_residual_patch_refuses_non_finite_detail():
    base = np.full((16, 16, 3), 100, np.uint8)
    detail = np.zeros((16, 16, 3), np.float32)
    detail[3, 3] = np.nan
    with pytest.raises(NonFiniteError):
        zoom.residual_patch(base, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), detail)


def test_pipeline_never_changes_a_pixel_outside_the_band_property(monkeypatch):
    """30 seeded trials through the tiny pipeline (both paste modes, random bands): random masks; in some trials
    the U-Net returns NaN, inf or 1e38 at a random step. A corrupted window is refused (nothing returned, the
    input untouched); otherwise every pixel farther from the mask than the paste radius is bit-identical."""
    pipe = make_dummy_pipeline()
    forward = pipe.unet_forward
    rng = np.random.default_rng(7)
    state = {"poison_at": -1, "calls": 0, "value": np.nan}

    def unet(*a, **k):
        out = forward(*a, **k)
        state["calls"] += 1
        if state["calls"] == state["poison_at"]:
            out = out.clone()
            out.view(-1)[:: int(rng.integers(1, 50))] = state["value"]
        return out

    monkeypatch.setattr(pipe, "unet_forward", unet)
    scene = synthetic_scene(64, seed=1)
    refused = clean = 0
    cfg = pipe.refalign_config.refinement
    for _ in range(30):
        mask = _random_mask(rng, 64, 64)
        cfg.paste_mode = str(rng.choice(["window", "residual"]))  # both pastes, various bands
        cfg.dilation, cfg.feather = float(rng.uniform(0.5, 6.0)), rng.choice([None, float(rng.uniform(0.0, 4.0))])
        cfg.ramp = float(rng.uniform(0.0, 3.0))
        poisoned = rng.random() < 0.5
        state.update(calls=0, poison_at=int(rng.integers(1, 3)) if poisoned else -1,
                     value=rng.choice([np.nan, np.inf, -np.inf, 1e38]))
        image = scene["image"].copy()
        try:
            out = pipe(image, mask, scene["reference"], no_align=True, num_inference_steps=2, guidance_scale=2.0,
                       seed=int(rng.integers(0, 1000)))
        except NonFiniteError as exc:
            assert poisoned, exc
            assert np.array_equal(image, scene["image"])
            refused += 1
            continue
        r = max(zoom.paste_radius(w, pipe.resolution, cfg.dilation, cfg.feather) for w in out.windows)
        outside = zoom.distance_to(mask) > r
        assert np.array_equal(out.image[outside], scene["image"][outside])
        clean += int((out.image != scene["image"]).any())  # the model did repaint inside the band
    assert refused >= 5 and clean >= 5


def test_a_model_trained_to_nan_weights_changes_nothing(files, dummy_checkpoint, tmp_path):
    """The issue's case: a checkpoint whose weights went NaN in training. Refining with it is one line, exit 2,
    and nothing is written (before: a black blob reaching 16 px outside the mask, exit 0)."""
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "nan-model"
    shutil.copytree(dummy_checkpoint, ckpt)
    weights = next((ckpt / "unet").glob("*.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
               for k, v in load_file(weights).items()}, weights)
    before = _listing(files["image"].parent)
    result = runner.invoke(app, _args(files, "--no-align", "--steps", "2", model=ckpt))
    assert_one_line_error(result, "NaN")
    assert _listing(files["image"].parent) == before


def test_cli_refuses_a_model_that_returns_nan(files, dummy_checkpoint, monkeypatch):
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline

    forward = RefineByAlignPipeline.unet_forward
    monkeypatch.setattr(RefineByAlignPipeline, "unet_forward",
                        lambda self, *a, **k: torch.full_like(forward(self, *a, **k), float("nan")))
    result = runner.invoke(app, _args(files, "--no-align", "--steps", "1", model=dummy_checkpoint))
    assert_one_line_error(result, "NaN")
    assert not (files["image"].parent / "img.refined.png").exists()


# ------------------------------------------------------------------------------------------- training


def _train_cli(tmp_path, *extra):
    from test_training import DUMMY

    sets = [a for s in DUMMY for a in ("--set", s)]
    return runner.invoke(app, ["train", "--output-dir", str(tmp_path / "run"), *sets, *extra])


@pytest.mark.parametrize("setting,named", [
    ("optim.lr_unet=.nan", "optim.lr_unet"), ("optim.lr_encoder=.inf", "lr_encoder"),
    ("optim.lr_unet=-1", "optim.lr_unet"), ("ema_decay=2", "ema_decay"), ("seed=-1", "seed"), ("optim.adam_epsilon=0", "adam_epsilon")])
def test_train_bad_numbers_refused_before_anything_is_written(tmp_path, monkeypatch, setting, named):
    monkeypatch.setattr("refalign.training.trainer.build_pipeline", lambda *a: pytest.fail("model built"))
    result = _train_cli(tmp_path, "--set", setting)
    assert_one_line_error(result, named)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["nonexistent", "renamed-checkpoint"])
def test_train_resume_bad_folder_writes_nothing(tmp_path, monkeypatch, name):
    monkeypatch.setattr("refalign.training.trainer.build_pipeline", lambda *a: pytest.fail("model built"))
    if name != "nonexistent":
        (tmp_path / name / "accelerate").mkdir(parents=True)  # a state folder, but no step in its name
    result = _train_cli(tmp_path, "--resume", str(tmp_path / name))
    assert_one_line_error(result, name, "checkpoint-N", "no such" if name == "nonexistent" else "not a training")
    assert not (tmp_path / "run").exists()


def _finite_weights(folder: Path) -> bool:
    from safetensors.torch import load_file

    tensors = [t for f in folder.rglob("*.safetensors") for t in load_file(f).values()]
    return bool(tensors) and all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def test_train_stops_at_the_first_nan_loss_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from test_training import dummy_config

    from refalign.training import trainer

    loss, calls = trainer.diffusion_loss, []

    def poisoned(*a, **k):
        calls.append(1)
        value = loss(*a, **k)
        return value * float("nan") if len(calls) == 3 else value

    monkeypatch.setattr(trainer, "diffusion_loss", poisoned)
    cfg = dummy_config(tmp_path, "max_steps=4", "checkpoint_every=2", "data.val_holdout=0")
    with pytest.raises(NonFiniteError, match="step 3: the training loss is nan.*checkpoint-2"):
        trainer.train(cfg)
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "final").exists()
    assert not list(tmp_path.glob("checkpoint-3*"))
    assert _finite_weights(tmp_path / "checkpoint-2")
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl"))


def test_train_stops_when_a_weight_becomes_non_finite(tmp_path, monkeypatch):
    """A finite loss whose gradient is NaN (the NaN gradient of an unselected ``torch.where`` branch) turns the
    weights NaN at step 2: the run stops there, before checkpoint-2 is written."""
    from test_training import dummy_config

    from refalign.training import trainer

    step_loss, calls = trainer._step_loss, []

    def poisoned(model, *a, **k):
        calls.append(1)
        loss, aux = step_loss(model, *a, **k)
        if len(calls) == 2:
            w = next(p for p in model.parameters() if p.requires_grad)
            loss = loss + torch.where(torch.tensor(True), torch.zeros(()), w.sum() * float("nan"))
        return loss, aux

    monkeypatch.setattr(trainer, "_step_loss", poisoned)
    cfg = dummy_config(tmp_path, "max_steps=4", "checkpoint_every=1", "data.val_holdout=0", "ema=false")
    with pytest.raises(NonFiniteError, match="step 2: weight .* NaN or infinite.*checkpoint-1"):
        trainer.train(cfg)
    assert [p.name for p in tmp_path.glob("checkpoint-*")] == ["checkpoint-1"]
    assert _finite_weights(tmp_path / "checkpoint-1")


@pytest.mark.parametrize("damage", ["none", "pickle", "torch", "empty-folder"])
def test_training_state_files_are_checked_without_loading_them(tmp_path, damage):
    import pickle

    from refalign.training.checkpointing import check_training_state

    state = tmp_path / "checkpoint-5" / "accelerate"
    state.mkdir(parents=True)
    plain, zipped = pickle.dumps({"step": 5, "rng": list(range(100))}), state / "optimizer.bin"
    (state / "random_states_0.pkl").write_bytes(plain)
    torch.save({"w": torch.arange(100.0)}, zipped)
    if damage == "pickle":
        (state / "random_states_0.pkl").write_bytes(plain[:-20])
    elif damage == "torch":
        zipped.write_bytes(zipped.read_bytes()[:-200])
    elif damage == "empty-folder":
        shutil.rmtree(state)
        state.mkdir()
    if damage == "none":
        check_training_state(tmp_path / "checkpoint-5")
    else:
        with pytest.raises(InputError, match="random_states_0.pkl|optimizer.bin|missing or empty"):
            check_training_state(tmp_path / "checkpoint-5")


def test_resume_latest_with_a_truncated_state_file_offers_the_previous_checkpoint(tmp_path, monkeypatch):
    from test_training import dummy_config

    from refalign.training.trainer import train

    train(dummy_config(tmp_path / "run", "max_steps=4", "checkpoint_every=2", "data.val_holdout=0"))
    state = tmp_path / "run" / "checkpoint-4" / "accelerate"
    victim = next(p for p in sorted(state.iterdir()) if p.suffix in (".bin", ".pkl"))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    before = _listing(tmp_path / "run")
    monkeypatch.setattr("refalign.training.trainer.build_pipeline", lambda *a: pytest.fail("model built"))
    result = _train_cli(tmp_path, "--max-steps", "6", "--checkpoint-every", "2", "--set", "data.val_holdout=0",
                        "--resume", "latest")
    line = assert_one_line_error(result, victim.name, "checkpoint-2")
    assert "--resume" in line
    assert _listing(tmp_path / "run") == before


# ------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("ext", [".xbm", ".msp", ".ico", ".gif", ".bmp", ".pdf", ".txt", ""])
def test_lossy_or_unknown_output_formats_refused_before_model(files, no_model, ext):
    out = files["image"].parent / f"out{ext}"
    result = runner.invoke(app, _args(files, "-o", str(out)))
    assert_one_line_error(result, f"out{ext}", ".png")
    assert not out.exists()


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff", ".webp", ".jpg"])
def test_accepted_output_formats_round_trip(files, dummy_checkpoint, ext):
    out = files["image"].parent / f"out{ext}"
    result = runner.invoke(app, _args(files, "--no-align", "--steps", "1", "-o", str(out), model=dummy_checkpoint))
    assert result.exit_code == 0, result.output
    written = np.asarray(Image.open(out).convert("RGB"))
    original = np.asarray(Image.open(files["image"]).convert("RGB"))
    far = zoom.distance_to(np.asarray(Image.open(files["mask"])) > 127) > 20
    if ext == ".jpg":
        assert "JPEG is lossy" in result.output and "quality 95" in result.output
        assert np.abs(written.astype(int) - original)[far].mean() < 4
    else:  # lossless: every pixel far from the mask is bit-identical
        assert np.array_equal(written[far], original[far])


def test_save_image_refuses_a_lossy_extension(tmp_path):
    from refalign.errors import OutputError
    from refalign.files import save_image

    with pytest.raises(OutputError, match="out.gif"):
        save_image(np.zeros((8, 8, 3), np.uint8), tmp_path / "out.gif")
    assert not list(tmp_path.iterdir())


def test_animated_gif_input_refused(files, no_model):
    frames = [Image.fromarray(np.full((96, 96, 3), v, np.uint8)) for v in (10, 200)]
    gif = files["image"].with_suffix(".gif")
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    files["image"] = gif
    result = runner.invoke(app, _args(files))
    assert_one_line_error(result, "img.gif", "2 frames")


def test_max_pixels_is_the_real_limit_not_pils(tmp_path, monkeypatch):
    """PIL refuses images above its own ``MAX_IMAGE_PIXELS`` (2x: error, 1x: warning); ``max_pixels`` replaces it
    (here PIL's limit is shrunk so a small image stands in for a 100-megapixel one)."""
    from refalign.files import load_image

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 = 4096 > 2 * 1000
    assert load_image(path, max_pixels=5000).shape == (64, 64, 3)
    with pytest.raises(InputError, match="--max-pixels"):
        load_image(path, max_pixels=4000)
    assert Image.MAX_IMAGE_PIXELS == 1000  # PIL's own limit is restored for everyone else


def test_max_pixels_checked_for_range(files, no_model):
    assert_one_line_error(runner.invoke(app, _args(files, "--max-pixels", "0")), "--max-pixels")


# ------------------------------------------------------------------------------------------- state hygiene


def test_stale_temp_files_are_removed_when_the_file_is_written(tmp_path):
    from refalign.files import save_image

    stale = tmp_path / ".refined.png.ab12cd.tmp"
    stale.write_bytes(b"half")
    stale.chmod(0o600)
    other = tmp_path / ".mask.png.ab12cd.tmp"
    other.write_bytes(b"someone else's")
    save_image(np.zeros((8, 8, 3), np.uint8), tmp_path / "refined.png")
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mask.png.ab12cd.tmp", "refined.png"]


def _batch_case(root: Path, name: str) -> Path:
    s = synthetic_scene()
    case = root / name
    case.mkdir(parents=True)
    Image.fromarray(s["image"]).save(case / "image.png")
    Image.fromarray(s["mask"].astype(np.uint8) * 255).save(case / "mask.png")
    Image.fromarray(s["reference"]).save(case / "reference.png")
    return case


@pytest.mark.parametrize("damage", ["empty", "truncated", "complete"])
def test_batch_rerun_refines_an_empty_or_truncated_result_again(tmp_path, dummy_checkpoint, damage):
    a, b = _batch_case(tmp_path / "cases", "a"), _batch_case(tmp_path / "cases", "b")
    args = ["refine", "--cases", str(tmp_path / "cases"), "--model", str(dummy_checkpoint), "--steps", "1",
            "--no-align", "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    good = (a / "refined.png").read_bytes()
    (a / ".refined.png.x1y2z3.tmp").write_bytes(b"left by a SIGKILL")
    if damage == "empty":
        (a / "refined.png").write_bytes(b"")
    elif damage == "truncated":
        (a / "refined.png").write_bytes(good[: len(good) // 2])
    stamp = (b / "refined.png").stat().st_mtime_ns
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    expect = "2 already finished" if damage == "complete" else "1 refined, 1 already finished"
    assert expect in result.output
    assert (a / "refined.png").read_bytes() == good  # same seed: the same bytes as the first run
    assert (b / "refined.png").stat().st_mtime_ns == stamp
    assert not (a / ".refined.png.x1y2z3.tmp").exists()  # removed, whether the case ran again or not


def test_refine_cases_and_bench_share_the_exit_code_for_failed_cases(tmp_path, dummy_checkpoint):
    from refalign.cli._common import EXIT_CASES_FAILED

    _batch_case(tmp_path / "cases", "a")
    (_batch_case(tmp_path / "cases", "broken") / "mask.png").write_bytes(b"not a png")
    refine = runner.invoke(app, ["refine", "--cases", str(tmp_path / "cases"), "--model", str(dummy_checkpoint),
                                 "--steps", "1", "--no-align", "--device", "cpu"])
    bench = runner.invoke(app, ["bench", str(tmp_path / "cases"), "--method", "telea", "--output",
                                str(tmp_path / "out"), "--no-ocr"])
    assert refine.exit_code == bench.exit_code == EXIT_CASES_FAILED == 1
    assert "broken" in refine.output and "broken" in bench.output


# ------------------------------------------------------------------------------------------- demo


def _demo_editor(name: str):
    gr = pytest.importorskip("gradio")
    from refalign.demo.app import build_demo

    demo = build_demo(lambda *a, **k: pytest.fail("the pipeline ran"), output_root=None)
    return gr, next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == name)


@pytest.mark.parametrize("kind,words", [("text", "not an image"), ("empty", "empty"), ("truncated", "truncated"),
                                        ("oversized", "too large")])
def test_demo_bad_upload_is_one_line_without_server_paths(tmp_path, monkeypatch, caplog, kind, words):
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    gr, editor = _demo_editor("refalign-image")
    upload = tmp_path / "upload-dir" / "photo.png"
    upload.parent.mkdir()
    Image.fromarray(synthetic_scene(64)["image"]).save(upload)
    data = upload.read_bytes()
    if kind == "text":
        upload.write_text("hello")
    elif kind == "empty":
        upload.write_bytes(b"")
    elif kind == "truncated":
        upload.write_bytes(data[: len(data) // 2])
    else:  # PIL refuses above 2x its limit: shrink the limit so a small file stands in for a huge one
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    payload = EditorData(background=FileData(path=str(upload), orig_name="photo.png"), layers=[], composite=None)
    caplog.set_level("WARNING")
    with pytest.raises(gr.Error) as info:
        editor.preprocess(payload)
    message = str(info.value.message)
    assert words in message and "image upload" in message and "\n" not in message
    assert str(tmp_path) not in message and "upload-dir" not in message
    records = [r for r in caplog.records if r.name.startswith("refalign")]
    assert len(records) == 1 and records[0].exc_info is None and str(tmp_path) not in records[0].getMessage()


def test_demo_bad_upload_over_http_is_one_line(tmp_path, caplog, capsys, monkeypatch):
    """The same through a served page and gradio's client (what a script or another front end sends)."""
    import logging
    import socket

    # earlier CliRunner tests leave root handlers on their closed stderr; logging would print its own traceback
    live = [h for h in logging.root.handlers if not getattr(getattr(h, "stream", None), "closed", False)]
    monkeypatch.setattr(logging.root, "handlers", live)

    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    from refalign.demo.app import build_demo, launch

    bad = tmp_path / "uploads-here" / "photo.png"
    bad.parent.mkdir()
    bad.write_text("not an image")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_demo(lambda *a, **k: pytest.fail("the pipeline ran"), output_root=tmp_path / "out")
    launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    caplog.set_level("WARNING")
    try:
        value = {"background": handle_file(str(bad)), "layers": [], "composite": None, "id": None}
        with pytest.raises(Exception) as info:
            Client(f"http://127.0.0.1:{port}/", verbose=False).predict(value, value, 2, 1.0, 0, False,
                                                                      api_name="/refine")
    finally:
        demo.close()
    assert str(info.value) == "the image upload is empty or not an image; upload a PNG or JPEG"
    records = [r for r in caplog.records if r.name.startswith("refalign")]
    assert len(records) == 1 and records[0].exc_info is None
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("steps,guidance,seed,named", [
    (float("inf"), 1.0, 0, "steps"), (2, float("nan"), 0, "guidance"), (2, float("inf"), 0, "guidance"),
    (2, 1.0, float("inf"), "seed"), (2, 1.0, float("nan"), "seed")])
def test_demo_controls_refuse_non_finite_numbers(steps, guidance, seed, named):
    pytest.importorskip("gradio")
    from refalign.demo.app import _check_controls

    with pytest.raises(InputError, match=named):
        _check_controls(steps, guidance, seed)


def test_demo_serving_folder_is_removed_on_sigterm():
    import os
    import signal
    import time

    pytest.importorskip("gradio")
    from refalign.demo.app import serving_folder

    before = signal.getsignal(signal.SIGTERM)
    env = os.environ.get("GRADIO_TEMP_DIR")
    with pytest.raises(KeyboardInterrupt):
        with serving_folder() as root:
            (root / "uploads").mkdir()
            (root / "uploads" / "users-photo.png").write_bytes(b"private")
            assert os.environ["GRADIO_TEMP_DIR"] == str(root / "uploads")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    assert not root.exists()
    assert signal.getsignal(signal.SIGTERM) == before and os.environ.get("GRADIO_TEMP_DIR") == env


def test_demo_removes_the_folder_of_a_killed_server(tmp_path, monkeypatch):
    import subprocess
    import sys

    pytest.importorskip("gradio")
    from refalign.demo import app as demo_app

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{demo_app.SERVING_PREFIX}{int(dead.stdout)}-abc"
    (orphan / "uploads").mkdir(parents=True)
    alive = tmp_path / f"{demo_app.SERVING_PREFIX}{os.getpid()}-def"
    alive.mkdir()
    monkeypatch.setattr(demo_app.tempfile, "tempdir", str(tmp_path))
    with demo_app.serving_folder() as root:
        assert root.parent == tmp_path
        assert not orphan.exists() and alive.exists()
    assert not root.exists()


SERVER = """
import sys
from refalign.demo.app import build_demo, launch, serving_folder
with serving_folder() as root:
    (root / "uploads").mkdir(parents=True, exist_ok=True)
    (root / "uploads" / "users-photo.png").write_bytes(b"private")
    demo = build_demo(lambda *a, **k: None, output_root=root / "outputs")
    print(root, flush=True)
    launch(demo, port=int(sys.argv[1]), quiet=True)
print("stopped", flush=True)
"""


def test_demo_server_cleans_its_temporary_folder_on_sigterm(tmp_path):
    """A real gradio server in a subprocess, stopped with SIGTERM: its folder of uploads is gone, exit code 0."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("gradio")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        root = Path(proc.stdout.readline().strip())
        assert root.is_dir(), proc.stderr.read() if proc.poll() is not None else "no folder"
        deadline, served = time.time() + 120, False
        while time.time() < deadline and not served:
            try:
                served = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status == 200
            except OSError:
                time.sleep(0.3)
        assert served
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "stopped" in out and not root.exists()
    assert "Traceback" not in err


def test_a_stop_while_the_demo_server_starts_closes_it_without_a_traceback(monkeypatch):
    """SIGTERM inside serving_folder is a KeyboardInterrupt; gradio answers it only once it serves. One that lands
    during gradio's start-up checks (seen on a busy machine) closes the server and returns, like a stop later."""
    gr = pytest.importorskip("gradio")
    from refalign.demo.app import build_demo, launch

    demo = build_demo(lambda *a, **k: None)
    closed = []

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("signal 15")

    monkeypatch.setattr(demo, "launch", interrupted)
    monkeypatch.setattr(demo, "close", lambda *a, **k: closed.append(True))
    assert isinstance(demo, gr.Blocks)
    assert launch(demo, port=0) is None and closed == [True]
