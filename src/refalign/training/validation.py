"""Validation during training: alignment accuracy of the eq. 5 map on held-back objects, and a sample grid.

The correspondence mIoU here is measured on the token grid (map binarised at half its maximum vs. tokens at least
half covered by the true correspondence), at the diffusion step the alignment stage reads (``refalign.json``
alignment defaults) and at every cross-attention layer. Chance is the IoU of each sample's map against another
sample's correspondence (shuffled pairs), reported beside it.
"""

from __future__ import annotations

import numpy as np
import torch

from refalign.data.masks import sample_artifact_mask
from refalign.data.samples import make_reference
from refalign.models import codecs
from refalign.attention import CrossAttentionStore, capture_cross_attention
from refalign.training.losses import correspondence_targets, diffusion_loss, diffusion_target, token_iou
from refalign.training.model import query_grid_layers, seeded_generator


def align_timestep(pipe) -> int:
    """The timestep the alignment stage reads: index ``alignment.step`` of a ``num_inference_steps`` schedule."""
    a = pipe.refalign_config.alignment
    sched = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
    sched.set_timesteps(a.num_inference_steps)
    return int(sched.timesteps[min(a.step, len(sched.timesteps) - 1)])


@torch.no_grad()
def correspondence_metrics(model, pipe, batch: dict, seed: int = 0) -> dict[str, float]:
    """``val/miou_l{i}`` for every layer, ``val/miou`` (mean over the token-grid layers), ``val/chance`` and
    ``val/loss`` (eq. 2 at the same timestep) on one validation batch of alignment-mode samples."""
    image, mask = batch["image"], batch["mask"]
    latents, masked_latents, latent_mask = pipe.prepare_inpainting_inputs(image, mask)
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=seeded_generator(seed), dtype=torch.float32).to(latents)
    t = torch.full((b,), align_timestep(pipe), dtype=torch.long, device=latents.device)
    noisy = pipe.scheduler.add_noise(latents, noise, t)
    store = CrossAttentionStore(mask.float(), layers=None)
    with capture_cross_attention(model.unet, store):
        store.set_step(0)
        pred = model(noisy, t, masked_latents, latent_mask, batch["reference"],
                     torch.zeros(b, dtype=torch.bool, device=latents.device),
                     pipe.guidance_latents(batch["warped"], batch["warp_valid"]))
    enc = model.reference_encoder
    grid = enc.token_grid
    targets = correspondence_targets(batch["correspondence"], grid).to(latents.device)
    n_patch = enc.num_patch_tokens
    target = diffusion_target(pipe.scheduler, latents, noise, t)
    out: dict[str, float] = {
        "val/loss": float(diffusion_loss(pred, target)),
        "val/loss_mask": float(diffusion_loss(pred * latent_mask, target * latent_mask) / latent_mask.mean().clamp_min(1e-8)),
    }
    grid_layers = set(query_grid_layers(model.unet, grid))
    per_grid = []
    shuffled = torch.roll(targets, 1, dims=0)
    chance = []
    for (step, layer), maps in sorted(store.maps.items()):
        maps = maps[:, :n_patch].float()
        iou = float(token_iou(maps, targets).mean())
        out[f"val/miou_l{layer}"] = iou
        chance.append(float(token_iou(maps, shuffled).mean()))
        if layer in grid_layers:
            per_grid.append(iou)
    out["val/miou"] = float(np.mean(per_grid)) if per_grid else float("nan")
    out["val/chance"] = float(np.mean(chance))
    out["val/best_layer"] = float(max(store.maps, key=lambda k: out[f"val/miou_l{k[1]}"])[1])
    return out


def alignment_cases(dataset, count: int, reference_size: int = 128) -> list[dict]:
    """Full-image alignment cases from a validation :class:`SynthesisDataset`'s photos, for ``pipe.align``: the
    photo, an artifact ``G(M_o)``, the reference ``S(T(I_o ⊗ M_o))`` at ``reference_size`` with its object mask,
    and the exact correspondence on it (deterministic in the dataset's seed)."""
    cases = []
    for i in range(count):
        rng = np.random.default_rng((dataset.seed, 7, i))
        photo = dataset.photos[int(rng.integers(len(dataset.photos)))]
        artifact = sample_artifact_mask(photo.mask, rng, dataset.spec.masks, photo.detail)
        ref, (corr, obj), _ = make_reference(photo.image, photo.mask, [artifact, photo.mask], reference_size, rng, dataset.spec)
        cases.append({"image": photo.image, "mask": artifact, "reference": ref, "object_mask": obj, "correspondence": corr})
    return cases


def pipeline_miou(pipe, cases: list[dict]) -> float:
    """Mean IoU (§4) between ``pipe.align``'s ``M*`` and the true correspondence, at the pipeline's alignment
    defaults (step, layer, post-processing)."""
    ious = []
    for c in cases:
        out = pipe.align(c["image"], c["mask"], c["reference"], object_mask=c["object_mask"],
                         generator=torch.Generator().manual_seed(0))
        inter = np.logical_and(out.mask, c["correspondence"]).sum()
        union = np.logical_or(out.mask, c["correspondence"]).sum()
        ious.append(inter / max(union, 1))
    return float(np.mean(ious))


@torch.no_grad()
def sample_grid(model, pipe, batch: dict, steps: int = 20, seed: int = 0, rows: int = 4) -> np.ndarray:
    """A picture of ``rows`` validation samples: masked input | DDIM sample (``steps`` steps, no guidance) |
    target | reference with the true correspondence tinted red. ``(rows·R, 4·R, 3)`` uint8."""
    image, mask, ref = batch["image"][:rows], batch["mask"][:rows], batch["reference"][:rows]
    corr = batch["correspondence"][:rows]
    latents0, masked_latents, latent_mask = pipe.prepare_inpainting_inputs(image, mask)
    sched = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
    sched.set_timesteps(steps)
    x = torch.randn(latents0.shape, generator=seeded_generator(seed), dtype=torch.float32).to(latents0)
    keep = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    guidance = pipe.guidance_latents(batch["warped"][:rows], batch["warp_valid"][:rows])
    for t in sched.timesteps:
        eps = model(x, t.to(x.device).expand(x.shape[0]), masked_latents, latent_mask, ref, keep, guidance)
        x = sched.step(eps, t, x).prev_sample

    out = codecs.decode(pipe.codec, x).clamp(-1, 1)
    out = out * mask + image * (1 - mask)
    size = image.shape[-1]
    ref_small = torch.nn.functional.interpolate(ref, size=(size, size), mode="bilinear", align_corners=False)
    corr_small = torch.nn.functional.interpolate(corr, size=(size, size), mode="nearest")
    tint = ref_small.clone()
    tint[:, 0] = torch.where(corr_small[:, 0] > 0.5, torch.ones_like(tint[:, 0]), tint[:, 0])
    cols = [image * (1 - mask), out, image, tint]
    grid = torch.cat([torch.cat(list(c), dim=-2) for c in cols], dim=-1)  # (3, rows·R, 4·R)
    return ((grid.float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
