"""``RefineByAlignPipeline``: the two stages of *Refine-by-Align* (paper §3.5) around one refiner network R.

Components (``register_modules``): ``unet`` (inpainting ``UNet2DConditionModel``), ``codec`` (SD ``AutoencoderKL``
or :class:`~refalign.models.codecs.PixelUnshuffleCodec`), ``reference_encoder``
(:class:`~refalign.models.reference_encoder.ReferenceEncoder`) and ``scheduler``. ``refalign_config`` holds what
``refalign.json`` stores (alignment defaults, resolution, training config).

Conventions for the tensor helpers below: pixels are ``(B, 3, H, W)`` in ``[-1, 1]``; masks are ``(B, 1, H, W)``
float with 1 = artifact; the masked image has the artifact set to 0 (mid-grey), as in SD inpainting.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import snapshot_download
from PIL import Image

# diffusers only loads components from modules already imported: refalign's codec and encoder must be
import refalign.models.reference_encoder  # noqa: F401
from refalign.checks import check_number, check_seed, check_steps, require_finite
from refalign.errors import CheckpointError, InputError
from refalign.files import as_mask, as_rgb, check_mask, grey_rgb, is_grey, references_like
from refalign.fill import RADIUS, telea_fill
from refalign.guidance import empty_guidance
from refalign.models import codecs
from refalign.models.unet import guided_in_channels
from refalign.pipelines.alignment import align, align_checked
from refalign.pipelines.checkpoint import check_checkpoint
from refalign.pipelines.config import FILE_NAME, UNREGISTERED, RefalignConfig
from refalign.pipelines.correspondence import VAGUE_AREA_RATIO, find_correspondence, warped_reference
from refalign.pipelines.outputs import RefineOutput
from refalign.pipelines.pasting import ResidualPaste, WindowPaste, paste_strategy
from refalign.pipelines.window_job import GUIDED_HINT, RefineSettings, WindowJob, refused_model
from refalign.pipelines.subtoken import LOCATED_MIX_CORRELATION, LOCATED_MIX_WEIGHT, search_area
from refalign.pipelines.zoom import (
    ZoomWindow, classical_fill, crop_reference, plan_windows, transferred_fill, window_inputs,
)
from refalign.pipelines.zoom import paste as paste_window  # the name ``paste`` is the call's switch
from refalign.shipped import default_model_path
from refalign.transfer.damage import (
    BLURRED_DETAIL, BLURRED_INTERIOR, GUIDED_STEP_RATIO, MILD_EDGE_CONTRAST, EdgeColours, edge_colours,
    edge_step_after, interior_blur, interior_detail, mildness, paste_edge_steps, recolour_region, recolour_to_source,
    reference_colours, strokes_follow,
)
from refalign.transfer.engine import ReferenceView
from refalign.transfer.register import EXPLAINED_CORRELATION, MIN_DAMAGE_RATIO, Candidate
from refalign.transfer.source import mix_sources, paste_hole, registered_source
from refalign.transfer.synthesis import HoleProblem, Synthesis, SynthesisError, prepare_hole, solve_hole
from refalign.windows import ModelFrame

logger = logging.getLogger(__name__)


class RefineByAlignPipeline(DiffusionPipeline):
    """Reference-guided artifact refinement.

    * :meth:`align` — alignment stage (Algorithm 1): the region of the reference that matches the masked artifact.
    * ``__call__`` — both stages: align, then inpaint the artifact conditioned on the matched region only.
    """

    model_cpu_offload_seq = "reference_encoder->unet->codec"
    _callback_tensor_inputs = ["latents", "noise_pred", "tokens"]

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
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike | None = None, **kwargs
    ) -> "RefineByAlignPipeline":
        """Load a checkpoint folder (or a hub id ``owner/name``, downloaded first); without an argument, the model
        shipped with refalign (:func:`refalign.default_model_path`). The folder is checked before loading; a missing
        or corrupt part raises :class:`~refalign.errors.CheckpointError` naming the file."""
        if pretrained_model_name_or_path is None:
            pretrained_model_name_or_path = default_model_path()
        path = Path(pretrained_model_name_or_path)
        if not path.exists() and _looks_like_hub_id(str(pretrained_model_name_or_path)):
            try:
                path = Path(snapshot_download(str(pretrained_model_name_or_path)))
            except Exception as exc:  # offline, unknown repository, ...: one line naming what was asked for
                raise CheckpointError(f"{pretrained_model_name_or_path}: no such folder, and the hub could not "
                                      f"provide it ({type(exc).__name__}); give the path of a checkpoint "
                                      "folder") from exc
        check_checkpoint(path)
        config = RefalignConfig.load(path / FILE_NAME)
        try:
            pipe = super().from_pretrained(path, **kwargs)
        except CheckpointError:
            raise
        except Exception as exc:  # diffusers raises many kinds; name the folder and keep the cause
            raise CheckpointError(f"{path}: could not load the checkpoint ({type(exc).__name__}: {exc})") from exc
        pipe.refalign_config = config
        if config.residual_prediction and pipe.scheduler.config.get("prediction_type") != "sample":
            raise CheckpointError(
                f"{path / FILE_NAME}: residual_prediction needs a scheduler with prediction_type 'sample', "
                f"not {pipe.scheduler.config.get('prediction_type')!r}; fix scheduler/scheduler_config.json"
            )
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
    def prepare_inpainting_inputs(
        self, image: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode an image window and its mask into the U-Net's conditioning.

        Returns ``(image_latents, masked_image_latents, latent_mask)``; ``latent_mask`` marks a latent cell as
        artifact when any pixel of it is (max-pooling), so no artifact pixel leaks into the conditioning. The masked
        image has the artifact zeroed (SD inpainting) or, for a model with ``masked_fill="telea"``, filled
        classically from its surroundings (:mod:`refalign.fill`) — ``filled`` when given (the pipeline's one fill
        per window, :func:`~refalign.pipelines.zoom.classical_fill`), else Telea of ``image`` under ``mask``.
        """
        image = image.to(self.device)
        mask = mask.to(self.device)
        if self.refalign_config.masked_fill == "telea":
            if filled is not None:
                masked = filled.to(self.device) * mask + image * (1 - mask)
            else:
                masked = telea_fill_tensor(image, mask)
        else:
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
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One pass of R: the scheduler's prediction (ε, v or x₀) for noisy ``latents`` at ``timestep``, conditioned
        on the masked image, the mask and reference ``tokens`` (SD-inpainting channel layout: latent, mask,
        masked-image latent), plus the warped-reference ``guidance`` channels of a guided model
        (:meth:`guidance_latents`)."""
        parts = [latents, latent_mask, masked_image_latents] + ([guidance] if guidance is not None else [])
        out = self.unet(torch.cat(parts, dim=1), timestep, encoder_hidden_states=tokens, return_dict=False)[0]
        if self.residual_prediction:
            # x₀ = masked-image input + U-Net output: a zero output reproduces the (classical) fill
            out = out + masked_image_latents.to(out.dtype)
        return out

    @property
    def residual_prediction(self) -> bool:
        """Whether R predicts x₀ as a correction over its masked-image input (``refalign.json``
        ``residual_prediction``; needs the scheduler's ``prediction_type="sample"``)."""
        return bool(self.refalign_config.residual_prediction)

    @property
    def uses_warped_guidance(self) -> bool:
        """Whether R reads warped-reference guidance channels (:mod:`refalign.guidance`; decided by the U-Net's
        input width)."""
        return self.unet.config.in_channels == guided_in_channels(codecs.latent_channels(self.codec))

    @torch.no_grad()
    def guidance_latents(
        self, warped: torch.Tensor | None, valid: torch.Tensor | None, batch_size: int = 1
    ) -> torch.Tensor | None:
        """Guidance channels ``(B, C + 1, h, w)`` from warped reference pixels ``(B, 3, R, R)`` and their validity
        ``(B, 1, R, R)`` (codec latent + the validity's share per latent cell); ``warped=None`` gives the
        no-guidance input the model was trained with (grey, validity 0). ``None`` for a model without guidance."""
        if not self.uses_warped_guidance:
            return None
        if warped is None:
            pixels, none = empty_guidance(self.resolution, self.refalign_config.refinement.reference_fill)
            warped = self.image_to_tensor(pixels).repeat(batch_size, 1, 1, 1)
            valid = self.mask_to_tensor(none).repeat(batch_size, 1, 1, 1)
        lat = codecs.encode(self.codec, warped.to(self.device))
        share = F.adaptive_avg_pool2d(valid.to(self.device).float(), lat.shape[-2:])
        return torch.cat([lat, share.to(lat.dtype)], dim=1).to(self.unet.dtype)

    # ------------------------------------------------------------------------------------------ stages
    def align(self, image, mask, reference, step: int | None = None, layer: int | None = None, **kwargs):
        """Alignment stage (paper Algorithm 1). See :func:`refalign.pipelines.alignment.align`."""
        return align(self, image, mask, reference, step=step, layer=layer, **kwargs)

    def _align(self, image, mask, reference, object_mask, **kwargs):
        """The alignment stage of one window × reference on checked arrays, with its correspondence
        (:func:`~refalign.pipelines.alignment.align_checked`)."""
        return align_checked(self, image, mask, reference, object_mask, **kwargs)

    # ------------------------------------------------------------------------------------------ refinement
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` from a callback to stop sampling the current window early."""
        return getattr(self, "_interrupt", False)

    @torch.no_grad()
    def __call__(
        self,
        image,
        mask,
        reference,
        reference_mask=None,
        *,
        object_mask=None,
        no_align: bool = False,
        subtoken: bool | None = None,
        warped_guidance: bool = True,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        strength: float | None = None,
        masked_content: str | None = None,
        num_samples: int | None = None,
        unregistered: str | None = None,
        dense_flow: bool | None = None,
        paste: bool | Sequence[bool] | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        context: float | None = None,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        output_type: str = "np",
    ):
        """Refine the masked artifacts of ``image`` from ``reference`` (paper §3.5: alignment, then refinement).

        Args:
            image: ``(H, W, 3)`` array, PIL image or path — the image with artifacts ``I_a``. A greyscale picture
                (red, green and blue equal everywhere) is refined from greyscale copies of the references and
                comes back greyscale.
            mask: ``(H, W)`` mask (array, PIL or path; true/255 = artifact) ``M_a``; may hold several regions.
            reference: the reference photo ``I_r`` (array, PIL or path), or a list of several photos of the object:
                each window then aligns with every one and is refined from the reference with the strongest, most
                compact correspondence (the highest alignment ``score``); ``RefineOutput.reference_indices`` reports
                the choice. ``object_mask`` is then a list too (or ``None``).
            reference_mask: the region of the reference to copy from, given by the user; alignment is skipped,
                and the registration searches around it and the whole reference, keeping the better model that
                lands in it (:func:`refalign.transfer.engine.register_with`).
            object_mask: the object's mask on the reference (e.g. a transparent PNG's alpha), passed to alignment.
            no_align: condition on the whole reference (the paper's single-stage ablation).
            subtoken: refine ``M*`` beyond the token grid by feature matching (default: the checkpoint's
                ``alignment.subtoken``); each window's :class:`AlignmentOutput` says which path was taken.
            warped_guidance: for a model trained with warped-reference guidance (:attr:`uses_warped_guidance`),
                feed each window the reference warped by its correspondence's registration (``False``: feed the
                no-guidance input, for ablations); ``RefineOutput.guidance`` says what each window got.
            num_inference_steps, guidance_scale: DDIM steps and classifier-free guidance scale (defaults:
                ``refalign_config.refinement``; ``guidance_scale <= 1`` runs the conditional pass only).
            strength: how much of the window to re-noise (1 = start from pure noise; lower keeps more of the input;
                default ``refalign_config.refinement.strength``).
            masked_content: with ``strength < 1``, start the mask from the artifact (``"original"``) or from a
                classical Telea fill of it (``"fill"``); default ``refalign_config.refinement.masked_content``.
            num_samples: samples drawn per window (in one batch) and averaged — the posterior-mean estimate that
                minimises squared error; 1 = a single sample (the paper); default ``refinement.num_samples``.
            unregistered: with ``refinement.source="reference"``, what a window without a reliable correspondence
                gets: ``"model"`` (the refiner), ``"keep"`` (left as it was), ``"synthesize"`` (synthesised from
                the matching reference region — ``reference_mask`` or ``M*`` — by PatchMatch, the refiner when there
                is none), ``"guided"`` (recoloured where it only changed colours, else synthesised as
                ``"synthesize"`` with its own pixels as the guide, its layout kept: for a mask painted around a
                smeared feature) or ``"auto"`` (the artifact's own pixels recoloured to its surroundings where it only
                changed colours, kept where it looks continuous with them — unless it looks blurred, then
                synthesised with its own pixels as the guide — else synthesised as ``"synthesize"`` does, guided by
                its own pixels where they continue the surroundings nearly as well; it also prefers the recoloured
                pixels to a paste across views that continues the surroundings less well); default
                ``refinement.unregistered``.
            dense_flow: with ``refinement.source="reference"``, move a registered window's pixels by the dense flow
                that aligns them with the known pixels around the hole where the model explains those only in
                part (:func:`refalign.transfer.flow.flow_correct`); default ``refinement.dense_flow``.
            paste: with ``refinement.source="reference"``, paste the registered reference's pixels where the
                registration is accepted, and average the located reference into a synthesis on the located path
                (:meth:`_mix_located`); ``False`` gives every window ``unregistered`` instead, with no such mean (the
                recourse for a paste that looks wrong; the report still says what registered); or one bool per
                window, in the order of ``RefineOutput.windows`` (the same mask plans the same windows), e.g.
                ``[not d for d in out.doubts]`` to refuse only the pastes a doubt speaks against; default
                ``refinement.paste``.
            generator, seed: randomness (give at most one); fixed → the same output on the same device.
            context: window side as a multiple of the region's size (default from the config).
            callback_on_step_end: ``fn(pipe, step, timestep, callback_kwargs) -> dict`` called after every step of
                every window (``step`` counts within the window), as in diffusers; returned ``latents`` replace
                the current ones.
            callback_on_step_end_tensor_inputs: which of ``latents``, ``noise_pred``, ``tokens`` the callback sees.
            output_type: ``"np"`` (uint8 array) or ``"pil"``.

        Returns:
            :class:`~refalign.pipelines.outputs.RefineOutput`.
        """
        cfg = self.refalign_config.refinement
        # 1. Settings and inputs, checked once
        run = self._settings(num_inference_steps, guidance_scale, strength, masked_content, num_samples, generator,
                             seed, callback_on_step_end, callback_on_step_end_tensor_inputs, unregistered, dense_flow,
                             paste)
        inputs = self._check_inputs(image, mask, reference, reference_mask, object_mask, no_align, run, output_type)
        check_number(context, "context", lo=0.0, lo_open=True)
        self._interrupt = False

        # 2. Split the mask into regions and plan one zoom-in window per region (close regions share one)
        plans = plan_windows(inputs.mask, context=float(context or cfg.context), min_size=cfg.min_window,
                             merge_growth=cfg.merge_growth)
        logger.debug("refining %d window(s): %s", len(plans), [p.window for p in plans])
        pastes = per_window(run.paste, len(plans))

        strategy = paste_strategy(cfg)
        result, jobs = inputs.image.copy(), []
        for plan, pasted in zip(plans, pastes):
            # 3. The window's job: its correspondence (once per reference) and the source of its hole — the
            #    registered reference's own pixels, the refiner, or (no reliable correspondence) nothing
            job = self._window_job(plan, inputs, replace(run, paste=pasted), strategy, subtoken=subtoken,
                                   guided=warped_guidance)
            logger.info("%s", job.report())
            # 4. Masked-latent inpainting of the window with DDIM and classifier-free guidance (when the refiner
            #    runs: alone, or as the harmonizer of the transferred pixels)
            # 5. Paste: transferred pixels inside the mask only; the refiner's window inside the dilated mask
            if job.runs_model:
                refined = self._denoise_window(job, run)
                paste_window(result, strategy.patch(job, refined), job.weights, job.window)
            elif job.transfer is not None:
                pixels, valid, box = job.transfer
                paste_hole(result, pixels, job.mask, box, valid)
            jobs.append(job)
        self.maybe_free_model_hooks()

        # 6. Output (a greyscale image stays greyscale: the refiner may paint colour)
        return self._output(grey_rgb(result) if inputs.grey else result, jobs, inputs, output_type)

    def _settings(self, steps, guidance_scale, strength, masked_content, num_samples, generator, seed, callback,
                  tensor_inputs, unregistered=None, dense_flow=None, paste=None) -> RefineSettings:
        """The call's settings over the checkpoint's defaults, each checked (one :class:`InputError` line)."""
        cfg = self.refalign_config.refinement
        steps = int(steps or cfg.num_inference_steps)
        self._guidance_scale = float(cfg.guidance_scale if guidance_scale is None else guidance_scale)
        strength = float(cfg.strength if strength is None else strength)
        num_samples = int(cfg.num_samples if num_samples is None else num_samples)
        if num_samples < 1:
            raise InputError(f"num_samples must be at least 1, got {num_samples}")
        masked_content = str(cfg.masked_content if masked_content is None else masked_content)
        if masked_content not in ("original", "fill"):
            raise InputError(f"masked_content must be 'original' or 'fill', got {masked_content!r}")
        check_steps(steps, self.scheduler.config.num_train_timesteps, "num_inference_steps")
        check_number(self._guidance_scale, "guidance_scale", lo=0.0)
        if not 0.0 < strength <= 1.0:
            raise InputError(f"strength must be in (0, 1], got {strength}")
        if int(steps * strength) < 1:
            raise InputError(f"strength {strength} of {steps} steps leaves no step to run; raise either")
        bad = [k for k in tensor_inputs if k not in self._callback_tensor_inputs]
        if bad:
            raise InputError(f"callback_on_step_end_tensor_inputs: {bad} not in {self._callback_tensor_inputs}")
        if generator is not None and seed is not None:
            raise InputError("pass either generator or seed, not both")
        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(int(check_seed(seed, "seed")))
        unregistered = str(cfg.unregistered if unregistered is None else unregistered)
        if unregistered not in UNREGISTERED:
            raise InputError(f"unregistered must be one of {', '.join(UNREGISTERED)}, got {unregistered!r}")
        dense_flow = bool(cfg.dense_flow if dense_flow is None else dense_flow)
        return RefineSettings(steps, strength, masked_content, num_samples, generator, callback, tuple(tensor_inputs),
                              unregistered, dense_flow, check_paste(paste, cfg.paste))

    def _check_inputs(self, image, mask, reference, reference_mask, object_mask, no_align, run: RefineSettings,
                      output_type) -> "CheckedInputs":
        """The image, its mask, every reference and its object mask, and the user's reference mask, each read and
        checked once (one :class:`InputError` line naming what is wrong)."""
        several = isinstance(reference, (list, tuple))
        references = list(reference) if several else [reference]
        object_masks = list(object_mask) if isinstance(object_mask, (list, tuple)) else [object_mask]
        if several and (reference_mask is not None or no_align):
            raise InputError("several references need the alignment stage; drop reference_mask / no_align")
        if not references or (object_mask is not None and len(object_masks) != len(references)):
            raise InputError(f"give one object mask per reference ({len(references)}), or none")
        object_masks = object_masks if object_mask is not None else [None] * len(references)
        if output_type not in ("np", "pil"):
            raise InputError(f"output_type must be 'np' or 'pil', got {output_type!r}")
        image = as_rgb(image)
        if mask is None:
            raise InputError("mask: missing; paint the artifact white (255) on black")
        mask = check_mask(as_mask(mask), image.shape[:2], name="mask")
        grey = is_grey(image)
        references = references_like(references, grey)  # grey copies for a greyscale picture
        reference_mask = _reference_side_mask("reference_mask", reference_mask, references[0])
        object_masks = [_reference_side_mask("object_mask", m, r) for m, r in zip(object_masks, references)]
        return CheckedInputs(image, mask, references, object_masks, reference_mask, no_align, several, grey)

    def _window_job(self, plan: ZoomWindow, inputs: "CheckedInputs", run: RefineSettings,
                    strategy: WindowPaste | ResidualPaste, *, subtoken: bool | None, guided: bool) -> WindowJob:
        """Work out one window's job: correspondence, the source of its hole, and — when the refiner runs —
        tokens, guidance, what the model sees, and its fill."""
        cfg = self.refalign_config.refinement
        job = WindowJob(plan, ModelFrame(plan.window, self.resolution), plan.full_mask(inputs.mask.shape))
        guided = guided and self.uses_warped_guidance
        transfers = cfg.source == "reference"
        # transferring the reference's pixels uses the pixel-accurate correspondence: sub-token alignment is implied
        self._correspond(job, inputs, run, subtoken=True if transfers else subtoken, register=guided or transfers)
        reference = inputs.references[job.reference_index]
        self._choose_source(job, inputs.image, reference, run)
        if not job.runs_model:
            return job
        ref_pixels = crop_reference(reference, job.region, self.reference_encoder.image_size,
                                    context=cfg.reference_context, fill=cfg.reference_fill)
        job.tokens = self.encode_reference(self.image_to_tensor(ref_pixels))
        if self.uses_warped_guidance:
            self._guide(job, reference, guided)
        job.image, job.inpaint, job.weights = window_inputs(inputs.image, inputs.mask, plan, self.resolution,
                                                            cfg.dilation, cfg.feather)
        if job.transfer is not None:
            # harmonize: the transferred pixels take the classical fill's place (all bands: no detail to add), and
            # the result is pasted inside the mask only, as the transfer alone is
            job.fill = transferred_fill(inputs.image, job.mask, job.transfer, plan, self.resolution)
            job.weights = job.weights * job.fill.hole
        elif run.fill_start or strategy.needs_fill or self.refalign_config.masked_fill == "telea":
            # one classical fill serves the model's masked input, the fill start and the residual paste
            job.fill = classical_fill(inputs.image, inputs.mask, plan, self.resolution)
            strategy.prepare(job, reference, cfg.reference_fill)
        return job

    def _choose_source(self, job: WindowJob, image: np.ndarray, reference: np.ndarray, run: RefineSettings) -> None:
        """Where the window's hole gets its pixels (``refinement.source``): the registered reference's own pixels
        (:meth:`_paste`) when the correspondence has an accepted model — under ``unregistered="auto"`` the
        artifact's own pixels recoloured instead where they continue their surroundings better
        (:meth:`_recolours_over_paste`) — else, or when ``run.paste`` is off, ``run.unregistered``."""
        cfg = self.refalign_config.refinement
        if cfg.source != "reference":
            job.source = "model"
            return
        corr = job.correspondence
        registered = corr is not None and corr.matrix is not None
        if not registered or not run.paste:
            job.unpasted = registered
            if run.unregistered == "auto":
                self._auto_unregistered(job, image, reference, run)
            elif run.unregistered == "keep":
                job.source = "kept"
            elif run.unregistered == "synthesize":
                self._synthesize(job, image, reference, run.seed)
            elif run.unregistered == "guided":
                edge = edge_colours(image, job.mask)
                if not (self._recolours(job, image, edge, "guided")
                        or self._reference_recolours(job, image, edge, "guided", reference)):
                    self._synthesize(job, image, reference, run.seed, guided=True)
            else:
                job.source = "model"
            if run.paste and job.source.startswith("synthesis"):
                self._mix_located(job, image, reference)
            if job.restroke is not None:
                _restroke(job, image)
            return
        self._paste(job, image, reference, corr.fit.best, run.dense_flow)
        correlation = corr.fit.best.score.gradient_correlation
        if correlation < EXPLAINED_CORRELATION and run.unregistered == "auto" and not cfg.harmonize:
            self._recolours_over_paste(job, image, correlation)

    def _paste(self, job: WindowJob, image: np.ndarray, reference: np.ndarray, model: Candidate, flow: bool) -> None:
        """The window's hole gets the reference's own pixels through ``model`` (colour-fitted, moved by the dense
        flow when ``flow`` and it applies; harmonized by the model when ``refinement.harmonize``); for a paste
        across views (ring correlation below :data:`~refalign.transfer.register.EXPLAINED_CORRELATION`) how far it
        and the damaged pixels continue the surroundings is kept for the report."""
        pixels, valid, box, job.flow = registered_source(image, job.mask, reference, model.matrix, model.score,
                                                         flow=flow)
        job.transfer = (pixels, valid, box)
        job.source = "reference+model" if self.refalign_config.refinement.harmonize else "reference"
        if model.score.gradient_correlation < EXPLAINED_CORRELATION:
            job.edge_steps = paste_edge_steps(image, job.mask, pixels, valid, box)

    @staticmethod
    def _mix_located(job: WindowJob, image: np.ndarray, reference: np.ndarray) -> None:
        """A synthesis on the located path (:func:`~refalign.pipelines.subtoken.located_region`) averaged with the
        reference warped through the model that located it (colour-fitted as a paste is, without the flow), where
        that model explains at least :data:`~refalign.pipelines.subtoken.LOCATED_MIX_CORRELATION` of the ring
        (:func:`~refalign.transfer.source.mix_sources`, the paste at
        :data:`~refalign.pipelines.subtoken.LOCATED_MIX_WEIGHT`). Neither alone is as near the truth as their mean."""
        corr = job.correspondence
        if corr is None or corr.path != "located" or corr.fit is None or job.transfer is None:
            return
        best = corr.fit.best
        if best.score.gradient_correlation < LOCATED_MIX_CORRELATION:
            return
        located, valid, box, _ = registered_source(image, job.mask, reference, best.matrix, best.score, flow=False)
        pixels, _, synthesis_box = job.transfer
        if box != synthesis_box:  # both are the hole's colour box; a mismatch would mix unrelated pixels
            raise RuntimeError(f"located mix: the paste's box {box} is not the synthesis's {synthesis_box}")
        job.transfer = (mix_sources(pixels, located, valid, LOCATED_MIX_WEIGHT), None, box)
        job.located_mix = best.score.gradient_correlation

    @staticmethod
    def _recolours(job: WindowJob, image: np.ndarray, edge: EdgeColours, mode: str) -> bool:
        """``unregistered="auto"`` or ``"guided"`` (``mode``, named in the report): the artifact's own pixels,
        recoloured to their surroundings, when its colours jump at its edge and one colour map removes the jump
        (``edge``, from :func:`~refalign.transfer.damage.edge_colours`)."""
        if not edge.recolours:
            return False
        _recolour(job, image, edge, f"{mode}: {edge.describe()}")
        return True

    @staticmethod
    def _reference_recolours(job: WindowJob, image: np.ndarray, edge: EdgeColours, mode: str,
                             reference: np.ndarray) -> bool:
        """:meth:`_recolours` where the ring alone cannot confirm the map (it removes the step,
        :meth:`~refalign.transfer.damage.EdgeColours.removes_step`, but explains little of the surroundings' spread or
        is not undone by its inverse: two nearly flat colours at the edge) and ``reference`` does: the object never
        shows the damaged colours and shows the recoloured ones (:func:`~refalign.transfer.damage.reference_colours`;
        a label masked along its own border, whose colours the object shows, is not recoloured)."""
        if not edge.removes_step():
            return False
        seen = reference_colours(image, job.mask, edge.colour, reference)
        if not seen.confirms:
            return False
        _recolour(job, image, edge, f"{mode}: {edge.describe()}; the ring alone does not confirm the map "
                                    f"({edge.unconfirmed()}), the reference does: {seen.describe()}")
        return True

    @staticmethod
    def _recolours_over_paste(job: WindowJob, image: np.ndarray, correlation: float) -> None:
        """``unregistered="auto"`` on a registered window whose model explains the ring only in part (gradient
        correlation below :data:`~refalign.transfer.register.EXPLAINED_CORRELATION`, a paste across views): where the
        artifact only changed colours (:func:`~refalign.transfer.damage.edge_colours`), its own pixels recoloured
        replace the paste when they continue their surroundings better — the step the recolouring leaves at the
        mask's edge below the one the paste leaves (:meth:`~refalign.transfer.damage.EdgeColours.recolours_below`,
        :func:`~refalign.transfer.damage.edge_step_after`). The strokes of a recoloured artifact are the truth's, in
        place; a paste from another view is a pixel or several off."""
        edge = edge_colours(image, job.mask)
        paste_step = job.edge_steps.paste
        if edge.recolours_below(paste_step):
            _recolour(job, image, edge, f"auto: {edge.describe()}, the registered reference's pixels {paste_step:.2f}x "
                                        f"(ring correlation {correlation:.2f} < {EXPLAINED_CORRELATION})")

    def _auto_unregistered(self, job: WindowJob, image: np.ndarray, reference: np.ndarray,
                           run: RefineSettings) -> None:
        """``unregistered="auto"`` on a window without a registration (:mod:`refalign.transfer.damage`): its own
        pixels recoloured where only its colours changed — where the ring alone cannot tell, when the reference
        confirms the map (:meth:`_reference_recolours`) and its strokes would not be kept in a synthesis's colours
        (below); kept where it looks continuous with its surroundings —
        unless it looks blurred, then synthesised with its own pixels as the guide; else synthesised, guided by its
        own pixels where its region is a vague ``M*``
        (:meth:`~refalign.pipelines.correspondence.Correspondence.m_star_ratio`, which cannot say what the region
        held: a feature painted around keeps its layout), where its interior is a blur
        (:func:`~refalign.transfer.damage.interior_blur`: a smeared feature, whose truth breaks from the
        surroundings as it does) or where they continue the surroundings nearly as well as a plain synthesis does.
        Where it would be synthesised, a model refused only for its damage ratio is pasted
        instead (:meth:`_pastes_undamaged`); where its colours follow its surroundings' and its strokes are not a
        blur (:func:`~refalign.transfer.damage.strokes_follow`), they are kept in the synthesis's colours
        (:attr:`WindowJob.restroke`, applied by :meth:`_choose_source` after the located mix). The numbers go to the
        window's report."""
        edge = edge_colours(image, job.mask)
        if self._recolours(job, image, edge, "auto"):
            return
        mild, contrast = mildness(image, job.mask)
        blur, detail = interior_blur(image, job.mask), interior_detail(image, job.mask)
        restrokes = strokes_follow(edge, blur, detail, mild)
        if not restrokes and self._reference_recolours(job, image, edge, "auto", reference):
            return
        job.choice = (f"auto: the artifact {'looks continuous with' if mild else 'breaks from'} its surroundings, "
                      f"edge contrast {contrast:.2f} {'<' if mild else '>='} {MILD_EDGE_CONTRAST}")
        if mild:
            blurred = detail < BLURRED_DETAIL
            said = f", but blurred (detail {detail:.2f}x its surroundings' < {BLURRED_DETAIL})"
            if blurred and self._pastes_undamaged(job, image, reference, run, said):
                return
            problem = self._hole_problem(job, image, reference) if blurred else None
            if not isinstance(problem, HoleProblem):
                job.source = "kept"
                job.choice += "; a mask drawn with a margin of clean pixels looks so too: --unregistered synthesize"
                return
            job.choice += f"{said}: its own pixels guide the synthesis"
            self._use_synthesis(job, solve_hole(problem, seed=run.seed, guided=True))
            return
        if self._pastes_undamaged(job, image, reference, run, ""):
            return
        problem = self._hole_problem(job, image, reference)
        if not isinstance(problem, HoleProblem):
            job.source, job.fallback = "model", problem
            return
        if restrokes:
            job.restroke = edge  # its strokes, in the synthesis's colours (_choose_source)
        why = _guides_itself(job, blur)
        if why:
            job.choice += why
            self._use_synthesis(job, solve_hole(problem, seed=run.seed, guided=True))
            return
        plain, guided = (solve_hole(problem, seed=run.seed, guided=g) for g in (False, True))
        steps = [edge_step_after(image, job.mask, x.pixels, None, x.box) for x in (guided, plain)]
        chosen = guided if steps[0] <= GUIDED_STEP_RATIO * steps[1] else plain
        job.choice += (f"; its own pixels {'guide' if chosen is guided else 'do not guide'} the synthesis (edge step "
                       f"{steps[0]:.2f}x guided, {steps[1]:.2f}x plain; guided when at most {GUIDED_STEP_RATIO}x)"
                       + ("" if chosen is guided or job.restroke is not None else f"; {GUIDED_HINT}"))
        self._use_synthesis(job, chosen)

    def _pastes_undamaged(self, job: WindowJob, image: np.ndarray, reference: np.ndarray, run: RefineSettings,
                          why: str) -> bool:
        """``unregistered="auto"`` on a window it would synthesise (``why``: what it found so far, for the report),
        located by a model refused only for its damage ratio
        (:attr:`~refalign.transfer.register.LocalRegistration.damage_refused`), or with one found around the user's
        region: that model's paste (:meth:`_paste`), when ``run.paste``. The model explains the surroundings and
        another agrees with it; the damaged pixels differ from it hardly more than the surroundings do, so the region
        looks nearly as the reference says — a feature painted around, clean or smeared in its own colours, which a
        synthesis would rebuild as the surroundings' texture (an eye came back as a ghost of itself, 19.88 dB against
        23.05 pasted; docs/results.md, "Refused for the damage ratio alone"). Whether anything was pasted."""
        corr = job.correspondence
        fit = corr.fit if corr is not None and corr.path in ("located", "user") else None
        if not run.paste or fit is None or not fit.damage_refused:
            return False
        self._paste(job, image, reference, fit.best, run.dense_flow)
        job.choice += (f"{why}; {refused_model(corr)} explains its surroundings and another agrees, refused only "
                       f"because the damaged pixels differ from it {fit.best.score.damage_ratio:.2f}x as much as "
                       f"those do (< {MIN_DAMAGE_RATIO:g}x): pasted, not rebuilt from texture")
        return True

    def _synthesize(self, job: WindowJob, image: np.ndarray, reference: np.ndarray, seed: int, *,
                    guided: bool = False) -> None:
        """``unregistered="synthesize"``: the hole synthesised from the correspondence's reference region
        (:func:`~refalign.transfer.synthesis.synthesize_hole`, pasted inside the mask only) — ``guided`` by its own
        pixels for ``"guided"``; a window without a region, or with one too small to offer patches, goes to the
        refiner and its report says why."""
        problem = self._hole_problem(job, image, reference)
        if isinstance(problem, HoleProblem):
            self._use_synthesis(job, solve_hole(problem, seed=seed, guided=guided))
        else:
            job.source, job.fallback = "model", problem

    @staticmethod
    def _hole_problem(job: WindowJob, image: np.ndarray, reference: np.ndarray) -> HoleProblem | str:
        """The window's hole prepared for synthesis from the correspondence's reference region
        (:attr:`~refalign.pipelines.correspondence.Correspondence.synthesis_region`,
        :func:`~refalign.transfer.synthesis.prepare_hole`; one preparation serves a plain and a guided solve), or
        why it cannot be: no region, or one too small to offer patches."""
        if job.region is None:
            return "no matching region in the reference to synthesise from"
        try:
            return prepare_hole(image, job.mask, reference, job.correspondence.synthesis_region)
        except SynthesisError as exc:
            return str(exc)

    def _use_synthesis(self, job: WindowJob, synthesis: Synthesis) -> None:
        """The window's hole gets ``synthesis`` (pasted inside the mask only; harmonized by the model when
        ``refinement.harmonize``)."""
        job.synthesis = synthesis
        job.transfer = (synthesis.pixels, None, synthesis.box)
        job.source = "synthesis+model" if self.refalign_config.refinement.harmonize else "synthesis"

    def _correspond(self, job: WindowJob, inputs: "CheckedInputs", run: RefineSettings, *, subtoken: bool | None,
                    register: bool) -> None:
        """The window's correspondence: the user's region, the whole reference, or the alignment stage with every
        reference (one correspondence each) and the best one — the most confident registration when any was
        accepted, else the strongest, most compact ``M*``."""
        dilation = self.refalign_config.refinement.dilation
        if inputs.reference_mask is not None or inputs.no_align:
            path = "user" if inputs.reference_mask is not None else "whole"
            job.correspondence = find_correspondence(
                inputs.image, job.mask, inputs.references[0], inputs.reference_mask, path=path,
                object_mask=inputs.object_masks[0], register=register, frame=job.frame, dilation=dilation,
                view=inputs.view(0) if register else None)
            return
        candidates = [
            self._align(inputs.image, job.mask, ref, obj, generator=run.generator, subtoken=subtoken,
                        register=register, frame=job.frame, dilation=dilation,
                        view=inputs.view(i) if register else None)
            for i, (ref, obj) in enumerate(zip(inputs.references, inputs.object_masks))
        ]
        index = max(range(len(candidates)), key=lambda i: (
            candidates[i].correspondence.matrix is not None, candidates[i].correspondence.confidence,
            candidates[i].mask.any(), candidates[i].score))
        if inputs.several:
            logger.info("window %s: reference %d of %d (registration confidence %s; alignment scores %s)",
                        job.window, index, len(candidates),
                        ", ".join(f"{c.correspondence.confidence:.2f}" for c in candidates),
                        ", ".join(f"{c.score:.3f}" for c in candidates))
        job.reference_index, job.alignment = index, candidates[index]
        job.correspondence = job.alignment.correspondence
        if job.region is None:
            logger.warning("alignment found no matching region for window %s; using the whole reference", job.window)

    def _guide(self, job: WindowJob, reference: np.ndarray, guided: bool) -> None:
        """The warped-reference guidance of a guided model: the reference warped onto the window through the
        window's correspondence, or why not."""
        if not guided:
            job.guidance = "off"
        else:
            job.guidance = job.correspondence.guidance
            job.warp = warped_reference(job.correspondence, reference, job.frame, self.resolution,
                                        self.refalign_config.refinement.reference_fill)
            if job.warp is None and job.correspondence.valid_region is not None:
                job.guidance = "none (the warped reference misses the window)"
        logger.info("window %s: warped-reference guidance %s", job.window, job.guidance)

    def _output(self, result: np.ndarray, jobs: list[WindowJob], inputs: "CheckedInputs", output_type: str):
        """The :class:`RefineOutput` of the call: the image, the union of the regions used per reference, and per
        window its alignment, reference and guidance."""
        regions: list = [inputs.reference_mask.copy() if inputs.reference_mask is not None else None]
        regions *= len(inputs.references)
        for job in jobs:
            if job.alignment is not None and job.region is not None:
                prev = regions[job.reference_index]
                regions[job.reference_index] = job.region.copy() if prev is None else prev | job.region
        aligned = inputs.reference_mask is None and not inputs.no_align
        return RefineOutput(
            Image.fromarray(result) if output_type == "pil" else result,
            regions if inputs.several else regions[0],
            [j.alignment for j in jobs] if aligned else None,
            [j.window for j in jobs],
            [j.reference_index for j in jobs],
            [j.guidance for j in jobs] if self.uses_warped_guidance else [],
            [j.source for j in jobs],
            [j.correspondence.confidence if j.correspondence is not None else 0.0 for j in jobs],
            [j.report() for j in jobs],
            [j.doubts for j in jobs],
        )

    def _timesteps(self, steps: int, strength: float) -> torch.Tensor:
        """The schedule after ``strength`` (as diffusers' img2img: skip the first ``(1 - strength)`` of it)."""
        self.scheduler.set_timesteps(steps, device=self.device)
        t_start = max(steps - min(int(steps * strength), steps), 0)
        order = getattr(self.scheduler, "order", 1)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(t_start * order)
        return self.scheduler.timesteps[t_start * order :]

    def _extra_step_kwargs(self, generator) -> dict[str, Any]:
        params = set(inspect.signature(self.scheduler.step).parameters)
        return {"generator": generator} if "generator" in params else {}

    def _denoise_window(self, job: WindowJob, run: RefineSettings) -> np.ndarray:
        """Sample one window at model resolution; returns the decoded window ``(res, res, 3) uint8`` — the mean
        of ``num_samples`` samples drawn in one batch (an estimate of the posterior mean, which minimises the
        expected squared error; 1 = one sample, as the paper).

        Masked-latent inpainting: the U-Net sees the masked-image latent (under the mask: zero, or the window's
        classical fill for a ``masked_fill="telea"`` model) and the mask; after each step the latent outside the
        mask is reset to the input's latent noised to the next timestep (clean after the last), so the window's
        known part stays the input's. With ``strength < 1`` sampling starts from the window (or, with
        ``masked_content="fill"``, from its classical fill) noised to the first timestep.
        """
        cond = self._window_conditioning(job, run.num_samples)
        timesteps = self._timesteps(run.steps, run.strength)
        self._num_timesteps = len(timesteps)
        noise = randn_tensor(cond.image_latents.shape, generator=run.generator, device=self.device,
                             dtype=cond.image_latents.dtype)
        if run.strength >= 1.0:
            latents = noise * self.scheduler.init_noise_sigma
        else:
            start = cond.image_latents
            if run.fill_start:
                start = codecs.encode(self.codec, self.image_to_tensor(job.fill.model)).to(start.dtype)
                start = start.repeat(run.num_samples, 1, 1, 1)
            latents = self.scheduler.add_noise(start, noise, timesteps[:1])
        latents = self._sample(latents, noise, cond, timesteps, run)
        latents = require_finite(latents, "the model's output for this window")  # refused, never pasted
        pixels = codecs.decode(self.codec, latents.to(cond.image_latents.dtype))
        return self.tensor_to_image(require_finite(pixels.float().mean(0, keepdim=True), "the decoded window"))

    def _window_conditioning(self, job: WindowJob, num_samples: int) -> "WindowConditioning":
        """The U-Net's conditioning of one window, repeated for ``num_samples`` and classifier-free guidance."""
        image_latents, masked_latents, latent_mask = self.prepare_inpainting_inputs(
            self.image_to_tensor(job.image), self.mask_to_tensor(job.inpaint),
            filled=self.image_to_tensor(job.fill.model) if job.fill is not None else None,
        )
        k = max(1, int(num_samples))
        image_latents, latent_mask = image_latents.repeat(k, 1, 1, 1), latent_mask.repeat(k, 1, 1, 1)
        cond_tokens = job.tokens.repeat(k, 1, 1)
        n = 2 if self.do_classifier_free_guidance else 1
        tokens = torch.cat([cond_tokens, self.unconditional_tokens(cond_tokens.shape[0])]) if n == 2 else cond_tokens
        warp = (self.image_to_tensor(job.warp[0]), self.mask_to_tensor(job.warp[1])) if job.warp else (None, None)
        guidance = self.guidance_latents(*warp)
        return WindowConditioning(
            image_latents, latent_mask, masked_latents.repeat(n * k, 1, 1, 1), latent_mask.repeat(n, 1, 1, 1),
            tokens, guidance.repeat(n * k, 1, 1, 1) if guidance is not None else None, n,
        )

    def _sample(self, latents, noise, cond: "WindowConditioning", timesteps, run: RefineSettings) -> torch.Tensor:
        """The DDIM loop of one window (classifier-free guidance, known latents reset after each step)."""
        extra = self._extra_step_kwargs(run.generator)
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                x = torch.cat([latents] * cond.copies) if cond.copies > 1 else latents
                x = self.scheduler.scale_model_input(x, t)
                noise_pred = self.unet_forward(x, t, cond.masked_in, cond.mask_in, cond.tokens, cond.guidance)
                if cond.copies > 1:
                    conditional, unconditional = noise_pred.chunk(2)
                    noise_pred = unconditional + self._guidance_scale * (conditional - unconditional)
                latents = self.scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0]
                known = cond.image_latents
                if i < len(timesteps) - 1:
                    known = self.scheduler.add_noise(cond.image_latents, noise, timesteps[i + 1 : i + 2])
                latents = (1.0 - cond.latent_mask) * known + cond.latent_mask * latents
                if run.callback is not None:
                    available = {"latents": latents, "noise_pred": noise_pred, "tokens": cond.tokens}
                    out = run.callback(self, i, t, {k: available[k] for k in run.callback_inputs}) or {}
                    latents = out.pop("latents", latents)
                bar.update()
        return latents


def check_paste(paste, default: bool) -> bool | tuple[bool, ...]:
    """The call's ``paste``: ``default`` (the checkpoint's) for ``None``, one bool, or one bool per window (their
    number is checked once the windows are planned, :func:`per_window`)."""
    if paste is None:
        return bool(default)
    if isinstance(paste, (bool, np.bool_)):
        return bool(paste)
    if isinstance(paste, (list, tuple, np.ndarray)) and all(isinstance(p, (bool, np.bool_)) for p in paste):
        return tuple(bool(p) for p in paste)
    raise InputError(f"paste must be a bool or one bool per window, got {paste!r}")


def per_window(paste: bool | tuple[bool, ...], windows: int) -> tuple[bool, ...]:
    """The call's ``paste`` for each of ``windows`` windows: one bool for all, or one per window (checked)."""
    if isinstance(paste, bool):
        return (paste,) * windows
    if len(paste) != windows:
        raise InputError(f"paste: {len(paste)} values for {windows} window(s); give one per window, in the order of "
                         "RefineOutput.windows, or one for all")
    return paste


def telea_fill_tensor(images: torch.Tensor, masks: torch.Tensor, radius: int = RADIUS) -> torch.Tensor:
    """:func:`refalign.fill.telea_fill` on a batch: ``(B, 3, H, W)`` in ``[-1, 1]`` and ``(B, 1, H, W)`` masks
    (>= 0.5 = masked) → ``(B, 3, H, W)`` in ``[-1, 1]`` (8-bit quantised inside the mask, exact outside)."""
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    holes = (masks.detach().cpu()[:, 0] >= 0.5).numpy()
    filled = np.stack([telea_fill(p, h, radius) for p, h in zip(pixels.numpy(), holes)])
    out = torch.from_numpy(filled).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(images.device, images.dtype)
    return torch.where(masks >= 0.5, out, images)


@dataclass
class CheckedInputs:
    """The inputs of one pipeline call after their one check: arrays, ``(H, W)`` bool masks; and each reference
    prepared for registration (its features over its search area), once per call, when first needed."""

    image: np.ndarray
    mask: np.ndarray
    references: list[np.ndarray]
    object_masks: list[np.ndarray | None]
    reference_mask: np.ndarray | None
    no_align: bool
    several: bool
    grey: bool = False
    views: dict[int, ReferenceView] = field(default_factory=dict)

    def view(self, index: int) -> ReferenceView:
        if index not in self.views:
            ref = self.references[index]
            area = search_area(ref.shape[:2], self.reference_mask if index == 0 else None)
            self.views[index] = ReferenceView.prepare(ref, area)
        return self.views[index]


@dataclass
class WindowConditioning:
    """One window's U-Net conditioning: ``image_latents`` and ``latent_mask`` per sample, the masked-image latent,
    mask, tokens and guidance of the U-Net's batch (``copies`` = 2 with classifier-free guidance)."""

    image_latents: torch.Tensor
    latent_mask: torch.Tensor
    masked_in: torch.Tensor
    mask_in: torch.Tensor
    tokens: torch.Tensor
    guidance: torch.Tensor | None
    copies: int


def _reference_side_mask(name: str, mask, reference: np.ndarray) -> np.ndarray | None:
    """A mask on the reference (``reference_mask``, ``object_mask``): read, same size, not empty."""
    m = as_mask(mask)
    if m is None:
        return None
    if m.shape != reference.shape[:2]:
        raise InputError(f"{name}: mask is {m.shape[1]}x{m.shape[0]} but the reference is "
                         f"{reference.shape[1]}x{reference.shape[0]}; use a mask of the same size")
    if not m.any():
        raise InputError(f"{name}: mask marks no pixels; paint the region white (255) on black")
    return m


def _looks_like_hub_id(name: str) -> bool:
    """``owner/name`` with the characters the hub allows; anything else (``path/to/checkpoint``, ``./model``) is a
    local path and is checked as a folder."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) is not None


def _guides_itself(job: WindowJob, blur: float) -> str | None:
    """Why a window ``auto`` synthesises, breaking from its surroundings, takes its own pixels as the synthesis's
    guide before any edge-step test, for its report — or ``None``: its region is a vague ``M*``
    (:meth:`~refalign.pipelines.correspondence.Correspondence.m_star_ratio` at least :data:`VAGUE_AREA_RATIO`), which
    cannot say what the region held, or its interior is a blur (``blur``,
    :func:`~refalign.transfer.damage.interior_blur`, at least :data:`~refalign.transfer.damage.BLURRED_INTERIOR`), a
    smeared feature whose truth breaks from the surroundings as it does."""
    ratio = job.correspondence.m_star_ratio(job.mask)
    if ratio is not None and ratio >= VAGUE_AREA_RATIO:
        return (f"; M* is a vague match ({ratio:.1f}x the artifact's area >= {VAGUE_AREA_RATIO:g}x), which cannot say "
                "what the region held: its own pixels guide the synthesis; --unregistered synthesize rebuilds it "
                "from the region's texture, if it is content that does not belong")
    if blur >= BLURRED_INTERIOR:
        return (f"; its interior is a blur ({blur:.2f} of its gradient energy survives a further blur, >= "
                f"{BLURRED_INTERIOR}): its own pixels guide the synthesis")
    return None


def _restroke(job: WindowJob, image: np.ndarray) -> None:
    """The window's synthesised hole replaced by its own damaged pixels carried into the synthesis's colours
    (:func:`~refalign.transfer.damage.recolour_to_source`): for an artifact whose colours follow its surroundings'
    (:attr:`~refalign.transfer.damage.EdgeColours.follows_surroundings`) — a feature whose colours drifted to ones the
    ring lacks, so the recolouring cannot say what they become — the synthesis finds the colours and the damaged
    pixels keep the strokes a synthesis loses (docs/results.md, "Colours the surroundings lack")."""
    pixels, valid, box = job.transfer
    job.transfer = (recolour_to_source(image, job.mask, pixels, box), valid, box)


def _recolour(job: WindowJob, image: np.ndarray, edge: EdgeColours, choice: str) -> None:
    """The window's hole gets its own pixels through ``edge``'s colour map
    (:func:`~refalign.transfer.damage.recolour_region`), pasted inside the mask only; ``choice`` says why."""
    pixels, box = recolour_region(image, job.mask, edge.colour)
    job.source, job.transfer, job.choice = "recoloured", (pixels, None, box), choice
