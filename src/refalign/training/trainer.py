"""The training loop of paper §3.4 on accelerate: one loop for 2 CPU processes or many GPUs.

Per optimizer step and process: ``batch_size × gradient_accumulation_steps`` synthesised samples (both modes mixed
by ``data.alignment_ratio``), the diffusion MSE (eq. 2; ε, v or x₀ target, optionally weighted onto the artifact) with the reference embedding dropped at rate 0.1 (§A.3),
plus, when ``align_loss_weight > 0``, the auxiliary eq. 5 alignment loss on alignment-mode samples
(:mod:`refalign.training.losses`). Noise, timesteps and dropout come from generators seeded by
``(seed, step, micro-step, process)`` and samples from ``(data seed, index)``, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from refalign.attention import CrossAttentionStore, capture_cross_attention
from refalign.checks import NonFiniteError, finite_or_none
from refalign.data.dataset import ShardedBatchSampler, alignment_only
from refalign.files import save_image
from refalign.training import checkpointing as ckpt
from refalign.training.config import TrainConfig, save_config, to_dict
from refalign.training.data_setup import build_datasets
from refalign.training.losses import alignment_loss, correspondence_targets, diffusion_loss, diffusion_target
from refalign.training.model import RefinerModel, build_pipeline, capture_layers, seeded_generator, trainable_parameter_groups
from refalign.pipelines.pipeline_refine_by_align import telea_fill_tensor
from refalign.training.validation import alignment_cases, correspondence_metrics, pipeline_miou, sample_grid

logger = get_logger(__name__)


def _mixed_precision(setting: str) -> str:
    if setting == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return setting


def train(config: TrainConfig, resume: str | None = None) -> Path:
    """Train; returns ``<output_dir>/final`` (a pipeline folder)."""
    out = Path(config.output_dir)
    resume_from = ckpt.resolve_resume(out, resume)  # a bad --resume fails before anything is built or written
    # Several processes without CUDA (torchrun / `accelerate launch --multi_gpu` on a CPU machine): gloo on CPU.
    # (`accelerate launch --cpu --num_processes N` starts N processes only with an MPI hostfile.)
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=_mixed_precision(config.mixed_precision),
        cpu=multi_cpu,
    )
    set_seed(config.seed)
    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")

    pipe = build_pipeline(config)
    pipe.to(accelerator.device)
    pipe.codec.requires_grad_(False)
    model = RefinerModel(pipe.unet, pipe.reference_encoder, residual_prediction=pipe.residual_prediction)
    model.train()
    groups = trainable_parameter_groups(model, config)
    o = config.optim
    optimizer = torch.optim.AdamW(
        groups, betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_epsilon, weight_decay=o.weight_decay
    )
    lr_scheduler = get_scheduler(
        o.lr_schedule, optimizer, num_warmup_steps=o.warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_steps * accelerator.num_processes,
    )
    ema = None
    if config.ema:
        ema = EMAModel([p for p in model.parameters() if p.requires_grad], decay=config.ema_decay)
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    raw = accelerator.unwrap_model(model)

    train_ds, val_ds = build_datasets(config.data, pipe.refalign_config, raw.reference_encoder.image_size, config.seed,
                                      progress=main and config.progress)
    align_layers = capture_layers(raw, config) if config.align_loss_weight > 0 else []

    start_step = 0
    if resume_from is not None:
        accelerator.load_state(str(resume_from / ckpt.STATE_DIR))
        start_step = ckpt.checkpoint_step(resume_from)
        logger.info(f"resumed from {resume_from} at step {start_step}", main_process_only=True)

    accum, n_proc = config.gradient_accumulation_steps, accelerator.num_processes
    sampler = ShardedBatchSampler(
        start_step * accum * n_proc, config.max_steps * accum * n_proc, config.batch_size, n_proc, accelerator.process_index
    )
    loader = torch.utils.data.DataLoader(
        train_ds, batch_sampler=sampler, num_workers=config.data.num_workers,
        persistent_workers=config.data.num_workers > 0,
    )
    val_batch = _collate([val_ds[i] for i in range(len(val_ds))], accelerator.device) if (val_ds and main) else None
    if val_batch is not None:
        val_batch["cases"] = alignment_cases(val_ds, min(len(val_ds), 16))
    training_record = to_dict(config)

    bar = tqdm(total=config.max_steps, initial=start_step, desc="train", disable=not (main and config.progress))
    metrics_path = out / "metrics.jsonl"
    step, micro = start_step, 0
    window = {"loss": 0.0, "align": 0.0, "n": 0, "wait": 0.0, "t0": time.perf_counter(), "samples": 0}
    t_start = t_wait = time.perf_counter()
    for batch in loader:
        window["wait"] += time.perf_counter() - t_wait
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        with accelerator.accumulate(model):
            loss, aux = _step_loss(model, raw, pipe, batch, config, align_layers, step, micro, accelerator.process_index)
            total = loss + config.align_loss_weight * aux if align_layers else loss
            if n_proc == 1:  # with several processes the all-reduced gradients carry a NaN to every one's weights
                _stop_if_non_finite(total, None, step + 1, out)
            accelerator.backward(total)
            if accelerator.sync_gradients and o.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), o.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        window["loss"] += float(loss.detach())
        window["align"] += float(aux.detach())
        window["n"] += 1
        window["samples"] += batch["image"].shape[0] * n_proc
        micro += 1
        if accelerator.sync_gradients:
            micro = 0
            step += 1
            _stop_if_non_finite(None, raw, step, out)
            if ema is not None:
                ema.step([p for p in raw.parameters() if p.requires_grad])
            bar.update(1)
            if main and (step % config.log_every == 0 or step == config.max_steps):
                _log(metrics_path, step, window, lr_scheduler, bar, align_layers)
            if main and val_batch is not None and (step % config.validate_every == 0 or step == config.max_steps):
                _validate(raw, pipe, ema, val_batch, out, step, metrics_path)
            if step % config.checkpoint_every == 0 and step < config.max_steps:
                _save_checkpoint(accelerator, pipe, raw, ema, out, step, training_record, config.checkpoints_total_limit)
            if config.time_limit_minutes is not None:
                if main and time.perf_counter() - t_start > 60.0 * config.time_limit_minutes:
                    accelerator.set_trigger()
                if accelerator.check_trigger():
                    logger.info(f"time limit of {config.time_limit_minutes} min reached at step {step}", main_process_only=True)
                    if main and val_batch is not None and step % config.validate_every != 0:
                        _validate(raw, pipe, ema, val_batch, out, step, metrics_path)
                    break
        t_wait = time.perf_counter()
    bar.close()
    accelerator.wait_for_everyone()
    _save_checkpoint(accelerator, pipe, raw, ema, out, step, training_record, config.checkpoints_total_limit)
    final = out / "final"
    if main:
        ckpt.save_pipeline(pipe, raw, ema, final, {**training_record, "step": step})
        logger.info(f"final model saved to {final}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _stop_if_non_finite(loss, model, step: int, out: Path) -> None:
    """Stop training with one line at the first NaN or infinite loss or weight (the weights of a step are checked
    before any checkpoint of it is saved, so every checkpoint on disk is finite)."""
    what = None
    if loss is not None and not bool(torch.isfinite(loss.detach()).all()):
        what = f"the training loss is {float(loss.detach())}"
    elif model is not None:
        bad = next((n for n, p in model.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())),
                   None)
        what = f"weight {bad} became NaN or infinite" if bad is not None else None
    if what is None:
        return
    found = ckpt.list_checkpoints(out)
    keep = f"the last good checkpoint is {found[-1]}" if found else "no checkpoint was saved yet"
    raise NonFiniteError(f"step {step}: {what}; training stopped ({keep}). Lower optim.lr_unet / optim.lr_encoder "
                         "or check the data, then --resume latest")


def _collate(items: list[dict], device) -> dict:
    return {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}


def sample_timesteps(num_train_timesteps: int, batch: int, high_share: float, generator) -> torch.Tensor:
    """Training timesteps: uniform over the schedule (eq. 2), except that each sample is drawn from the last 10 %
    with probability ``high_share`` (where few-step sampling evaluates the model)."""
    t = torch.randint(0, num_train_timesteps, (batch,), generator=generator)
    if high_share > 0:
        high = torch.randint(int(0.9 * num_train_timesteps), num_train_timesteps, (batch,), generator=generator)
        t = torch.where(torch.rand(batch, generator=generator) < high_share, high, t)
    return t


def _step_loss(model, raw, pipe, batch, config: TrainConfig, align_layers, step, micro, rank):
    """Diffusion loss (eq. 2, target per ``prediction_type``, optionally mask-weighted) and the auxiliary eq. 5 alignment loss (0 when off) of one micro-batch."""
    image, mask = batch["image"], batch["mask"]
    latents, masked_latents, latent_mask = pipe.prepare_inpainting_inputs(image, mask, sourced_fill(batch))
    b = latents.shape[0]
    gen = seeded_generator(config.seed, step, micro, rank)
    noise = torch.randn(latents.shape, generator=gen, dtype=torch.float32).to(latents)
    t = sample_timesteps(pipe.scheduler.config.num_train_timesteps, b, config.high_timestep_share, gen).to(latents.device)
    drop = (torch.rand(b, generator=gen) < config.embedding_dropout).to(latents.device)
    noisy = pipe.scheduler.add_noise(latents, noise, t)
    guidance = pipe.guidance_latents(batch["warped"], batch["warp_valid"])
    aux = torch.zeros((), device=latents.device)
    if align_layers:
        store = CrossAttentionStore(mask.float(), layers=align_layers, keep_grad=True)
        with capture_cross_attention(raw.unet, store):
            store.set_step(0)
            pred = model(noisy, t, masked_latents, latent_mask, batch["reference"], drop, guidance)
        enc = raw.reference_encoder
        targets = correspondence_targets(batch["correspondence"], enc.token_grid)
        weights = alignment_only(batch) * (~drop).float()
        aux = torch.stack(
            [alignment_loss(store.maps[(0, l)][:, : enc.num_patch_tokens], targets, weights, config.align_loss) for l in align_layers]
        ).mean()
    else:
        pred = model(noisy, t, masked_latents, latent_mask, batch["reference"], drop, guidance)
    target = diffusion_target(pipe.scheduler, latents, noise, t)
    return diffusion_loss(pred, target, latent_mask, config.mask_loss_weight), aux


def sourced_fill(batch: dict) -> torch.Tensor | None:
    """The masked-image fill of a batch holding engine samples: the transferred reference where a sample has one
    (``source_valid``), the classical fill elsewhere — what ``refinement.harmonize`` feeds the model at inference
    (:func:`refalign.pipelines.zoom.transferred_fill`). ``None`` when no sample has a source (the usual fill)."""
    valid = batch.get("source_valid")
    if valid is None or not bool(valid.any()):
        return None
    classical = telea_fill_tensor(batch["image"], batch["mask"])
    return torch.where(valid >= 0.5, batch["source"], classical)


def _log(path: Path, step: int, window: dict, lr_scheduler, bar, align_layers) -> None:
    elapsed = time.perf_counter() - window["t0"]
    n = max(1, window["n"])
    lrs = lr_scheduler.get_last_lr()
    record = {
        "step": step,
        "loss": window["loss"] / n,
        "lr_unet": lrs[0],
        "lr_encoder": lrs[1],
        "samples_per_s": window["samples"] / max(elapsed, 1e-9),
        "data_wait_share": window["wait"] / max(elapsed, 1e-9),
    }
    if align_layers:
        record["align_loss"] = window["align"] / n
    with path.open("a") as fh:
        fh.write(json.dumps(finite_or_none(record), allow_nan=False) + "\n")
    bar.set_postfix(loss=f"{record['loss']:.4f}", sps=f"{record['samples_per_s']:.1f}")
    window.update(loss=0.0, align=0.0, n=0, wait=0.0, t0=time.perf_counter(), samples=0)


def _validate(raw, pipe, ema, val_batch, out: Path, step: int, metrics_path: Path) -> None:
    params = [p for p in raw.parameters() if p.requires_grad]
    if ema is not None:
        ema.store(params)
        ema.copy_to(params)
    raw.eval()
    try:
        metrics = correspondence_metrics(raw, pipe, val_batch)
        metrics["val/align_miou"] = pipeline_miou(pipe, val_batch["cases"])
        grid = sample_grid(raw, pipe, val_batch)
    finally:
        raw.train()
        if ema is not None:
            ema.restore(params)
    (out / "samples").mkdir(exist_ok=True)
    save_image(grid, out / "samples" / f"step-{step:07d}.png")
    with metrics_path.open("a") as fh:
        fh.write(json.dumps(finite_or_none({"step": step, **metrics}), allow_nan=False) + "\n")
    logger.info(f"step {step}: token mIoU {metrics['val/miou']:.3f} (chance {metrics['val/chance']:.3f}), pipe.align mIoU {metrics['val/align_miou']:.3f}, val loss {metrics['val/loss']:.4f}")


def _save_checkpoint(accelerator, pipe, raw, ema, out: Path, step: int, record: dict, limit) -> None:
    folder = out / f"{ckpt.PREFIX}{step}"
    if folder.exists():
        return
    partial = out / f"{ckpt.PREFIX}{step}.partial"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial / ckpt.STATE_DIR))
    if accelerator.is_main_process:
        ckpt.save_pipeline(pipe, raw, ema, partial, {**record, "step": step})
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        partial.rename(folder)
        ckpt.rotate(out, limit)
        logger.info(f"saved {folder}")
    accelerator.wait_for_everyone()
