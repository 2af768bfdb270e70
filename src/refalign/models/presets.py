"""Model presets (DESIGN §3), all created by :func:`build_components`.

``tiny``
    Trainable and runnable on 2 CPU cores. 64 px windows, lossless pixel-unshuffle codec (factor 2 → a 32×32×12
    latent), a small U-Net with cross-attention only at the coarse 16×16 and 8×8 levels (self-attention over a
    large grid does not fit in memory on CPU), and a small DINOv2 trained from scratch (patch 4 at 64 px) that keeps
    the paper's 16×16 reference-token grid, so correspondence maps have the paper's shape.
``sd``
    The paper's scale: a Stable-Diffusion(-inpainting) U-Net and VAE from a local folder or hub id, DINOv2 from a
    folder or hub id, a fresh projector. A text-to-image U-Net is widened to the inpainting layout with zero-init
    input channels.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from refalign.models.codecs import PixelUnshuffleCodec, latent_channels
from refalign.models.reference_encoder import ReferenceEncoder
from refalign.models.unet import build_inpainting_unet, expand_unet_inputs

PRESETS = ("tiny", "sd")

TINY_RESOLUTION = 64
TINY_CODEC = {"factor": 2}
TINY_UNET: dict[str, Any] = {
    "sample_size": TINY_RESOLUTION // 2,
    "block_out_channels": (32, 64, 128),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "layers_per_block": 1,
    "cross_attention_dim": 128,
    "attention_head_dim": 32,
    "norm_num_groups": 32,
}
TINY_DINOV2: dict[str, Any] = {
    "image_size": 64,
    "patch_size": 4,
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "mlp_ratio": 2,
}
#: DDIM with Stable Diffusion's training schedule; ``clip_sample`` off as SD does.
SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    # every schedule starts at the last training timestep (t = 999), also with 1–4 steps (Lin et al., 2024)
    "timestep_spacing": "trailing",
}


def _merge(base: dict, override: dict | None) -> dict:
    out = dict(base)
    out.update(override or {})
    return out


def build_components(
    preset: str = "tiny",
    *,
    unet: dict | None = None,
    codec: dict | None = None,
    dinov2: dict | None = None,
    pretrained_model: str | None = None,
    pretrained_dinov2: str | None = None,
    use_cls_token: bool = False,
    seed: int | None = None,
) -> dict[str, Any]:
    """Create the pipeline components of a preset.

    Args:
        preset: ``"tiny"`` or ``"sd"``.
        unet, codec, dinov2: config overrides (``tiny``: merged into the defaults above; ``sd``: ignored except
            ``dinov2`` when no ``pretrained_dinov2`` is given).
        pretrained_model: ``sd`` only — a Stable Diffusion folder or hub id with ``unet/``, ``vae/``, ``scheduler/``.
        pretrained_dinov2: ``sd`` only — a DINOv2 folder or hub id.
        use_cls_token: append DINOv2's CLS token to the reference tokens.
        seed: seed for the random initialisation (``None``: torch's current state).

    Returns:
        ``{"unet", "codec", "reference_encoder", "scheduler", "resolution"}`` — the first four are the
        keyword arguments of :class:`~refalign.pipelines.RefineByAlignPipeline`.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if seed is not None:
        torch.manual_seed(seed)
    if preset == "tiny":
        codec_m = PixelUnshuffleCodec(**_merge(TINY_CODEC, codec))
        unet_cfg = _merge(TINY_UNET, unet)
        unet_m = build_inpainting_unet(latent_channels(codec_m), **unet_cfg)
        encoder = ReferenceEncoder(
            dinov2_config=_merge(TINY_DINOV2, dinov2),
            cross_attention_dim=unet_m.config.cross_attention_dim,
            use_cls_token=use_cls_token,
            freeze_backbone=False,
            image_mean=(0.5, 0.5, 0.5),
            image_std=(0.5, 0.5, 0.5),
        )
        scheduler = DDIMScheduler(**SCHEDULER)
        resolution = unet_m.config.sample_size * codec_m.config.factor
    else:
        if pretrained_model is None:
            raise ValueError("the sd preset needs pretrained_model: a Stable Diffusion folder or hub id")
        codec_m = AutoencoderKL.from_pretrained(pretrained_model, subfolder="vae")
        unet_m = UNet2DConditionModel.from_pretrained(pretrained_model, subfolder="unet")
        unet_m = expand_unet_inputs(unet_m, latent_channels(codec_m))
        cross_dim = unet_m.config.cross_attention_dim
        if pretrained_dinov2 is not None:
            encoder = ReferenceEncoder.from_dinov2(pretrained_dinov2, cross_dim, use_cls_token=use_cls_token)
        else:
            encoder = ReferenceEncoder(dinov2_config=dinov2, cross_attention_dim=cross_dim, use_cls_token=use_cls_token)
        try:
            sched_cfg = DDIMScheduler.load_config(pretrained_model, subfolder="scheduler")
            scheduler = DDIMScheduler.from_config(_merge(sched_cfg, {"clip_sample": False}))
        except (OSError, EnvironmentError):
            scheduler = DDIMScheduler(**SCHEDULER)
        vae_scale = 2 ** (len(codec_m.config.block_out_channels) - 1)
        resolution = unet_m.config.sample_size * vae_scale
    return {
        "unet": unet_m,
        "codec": codec_m,
        "reference_encoder": encoder,
        "scheduler": scheduler,
        "resolution": int(resolution),
    }
