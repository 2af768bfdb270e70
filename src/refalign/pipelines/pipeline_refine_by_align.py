"""``RefineByAlignPipeline``: the two stages of *Refine-by-Align* (paper §3.5) around one refiner network R.

Components (``register_modules``): ``unet`` (inpainting ``UNet2DConditionModel``), ``codec`` (SD ``AutoencoderKL``
or :class:`~refalign.models.codecs.PixelUnshuffleCodec`), ``reference_encoder``
(:class:`~refalign.models.reference_encoder.ReferenceEncoder`) and ``scheduler``. ``refalign_config`` holds what
``refalign.json`` stores (alignment defaults, resolution, training config).

Conventions for the tensor helpers below: pixels are ``(B, 3, H, W)`` in ``[-1, 1]``; masks are ``(B, 1, H, W)``
float with 1 = artifact; the masked image has the artifact set to 0 (mid-grey), as in SD inpainting.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline

from refalign.errors import CheckpointError
from refalign.models import codecs
from refalign.pipelines.checkpoint import check_checkpoint
from refalign.pipelines.config import FILE_NAME, RefalignConfig


class RefineByAlignPipeline(DiffusionPipeline):
    """Reference-guided artifact refinement.

    * :meth:`align` — alignment stage (Algorithm 1): the region of the reference that matches the masked artifact.
    * ``__call__`` — both stages: align, then inpaint the artifact conditioned on the matched region only.
    """

    model_cpu_offload_seq = "reference_encoder->unet->codec"

    def __init__(self, unet, codec, reference_encoder, scheduler, refalign_config: RefalignConfig | None = None):
        super().__init__()
        self.register_modules(unet=unet, codec=codec, reference_encoder=reference_encoder, scheduler=scheduler)
        self.refalign_config = refalign_config or RefalignConfig()

    # ------------------------------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Save the diffusers folder (safetensors) plus ``refalign.json``."""
        kwargs.setdefault("safe_serialization", True)
        super().save_pretrained(save_directory, **kwargs)
        self.refalign_config.save(Path(save_directory) / FILE_NAME)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "RefineByAlignPipeline":
        """Load a checkpoint folder (or a hub id, downloaded first). The folder is checked before loading; a missing
        or corrupt part raises :class:`~refalign.errors.CheckpointError` naming the file."""
        path = Path(pretrained_model_name_or_path)
        if not path.exists() and not str(pretrained_model_name_or_path).startswith((".", "/", "~")) and "/" in str(
            pretrained_model_name_or_path
        ):
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(str(pretrained_model_name_or_path)))
        check_checkpoint(path)
        config = RefalignConfig.load(path / FILE_NAME)
        try:
            pipe = super().from_pretrained(path, **kwargs)
        except CheckpointError:
            raise
        except Exception as exc:  # diffusers raises many kinds; name the folder and keep the cause
            raise CheckpointError(f"{path}: could not load the checkpoint ({type(exc).__name__}: {exc})") from exc
        pipe.refalign_config = config
        return pipe

    # ------------------------------------------------------------------------------------------ geometry
    @property
    def resolution(self) -> int:
        """Side of the square window the model works at (pixels)."""
        return int(self.refalign_config.resolution)

    @property
    def latent_scale(self) -> int:
        return codecs.downscale_factor(self.codec)

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.reference_encoder.token_grid

    # ------------------------------------------------------------------------------------------ tensors
    def image_to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W, 3) uint8`` → ``(1, 3, H, W)`` in ``[-1, 1]`` on the pipeline's device."""
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        return t.to(self.device)

    def mask_to_tensor(self, mask: np.ndarray) -> torch.Tensor:
        """``(H, W)`` bool → ``(1, 1, H, W)`` float on the pipeline's device."""
        return torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None].to(self.device)

    @staticmethod
    def tensor_to_image(t: torch.Tensor) -> np.ndarray:
        """``(1, 3, H, W)`` in ``[-1, 1]`` → ``(H, W, 3) uint8`` (rounded, clamped)."""
        x = ((t[0].detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
        return x.permute(1, 2, 0).cpu().numpy()

    # ------------------------------------------------------------------------------------------ model calls
    @torch.no_grad()
    def encode_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """Reference pixels ``(B, 3, H, W)`` → tokens ``(B, N, D)`` for cross-attention."""
        enc = self.reference_encoder
        return enc(reference.to(self.device)).to(self.unet.dtype)

    def unconditional_tokens(self, batch_size: int) -> torch.Tensor:
        return self.reference_encoder.unconditional(batch_size).to(device=self.device, dtype=self.unet.dtype)

    @torch.no_grad()
    def prepare_inpainting_inputs(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode an image window and its mask into the U-Net's conditioning.

        Returns ``(image_latents, masked_image_latents, latent_mask)``; ``latent_mask`` marks a latent cell as
        artifact when any pixel of it is (max-pooling), so no artifact pixel leaks into the conditioning.
        """
        image = image.to(self.device)
        mask = mask.to(self.device)
        masked = image * (mask < 0.5)
        image_latents = codecs.encode(self.codec, image)
        masked_latents = codecs.encode(self.codec, masked)
        latent_mask = F.adaptive_max_pool2d(mask, image_latents.shape[-2:])
        dtype = self.unet.dtype
        return image_latents.to(dtype), masked_latents.to(dtype), latent_mask.to(dtype)

    def unet_forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | int,
        masked_image_latents: torch.Tensor,
        latent_mask: torch.Tensor,
        tokens: torch.Tensor,
    ) -> torch.Tensor:
        """One pass of R: ε-prediction for noisy ``latents`` at ``timestep``, conditioned on the masked image, the
        mask and reference ``tokens`` (SD-inpainting channel layout: latent, mask, masked-image latent)."""
        x = torch.cat([latents, latent_mask, masked_image_latents], dim=1)
        return self.unet(x, timestep, encoder_hidden_states=tokens, return_dict=False)[0]

    # ------------------------------------------------------------------------------------------ stages
    def align(self, image, mask, reference, step: int | None = None, layer: int | None = None, **kwargs):
        """Alignment stage (paper Algorithm 1). See :func:`refalign.pipelines.alignment.align`."""
        from refalign.pipelines.alignment import align

        return align(self, image, mask, reference, step=step, layer=layer, **kwargs)
