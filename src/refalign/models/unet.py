"""The inpainting U-Net of the refiner R (paper §3.1): a diffusers ``UNet2DConditionModel`` whose input is the
noisy latent, the latent of the masked image and the mask, concatenated on channels (SD-inpainting layout:
``2·C + 1`` input channels, ``C`` output channels), and whose cross-attention reads reference tokens."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel


def inpainting_in_channels(latent_channels: int) -> int:
    """Noisy latent + masked-image latent + 1 mask channel."""
    return 2 * latent_channels + 1


def build_inpainting_unet(latent_channels: int, **config) -> UNet2DConditionModel:
    """A randomly initialised inpainting U-Net for a codec with ``latent_channels`` channels."""
    config = dict(config)
    config["in_channels"] = inpainting_in_channels(latent_channels)
    config["out_channels"] = latent_channels
    return UNet2DConditionModel(**config)


def expand_unet_inputs(unet: UNet2DConditionModel, latent_channels: int) -> UNet2DConditionModel:
    """Turn a text-to-image U-Net (``C`` inputs) into an inpainting one (``2C + 1``) by appending zero-initialised
    input channels to ``conv_in``, so its outputs are unchanged at the start of fine-tuning. A U-Net that already
    has the inpainting layout is returned as is."""
    want = inpainting_in_channels(latent_channels)
    have = unet.config.in_channels
    if have == want:
        return unet
    if have != latent_channels:
        raise ValueError(f"U-Net has {have} input channels; expected {latent_channels} or {want}")
    old = unet.conv_in
    new = torch.nn.Conv2d(want, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :have] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new.to(old.weight.device, old.weight.dtype)
    unet.register_to_config(in_channels=want)
    return unet


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
