"""The reference encoder φ of paper §3.1–3.2: DINOv2 → MLP projector into the U-Net's cross-attention width.

The paper replaces Stable Diffusion's text encoder with DINOv2 (ViT, patch 14 at 224 px → a 16×16 grid of patch
tokens) followed by an MLP. The encoded reference is a sequence of tokens that the U-Net's cross-attention layers
read; because each patch token keeps its place on the grid (eq. 3), a cross-attention map over the tokens can be
mapped back onto the reference image — the basis of the alignment stage (§3.3).

Token order (fixed, relied on by alignment): the ``grid_h × grid_w`` patch tokens come first in row-major order,
then the CLS token if ``use_cls_token``. Learned unconditional tokens of the same shape stand in for a dropped
reference (classifier-free guidance; the paper drops the embedding with probability 0.1 during training).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from transformers import Dinov2Config, Dinov2Model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ReferenceEncoder(ModelMixin, ConfigMixin):
    """DINOv2 backbone + MLP projector + learned unconditional tokens.

    Args:
        dinov2_config: keyword arguments of :class:`transformers.Dinov2Config` (``image_size`` and ``patch_size``
            fix the token grid: ``image_size // patch_size`` tokens a side).
        cross_attention_dim: width of the U-Net's cross-attention keys/values (the projector's output).
        projector_hidden_dim: hidden width of the 2-layer MLP (default: ``cross_attention_dim``).
        use_cls_token: append DINOv2's CLS token after the patch tokens.
        freeze_backbone: keep DINOv2 frozen during training (the paper's setting with pretrained weights);
            trainers read this flag.
        image_mean, image_std: normalisation applied to ``[0, 1]`` pixels before DINOv2.
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        dinov2_config: dict | None = None,
        cross_attention_dim: int = 768,
        projector_hidden_dim: int | None = None,
        use_cls_token: bool = False,
        freeze_backbone: bool = True,
        image_mean: tuple = IMAGENET_MEAN,
        image_std: tuple = IMAGENET_STD,
    ):
        super().__init__()
        cfg = Dinov2Config(**(dinov2_config or {}))
        self.backbone = Dinov2Model(cfg)
        hidden = projector_hidden_dim or cross_attention_dim
        self.projector = nn.Sequential(
            nn.Linear(cfg.hidden_size, hidden), nn.GELU(), nn.Linear(hidden, cross_attention_dim)
        )
        self.unconditional_tokens = nn.Parameter(torch.randn(self.num_tokens, cross_attention_dim) * 0.02)
        self.register_buffer("pixel_mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ geometry
    @property
    def image_size(self) -> int:
        size = self.backbone.config.image_size
        return size if isinstance(size, int) else size[0]

    @property
    def token_grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of the patch-token grid (16×16 for DINOv2 at 224 px / patch 14)."""
        patch = self.backbone.config.patch_size
        patch = patch if isinstance(patch, int) else patch[0]
        n = self.image_size // patch
        return (n, n)

    @property
    def num_patch_tokens(self) -> int:
        rows, cols = self.token_grid
        return rows * cols

    @property
    def num_tokens(self) -> int:
        return self.num_patch_tokens + (1 if self.config.use_cls_token else 0)

    # ------------------------------------------------------------------ encoding
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``[-1, 1]`` pixels of any size → resized to the encoder's input and normalised."""
        x = (images.float() + 1.0) / 2.0
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False, antialias=True)
        x = (x - self.pixel_mean) / self.pixel_std
        return x.to(dtype=self.backbone.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode reference images (``(B, 3, H, W)`` in ``[-1, 1]``) to ``(B, num_tokens, cross_attention_dim)``."""
        hidden = self.backbone(pixel_values=self.preprocess(images)).last_hidden_state  # (B, 1 + N [+ registers], C)
        patches = hidden[:, -self.num_patch_tokens :]
        tokens = torch.cat([patches, hidden[:, :1]], dim=1) if self.config.use_cls_token else patches
        return self.projector(tokens)

    def unconditional(self, batch_size: int) -> torch.Tensor:
        """The learned tokens that replace a dropped reference: ``(B, num_tokens, cross_attention_dim)``."""
        return self.unconditional_tokens.unsqueeze(0).expand(batch_size, -1, -1)

    def drop(self, embeddings: torch.Tensor, drop_mask: torch.Tensor) -> torch.Tensor:
        """Replace the embeddings of the samples where ``drop_mask`` (``(B,)`` bool) is true by the unconditional
        tokens — the 10 % embedding dropout of paper §A.3."""
        uncond = self.unconditional(embeddings.shape[0]).to(embeddings.dtype)
        return torch.where(drop_mask.view(-1, 1, 1), uncond, embeddings)

    @classmethod
    def from_dinov2(cls, path_or_id: str, cross_attention_dim: int, **kwargs) -> "ReferenceEncoder":
        """Build an encoder around pretrained DINOv2 weights (a local folder or a hub id); the projector and
        unconditional tokens start fresh."""
        backbone = Dinov2Model.from_pretrained(path_or_id)
        config = {k: v for k, v in backbone.config.to_dict().items() if k in Dinov2Config.__dataclass_fields__}
        enc = cls(dinov2_config=config, cross_attention_dim=cross_attention_dim, **kwargs)
        enc.backbone.load_state_dict(backbone.state_dict())
        return enc
