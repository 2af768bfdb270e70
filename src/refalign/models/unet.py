"""The inpainting U-Net of the refiner R (paper §3.1): a diffusers ``UNet2DConditionModel`` whose input is the
noisy latent, the latent of the masked image and the mask, concatenated on channels (SD-inpainting layout:
``2·C + 1`` input channels, ``C`` output channels), and whose cross-attention reads reference tokens."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel


def cross_attention_layer_names(unet) -> list[str]:
    """Names of the U-Net's cross-attention modules (``attn2`` of each transformer block), in U-Net order
    (down → mid → up) — the numbering of the paper's layer index ``l``."""
    names = [n for n, _ in unet.named_modules() if n.endswith(".attn2")]
    order = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    return sorted(names, key=lambda n: (order.get(n.split(".")[0], 3), _numeric_key(n)))


def _numeric_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in name.split(".")[1:]]


def inpainting_in_channels(latent_channels: int) -> int:
    """Noisy latent + masked-image latent + 1 mask channel."""
    return 2 * latent_channels + 1


def guided_in_channels(latent_channels: int) -> int:
    """The inpainting layout plus warped-reference guidance (:mod:`refalign.guidance`): its latent + 1 validity
    channel."""
    return 3 * latent_channels + 2


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
    return _widen_conv_in(unet, want)


def add_guidance_inputs(unet: UNet2DConditionModel, latent_channels: int) -> UNet2DConditionModel:
    """Append zero-initialised warped-reference guidance channels to an inpainting U-Net (outputs unchanged until
    fine-tuning teaches it to read them). A U-Net that already has them is returned as is."""
    want, have = guided_in_channels(latent_channels), unet.config.in_channels
    if have == want:
        return unet
    if have != inpainting_in_channels(latent_channels):
        raise ValueError(f"U-Net has {have} input channels; expected {inpainting_in_channels(latent_channels)} or {want}")
    return _widen_conv_in(unet, want)


def _widen_conv_in(unet: UNet2DConditionModel, want: int) -> UNet2DConditionModel:
    have = unet.config.in_channels
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
