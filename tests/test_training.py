"""Training (paper §3.4): config, losses, one-batch overfitting, exact resume, CLI and a 2-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from refalign.errors import InputError
from refalign.training.config import TrainConfig, load_config, to_dict
from refalign.training.losses import alignment_loss, correspondence_targets, diffusion_loss, token_iou

ROOT = Path(__file__).resolve().parents[1]

#: the conftest dummy model's sizes, as training-config overrides (32 px, 8×8 token grid)
DUMMY = [
    "model.unet={sample_size: 16, block_out_channels: [16, 32, 32], attention_head_dim: 8, norm_num_groups: 8, cross_attention_dim: 32}",
    "model.dinov2={image_size: 32, patch_size: 4, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2}",
    "data.sources=[{kind: procedural, count: 3, size: 64, views: 2}]",
    "data.min_window=32",
    "batch_size=2",
    "log_every=1",
    "progress=false",
    "optim.warmup_steps=0",
    "optim.lr_unet=1e-3",
    "optim.lr_encoder=1e-3",
]


def dummy_config(tmp_path, *extra: str) -> TrainConfig:
    return load_config(None, DUMMY + [f"output_dir={tmp_path}"] + list(extra))


# ------------------------------------------------------------------------------------------ config
def test_presets_parse_and_round_trip():
    tiny = load_config(ROOT / "configs" / "tiny.yaml")
    sd = load_config(ROOT / "configs" / "sd.yaml")
    assert tiny.model.preset == "tiny" and tiny.align_loss_weight > 0
    assert sd.model.preset == "sd" and sd.align_loss_weight == 0 and sd.optim.lr_encoder > sd.optim.lr_unet
    assert isinstance(tiny.data.masks.kinds, tuple)
    again = load_config(None, [f"{k}={json.dumps(v)}" for k, v in to_dict(tiny).items()])
    assert to_dict(again) == to_dict(tiny)


def test_overrides_and_errors(tmp_path):
    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["optim.lr_unet=2e-5", "data.masks.area_max=0.05", "max_steps=7"])
    assert cfg.optim.lr_unet == 2e-5 and cfg.data.masks.area_max == 0.05 and cfg.max_steps == 7
    with pytest.raises(InputError, match="unknown key optim.lr_unett"):
        load_config(None, ["optim.lr_unett=1"])
    with pytest.raises(InputError, match="max_steps must be int"):
        load_config(None, ["max_steps=many"])
    with pytest.raises(InputError, match="kind must be one of"):
        load_config(None, ["data.sources=[{kind: flickr}]"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(InputError, match="bad.yaml: not valid YAML"):
        load_config(bad)


# ------------------------------------------------------------------------------------------ losses
def test_alignment_loss_prefers_the_true_correspondence():
    corr = torch.zeros(2, 1, 32, 32)
    corr[:, :, 8:16, 4:12] = 1
    targets = correspondence_targets(corr, (8, 8))
    right = targets + 1e-3
    wrong = torch.roll(targets, 3, dims=1) + 1e-3
    w = torch.ones(2)
    for kind in ("ce", "soft_iou"):
        assert alignment_loss(right, targets, w, kind) < alignment_loss(wrong, targets, w, kind)
    assert alignment_loss(wrong, targets, torch.zeros(2)) == 0
    assert token_iou(right, targets).min() == 1.0 and token_iou(wrong, targets).max() < 0.5
    assert diffusion_loss(torch.ones(3), torch.zeros(3)) == 1.0


def test_default_alignment_layers_are_the_16x16_query_layers():
    from refalign.models.presets import build_components
    from refalign.training.model import query_grid_layers

    unet = build_components("tiny", seed=0)["unet"]
    assert query_grid_layers(unet, (16, 16)) == [0, 5, 6]
    assert query_grid_layers(unet, (8, 8)) == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------ learning
def test_overfitting_one_batch_lowers_both_losses(tmp_path):
    from refalign.data.dataset import SynthesisDataset
    from refalign.data.procedural import procedural_objects
    from refalign.training.data_setup import sample_spec
    from refalign.training.model import RefinerModel, build_pipeline, capture_layers
    from refalign.training.trainer import _step_loss

    cfg = dummy_config(tmp_path, "align_loss_weight=1.0", "embedding_dropout=0.0")
    pipe = build_pipeline(cfg)
    model = RefinerModel(pipe.unet, pipe.reference_encoder)
    ds = SynthesisDataset(procedural_objects(2, size=64), sample_spec(cfg.data, pipe.refalign_config, 32), alignment_ratio=1.0)
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ds[0]}
    layers = capture_layers(model, cfg)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    history = []
    for _ in range(20):
        loss, aux = _step_loss(model, model, pipe, batch, cfg, layers, 0, 0, 0)  # same noise every step
        (loss + aux).backward()
        opt.step()
        opt.zero_grad()
        history.append((float(loss.detach()), float(aux.detach())))
    assert history[-1][0] < 0.6 * history[0][0]
    assert history[-1][1] < 0.8 * history[0][1]


def _weights(folder: Path) -> dict:
    out = {}
    for sub in ("unet", "reference_encoder"):
        for f in (folder / sub).glob("*.safetensors"):
            out.update({f"{sub}.{k}": v for k, v in load_file(f).items()})
    return out


def test_resume_is_bit_identical(tmp_path):
    from refalign.training.trainer import train

    extra = ["max_steps=4", "data.val_holdout=0", "align_loss_weight=0.5", "ema_decay=0.9"]
    straight = train(dummy_config(tmp_path / "a", *extra, "checkpoint_every=100"))
    train(dummy_config(tmp_path / "b", *extra, "max_steps=2", "checkpoint_every=2"))
    assert (tmp_path / "b" / "checkpoint-2" / "accelerate").is_dir()
    resumed = train(dummy_config(tmp_path / "b", *extra, "checkpoint_every=2"), resume="latest")
    wa, wb = _weights(straight), _weights(resumed)
    assert wa.keys() == wb.keys() and len(wa) > 10
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    record = json.loads((resumed / "refalign.json").read_text())["training"]
    assert record["step"] == 4 and record["max_steps"] == 4
    logged = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4]
    assert {"lr_unet", "lr_encoder", "samples_per_s", "data_wait_share", "align_loss"} <= set(logged[-1])


def test_checkpoint_limit_validation_and_grid(tmp_path):
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline
    from refalign.training.trainer import train

    cfg = dummy_config(
        tmp_path, "max_steps=3", "checkpoint_every=1", "checkpoints_total_limit=1", "validate_every=3",
        "data.val_samples=4", "data.val_holdout=0.5", "ema=false",
    )
    final = train(cfg)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3"]
    assert list((tmp_path / "samples").glob("step-0000003.png"))
    val = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if "val/miou" in x]
    assert 0.0 <= val[-1]["val/miou"] <= 1.0 and "val/chance" in val[-1]
    assert 0.0 <= val[-1]["val/align_miou"] <= 1.0  # pipe.align on full-image held-back cases
    pipe = RefineByAlignPipeline.from_pretrained(final)
    assert pipe.refalign_config.training["step"] == 3


def test_cli_train_errors_are_one_line(tmp_path):
    from refalign.cli import app

    result = CliRunner().invoke(app, ["train", "--set", "optim.nope=1", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown key optim.nope" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_two_process_cpu_run_writes_a_checkpoint(tmp_path):
    sets = [a for s in DUMMY + ["data.val_holdout=0", "align_loss_weight=0.5"] for a in ("--set", s)]
    # accelerate 1.x starts N CPU processes from `--cpu --num_processes N` only with an MPI hostfile; the torchrun
    # launcher (`--multi_gpu`) works on CPU and the trainer then selects gloo.
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "-m", "refalign.cli",
        "train", "--output-dir", str(tmp_path), "--max-steps", "2", "--checkpoint-every", "1", *sets,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "checkpoint-2" / "model_index.json").is_file()
    assert (tmp_path / "checkpoint-2" / "accelerate" / "random_states_1.pkl").is_file()
    assert (tmp_path / "final" / "refalign.json").is_file()


def test_diffusion_targets_and_mask_weighting():
    from diffusers import DDIMScheduler

    from refalign.models.presets import SCHEDULER
    from refalign.training.losses import diffusion_loss, diffusion_target

    x0, eps, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([10, 900])
    for kind, want in (("epsilon", eps), ("sample", x0)):
        sched = DDIMScheduler(**{**SCHEDULER, "prediction_type": kind})
        assert torch.equal(diffusion_target(sched, x0, eps, t), want)
    v_sched = DDIMScheduler(**{**SCHEDULER, "prediction_type": "v_prediction"})
    v = diffusion_target(v_sched, x0, eps, t)
    a = v_sched.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    assert torch.allclose(v, a * eps - (1 - a**2).sqrt() * x0, atol=1e-6)
    # the mask weight moves the loss towards the error under the mask, and w = 1 is eq. 2 exactly
    pred, target = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    pred[..., 0, 0] = 1.0  # error only in the masked cell
    mask = torch.zeros(1, 1, 2, 2)
    mask[..., 0, 0] = 1.0
    assert diffusion_loss(pred, target, mask, 1.0) == diffusion_loss(pred, target) == 0.25
    assert abs(float(diffusion_loss(pred, target, mask, 7.0)) - 7.0 / 10.0) < 1e-6


def test_prediction_type_and_guidance_options_train_and_save(tmp_path):
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline
    from refalign.training.trainer import train

    cfg = dummy_config(tmp_path, "max_steps=2", "model.prediction_type=v_prediction", "mask_loss_weight=4",
                       "model.masked_fill=telea",
                       "model.warped_guidance=true", "data.val_holdout=0", "align_loss_weight=0.5")
    final = train(cfg)
    pipe = RefineByAlignPipeline.from_pretrained(final)
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.refalign_config.masked_fill == "telea"
    assert pipe.uses_warped_guidance and pipe.unet.config.in_channels == 3 * 12 + 2
    # fine-tuning a guided model needs the option on, said in one line
    with pytest.raises(ValueError, match="warped_guidance"):
        train(dummy_config(tmp_path / "again", "max_steps=1", f"model.init_from={final}"))


def test_residual_prediction_starts_from_the_fill_and_round_trips(tmp_path):
    """``model.residual_prediction``: x₀ = masked-image input + U-Net output, output layer zeroed when switched on,
    so a 1-step sample reproduces the classical fill; saved in refalign.json, refused beside a non-x₀ scheduler."""
    from refalign.errors import CheckpointError
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline
    from refalign.training.model import build_pipeline
    from refalign.training.trainer import train

    with pytest.raises(InputError, match="residual_prediction needs"):
        dummy_config(tmp_path, "model.residual_prediction=true", "model.prediction_type=v_prediction")
    with pytest.raises(InputError, match="timestep_spacing"):
        dummy_config(tmp_path, "model.timestep_spacing=sideways")
    options = ("model.prediction_type=sample", "model.residual_prediction=true", "model.masked_fill=telea",
               "model.timestep_spacing=trailing")
    pipe = build_pipeline(dummy_config(tmp_path / "fresh", *options))
    assert pipe.residual_prediction and pipe.scheduler.config.timestep_spacing == "trailing"
    g = torch.Generator().manual_seed(0)
    res = pipe.resolution
    image = torch.rand(1, 3, res, res, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, res, res)
    mask[..., 8:20, 10:22] = 1
    _, masked, latent_mask = pipe.prepare_inpainting_inputs(image, mask)
    tokens = pipe.encode_reference(torch.rand(1, 3, 32, 32, generator=g) * 2 - 1)
    noisy = torch.randn(masked.shape, generator=g)
    out = pipe.unet_forward(noisy, torch.tensor([999]), masked, latent_mask, tokens)
    assert torch.equal(out, masked)  # zero output: x₀ is the fill itself
    pipe.scheduler.set_timesteps(1)
    assert int(pipe.scheduler.timesteps[0]) == 999  # trailing: one step starts from pure noise

    final = train(dummy_config(tmp_path / "run", "max_steps=2", "data.val_holdout=0", *options))
    loaded = RefineByAlignPipeline.from_pretrained(final)
    assert loaded.residual_prediction and loaded.scheduler.config.prediction_type == "sample"
    assert loaded.unet.conv_out.weight.abs().sum() > 0  # it trained away from zero
    # a hand-edited checkpoint whose scheduler no longer predicts x₀ is refused in one line naming the file
    sched = Path(final) / "scheduler" / "scheduler_config.json"
    sched.write_text(sched.read_text().replace('"sample"', '"epsilon"'))
    with pytest.raises(CheckpointError, match="residual_prediction needs a scheduler"):
        RefineByAlignPipeline.from_pretrained(final)


def test_high_timestep_share_draws_that_share_from_the_top_of_the_schedule():
    from refalign.training.trainer import sample_timesteps

    uniform = sample_timesteps(1000, 4000, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(uniform, torch.randint(0, 1000, (4000,), generator=torch.Generator().manual_seed(0)))
    biased = sample_timesteps(1000, 4000, 0.5, torch.Generator().manual_seed(0))
    top = (biased >= 900).float().mean().item()
    assert 0.5 < top < 0.6 and biased.min() >= 0 and biased.max() <= 999  # 0.5 + 0.5 · 0.1 expected
    with pytest.raises(InputError, match="high_timestep_share"):
        dummy_config(Path("unused"), "high_timestep_share=1.5")


def test_training_writes_the_window_geometry_the_samples_read(tmp_path):
    from refalign.training.data_setup import sample_spec
    from refalign.training.model import build_pipeline

    cfg = dummy_config(tmp_path, "data.align_context=3.0", "data.refine_context=2.5", "data.min_window=48")
    pipe = build_pipeline(cfg)
    rc = pipe.refalign_config
    assert (rc.alignment.context, rc.refinement.context) == (3.0, 2.5)
    assert rc.alignment.min_window == rc.refinement.min_window == 48 and rc.refinement.reference_fill == 128
    spec = sample_spec(cfg.data, rc, 32)
    assert (spec.align_context, spec.refine_context, spec.min_window, spec.fill) == (3.0, 2.5, 48, 128)
    assert spec.resolution == rc.resolution
