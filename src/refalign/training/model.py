"""The trainable part of the refiner R as one module (so accelerate/DDP wraps one thing) and its construction."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn

from refalign.models.codecs import latent_channels
from refalign.models.presets import build_components
from refalign.models.unet import add_guidance_inputs, cross_attention_layer_names
from refalign.pipelines.config import RefalignConfig
from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline
from refalign.training.config import TrainConfig

logger = logging.getLogger(__name__)


class RefinerModel(nn.Module):
    """U-Net + reference encoder. ``forward`` = one conditioned U-Net pass with the pipeline's own channel layout
    (:meth:`RefineByAlignPipeline.unet_forward`), reference tokens dropped where ``drop`` is true (§A.3)."""
    def __init__(self, unet, reference_encoder, residual_prediction: bool = False):
        super().__init__()
        self.unet = unet
        self.reference_encoder = reference_encoder
        self.residual_prediction = residual_prediction

    def forward(self, noisy_latents, timesteps, masked_image_latents, latent_mask, reference, drop, guidance=None):

        tokens = self.reference_encoder(reference)
        tokens = self.reference_encoder.drop(tokens, drop).to(noisy_latents.dtype)
        # unet_forward only reads ``self.unet``: reuse it rather than restate the SD-inpainting channel order.
        return RefineByAlignPipeline.unet_forward(
            self, noisy_latents, timesteps, masked_image_latents, latent_mask, tokens, guidance
        )


def build_pipeline(config: TrainConfig):
    """A :class:`RefineByAlignPipeline` from ``config.model``: fine-tune ``init_from`` or build a preset."""
    m = config.model
    if m.init_from:
        pipe = RefineByAlignPipeline.from_pretrained(m.init_from)
    else:
        comps = build_components(
            m.preset,
            unet=m.unet or None,
            codec=m.codec or None,
            dinov2=m.dinov2 or None,
            pretrained_model=m.pretrained_model,
            pretrained_dinov2=m.pretrained_dinov2,
            use_cls_token=m.use_cls_token,
            seed=config.seed,
        )
        resolution = comps.pop("resolution")
        pipe = RefineByAlignPipeline(**comps, refalign_config=RefalignConfig(preset=m.preset, resolution=resolution))
        n_layers = len(cross_attention_layer_names(pipe.unet))
        if pipe.refalign_config.alignment.layer >= n_layers:
            # the paper's l = 9 of 16 is an up-path layer on the 16×16 query grid; take the last such layer here
            grid_layers = query_grid_layers(pipe.unet, pipe.reference_encoder.token_grid)
            pipe.refalign_config.alignment.layer = grid_layers[-1] if grid_layers else n_layers - 1
    data = config.data
    pipe.refalign_config.set_window_geometry(align_context=data.align_context, refine_context=data.refine_context,
                                             min_window=data.min_window)
    if m.warped_guidance and not pipe.uses_warped_guidance:

        add_guidance_inputs(pipe.unet, latent_channels(pipe.codec))
        logger.info("U-Net widened to %d input channels for warped-reference guidance", pipe.unet.config.in_channels)
    elif pipe.uses_warped_guidance and not m.warped_guidance:
        raise ValueError(f"{m.init_from} reads warped-reference guidance; set model.warped_guidance=true to fine-tune it")
    if m.masked_fill:
        pipe.refalign_config.masked_fill = m.masked_fill
    if m.prediction_type and m.prediction_type != pipe.scheduler.config.prediction_type:
        logger.info("prediction type %s -> %s", pipe.scheduler.config.prediction_type, m.prediction_type)
        pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, prediction_type=m.prediction_type)
    if m.timestep_spacing and m.timestep_spacing != pipe.scheduler.config.get("timestep_spacing"):
        pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, timestep_spacing=m.timestep_spacing)
    if m.residual_prediction is not None and m.residual_prediction != pipe.residual_prediction:
        if m.residual_prediction:
            if pipe.scheduler.config.prediction_type != "sample":
                raise ValueError("model.residual_prediction needs model.prediction_type=sample")
            # start from "x₀ = the fill": the output layer is zeroed, so the first step already reproduces it
            torch.nn.init.zeros_(pipe.unet.conv_out.weight)
            torch.nn.init.zeros_(pipe.unet.conv_out.bias)
            logger.info("U-Net output zeroed: x0 = masked-image input + correction")
        pipe.refalign_config.residual_prediction = bool(m.residual_prediction)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def trainable_parameter_groups(model: RefinerModel, config: TrainConfig) -> list[dict]:
    """Two AdamW groups (paper §A.3): U-Net at ``lr_unet``; projector + unconditional tokens (+ DINOv2 when
    ``freeze_backbone`` is false, as for ``tiny``) at ``lr_encoder``. Freezes what is not trained."""
    enc = model.reference_encoder
    frozen = bool(enc.config.freeze_backbone)
    enc.backbone.requires_grad_(not frozen)
    if getattr(enc.backbone.embeddings, "mask_token", None) is not None:
        enc.backbone.embeddings.mask_token.requires_grad_(False)  # only for masked-image pre-training; never used here
    enc_params = [p for p in enc.parameters() if p.requires_grad]
    unet_params = [p for p in model.unet.parameters() if p.requires_grad]
    logger.info(
        "training %.2fM U-Net and %.2fM encoder parameters (DINOv2 backbone %s)",
        sum(p.numel() for p in unet_params) / 1e6, sum(p.numel() for p in enc_params) / 1e6,
        "frozen" if frozen else "trained",
    )
    return [
        {"params": unet_params, "lr": config.optim.lr_unet, "name": "unet"},
        {"params": enc_params, "lr": config.optim.lr_encoder, "name": "encoder"},
    ]


def query_grid_layers(unet, grid: tuple[int, int]) -> list[int]:
    """Indices (in :func:`cross_attention_layer_names` order) of the cross-attention layers whose query grid is
    ``grid`` (default alignment-loss layers: same grid as the reference tokens, the paper's 16×16 at 64 px)."""
    size = unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    n_blocks = len(unet.config.block_out_channels)
    out = []
    for i, name in enumerate(cross_attention_layer_names(unet)):
        part, idx = name.split(".")[0], name.split(".")[1]
        level = {"down_blocks": int(idx) if part == "down_blocks" else 0, "mid_block": n_blocks - 1}.get(part)
        if part == "up_blocks":
            level = n_blocks - 1 - int(idx)
        if size // (2**level) == grid[0]:
            out.append(i)
    return out


def capture_layers(model: RefinerModel, config: TrainConfig) -> list[int]:
    layers = config.align_layers if config.align_layers is not None else query_grid_layers(
        model.unet, model.reference_encoder.token_grid
    )
    if not layers:
        raise ValueError("no cross-attention layer has the token grid's size; set align_layers explicitly")
    return list(layers)


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from integers (step, process, …): the randomness of a step never depends on
    what ran before, so resuming is bit-identical."""
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)
