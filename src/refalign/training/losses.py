"""Training losses: the diffusion objective (paper eq. 2) and an auxiliary alignment loss on the eq. 5 map.

The auxiliary loss is ours, not the paper's: at the paper's scale (SD + pretrained DINOv2, 167k images) the
cross-attention correspondence emerges from the inpainting objective alone; for the small ``tiny`` model trained
from scratch it does not (measured IoU ≈ chance). Because synthesis knows the exact correspondence mask on the
reference (§3.4 bookkeeping), the eq. 5 map can be supervised directly. ``align_loss_weight = 0`` is the paper's
objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diffusion_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the U-Net should output for ``z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε``: ``ε`` (paper eq. 2), the velocity
    ``v = √ᾱ_t ε − √(1−ᾱ_t) z_0`` (Salimans & Ho 2022) or ``z_0``, following ``scheduler.config.prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ValueError(f"unsupported prediction_type {kind!r}; use epsilon, v_prediction or sample")


def diffusion_loss(
    pred: torch.Tensor, target: torch.Tensor, latent_mask: torch.Tensor | None = None, mask_weight: float = 1.0
) -> torch.Tensor:
    """Paper eq. 2, ``E ||target − R_θ(z_t, t, c)||²`` in fp32, optionally weighted towards the artifact.

    With ``mask_weight = w ≠ 1`` each latent cell under ``latent_mask`` ``(B, 1, h, w)`` counts ``w`` times a cell
    outside it (a weighted mean, so the loss scale stays comparable). At small scale this matters: outside the
    mask the answer is almost copied from the masked-image channels, and a uniform mean spends most of the
    gradient on that (ours, not the paper's; ``w = 1`` is eq. 2 exactly).
    """
    err = (pred.float() - target.float()) ** 2
    if latent_mask is None or mask_weight == 1.0:
        return err.mean()
    weight = 1.0 + (mask_weight - 1.0) * latent_mask.float()
    return (err * weight).sum() / (weight.sum() * err.shape[1]).clamp_min(1e-8)


def correspondence_targets(correspondence: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Correspondence masks ``(B, 1, Rr, Rr)`` → fraction of each reference token covered, ``(B, rows·cols)``."""
    return F.adaptive_avg_pool2d(correspondence.float(), grid).flatten(1)


def alignment_loss(
    maps: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, kind: str = "ce", eps: float = 1e-8
) -> torch.Tensor:
    """Supervise eq. 5 maps with the known correspondence.

    Args:
        maps: ``(B, N)`` eq. 5 maps over the patch tokens (non-negative: mask-weighted sums of softmax rows).
        targets: ``(B, N)`` token coverage of the correspondence mask (:func:`correspondence_targets`).
        weights: ``(B,)`` per-sample weights (0 for samples without an exact correspondence or an empty target).
        kind: ``"ce"`` — cross-entropy ``−Σ q log p`` between the target ``q = t / Σt`` and the map normalised to a
            distribution ``p = m / Σm``; ``"soft_iou"`` — ``1 − Σ min(p̂, t) / Σ max(p̂, t)`` with ``p̂ = m / max m``.

    Returns:
        the weighted mean over samples (0 when every weight is 0, still in the graph).
    """
    maps = maps.float()
    targets = targets.float()
    valid = weights.float() * (targets.sum(1) > 0).float()
    if kind == "ce":
        p = maps / maps.sum(1, keepdim=True).clamp_min(eps)
        q = targets / targets.sum(1, keepdim=True).clamp_min(eps)
        per = -(q * torch.log(p + eps)).sum(1)
    elif kind == "soft_iou":
        p = maps / maps.amax(1, keepdim=True).clamp_min(eps)
        per = 1.0 - torch.minimum(p, targets).sum(1) / torch.maximum(p, targets).sum(1).clamp_min(eps)
    else:
        raise ValueError(f"unknown alignment loss {kind!r}; use ce or soft_iou")
    return (per * valid).sum() / valid.sum().clamp_min(1.0)


def token_iou(maps: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-sample IoU on the token grid between the map binarised at ``threshold · max`` and the target tokens
    covered at least half (``(B,)``; the cheap training-time stand-in for the mIoU of §4)."""
    pred = maps >= threshold * maps.amax(1, keepdim=True)
    true = targets >= 0.5
    inter = (pred & true).sum(1).float()
    union = (pred | true).sum(1).float()
    return inter / union.clamp_min(1.0)
