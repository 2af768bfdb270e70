"""Codecs between RGB pixels and the U-Net's latent space, behind one interface.

Two kinds are supported:

* ``AutoencoderKL`` — the Stable-Diffusion VAE (8× down, 4 channels), used as diffusers ships it;
* :class:`PixelUnshuffleCodec` — a lossless, parameter-free codec for small CPU models: ``pixel_unshuffle`` by a
  factor ``f`` turns ``(3, H, W)`` into ``(3f², H/f, W/f)``, so the U-Net works on a grid ``f`` times smaller
  without any learned compression.

Use the functions :func:`encode`, :func:`decode`, :func:`latent_channels` and :func:`downscale_factor` rather than
the objects' own methods, so pipelines and trainers never branch on the codec's type. Pixels are ``[-1, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin


class PixelUnshuffleCodec(ModelMixin, ConfigMixin):
    """Lossless space-to-depth codec: ``decode(encode(x)) == x`` exactly.

    Args:
        factor: spatial down-scaling factor ``f`` (image sides must be multiples of it).
        in_channels: image channels (3 for RGB).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, factor: int = 2, in_channels: int = 3):
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        # A saved buffer gives the module a device, a dtype and a weights file, which ModelMixin, accelerate and
        # DiffusionPipeline.from_pretrained rely on; it holds the factor so a mismatched file is detectable.
        self.register_buffer("factor_check", torch.tensor([float(factor)]))

    @property
    def latent_channels(self) -> int:
        return self.config.in_channels * self.config.factor**2

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(images, self.config.factor)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latents, self.config.factor)


def latent_channels(codec) -> int:
    """Number of latent channels the codec produces."""
    if isinstance(codec, AutoencoderKL):
        return codec.config.latent_channels
    return codec.latent_channels


def downscale_factor(codec) -> int:
    """How many pixels one latent cell spans along each side."""
    if isinstance(codec, AutoencoderKL):
        return 2 ** (len(codec.config.block_out_channels) - 1)
    return codec.config.factor


def encode(codec, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False) -> torch.Tensor:
    """Pixels in ``[-1, 1]`` → scaled latents. For the VAE, ``sample=True`` draws from the posterior (training the
    noisy target, as SD does); otherwise its mode is used (masked-image conditioning, inference)."""
    if isinstance(codec, AutoencoderKL):
        images = images.to(dtype=codec.dtype)
        dist = codec.encode(images).latent_dist
        z = dist.sample(generator=generator) if sample else dist.mode()
        shift = getattr(codec.config, "shift_factor", None) or 0.0
        return (z - shift) * codec.config.scaling_factor
    return codec.encode(images)


def decode(codec, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents → pixels in ``[-1, 1]`` (not clamped)."""
    if isinstance(codec, AutoencoderKL):
        shift = getattr(codec.config, "shift_factor", None) or 0.0
        latents = latents.to(dtype=codec.dtype) / codec.config.scaling_factor + shift
        return codec.decode(latents).sample
    return codec.decode(latents)
