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
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline

from refalign.errors import CheckpointError, InputError
from refalign.models import codecs
from refalign.pipelines.checkpoint import check_checkpoint
from refalign.pipelines.config import FILE_NAME, RefalignConfig
from refalign.shipped import default_model_path

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
            from huggingface_hub import snapshot_download

            try:
                path = Path(snapshot_download(str(pretrained_model_name_or_path)))
            except Exception as exc:  # offline, unknown repository, ...: one line naming what was asked for
                raise CheckpointError(f"{pretrained_model_name_or_path}: no such folder, and the hub could not "
                                      f"provide it ({type(exc).__name__}); give the path of a checkpoint "
                                      "folder") from exc
        check_checkpoint(path)
        config = RefalignConfig.load(path / FILE_NAME)
        # diffusers only loads components from modules already imported; make sure refalign's are (a fresh process)
        import refalign.models.codecs  # noqa: F401
        import refalign.models.reference_encoder  # noqa: F401
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
            from refalign.fill import telea_fill_tensor

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
        from refalign.models.unet import guided_in_channels

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
            from refalign.guidance import empty_guidance

            pixels, none = empty_guidance(self.resolution)
            warped = self.image_to_tensor(pixels).repeat(batch_size, 1, 1, 1)
            valid = self.mask_to_tensor(none).repeat(batch_size, 1, 1, 1)
        lat = codecs.encode(self.codec, warped.to(self.device))
        share = F.adaptive_avg_pool2d(valid.to(self.device).float(), lat.shape[-2:])
        return torch.cat([lat, share.to(lat.dtype)], dim=1).to(self.unet.dtype)

    # ------------------------------------------------------------------------------------------ stages
    def align(self, image, mask, reference, step: int | None = None, layer: int | None = None, **kwargs):
        """Alignment stage (paper Algorithm 1). See :func:`refalign.pipelines.alignment.align`."""
        from refalign.pipelines.alignment import align

        return align(self, image, mask, reference, step=step, layer=layer, **kwargs)

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
        generator: torch.Generator | None = None,
        seed: int | None = None,
        context: float | None = None,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        output_type: str = "np",
    ):
        """Refine the masked artifacts of ``image`` from ``reference`` (paper §3.5: alignment, then refinement).

        Args:
            image: ``(H, W, 3)`` array, PIL image or path — the image with artifacts ``I_a``.
            mask: ``(H, W)`` mask (array, PIL or path; true/255 = artifact) ``M_a``; may hold several regions.
            reference: the reference photo ``I_r`` (array, PIL or path), or a list of several photos of the object:
                each window then aligns with every one and is refined from the reference with the strongest, most
                compact correspondence (the highest alignment ``score``); ``RefineOutput.reference_indices`` reports
                the choice. ``object_mask`` is then a list too (or ``None``).
            reference_mask: the region of the reference to copy from, given by the user; alignment is skipped.
            object_mask: the object's mask on the reference (e.g. a transparent PNG's alpha), passed to alignment.
            no_align: condition on the whole reference (the paper's single-stage ablation).
            subtoken: refine ``M*`` beyond the token grid by feature matching (default: the checkpoint's
                ``alignment.subtoken``); each window's :class:`AlignmentOutput` says which path was taken.
            warped_guidance: for a model trained with warped-reference guidance (:attr:`uses_warped_guidance`),
                register each window with its reference and feed the warped reference (``False``: feed the
                no-guidance input, for ablations); ``RefineOutput.guidance`` says what each window got.
            num_inference_steps, guidance_scale: DDIM steps and classifier-free guidance scale (defaults:
                ``refalign_config.refinement``; ``guidance_scale <= 1`` runs the conditional pass only).
            strength: how much of the window to re-noise (1 = start from pure noise; lower keeps more of the input;
                default ``refalign_config.refinement.strength``).
            masked_content: with ``strength < 1``, start the mask from the artifact (``"original"``) or from a
                classical Telea fill of it (``"fill"``); default ``refalign_config.refinement.masked_content``.
            num_samples: samples drawn per window (in one batch) and averaged — the posterior-mean estimate that
                minimises squared error; 1 = a single sample (the paper); default ``refinement.num_samples``.
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
        from refalign.pipelines.outputs import RefineOutput
        from refalign.pipelines.zoom import (
            classical_fill, crop_reference, paste, plan_windows, reference_detail, residual_patch, window_inputs,
        )
        from refalign.windows import resize_image

        cfg = self.refalign_config.refinement
        steps = int(num_inference_steps or cfg.num_inference_steps)
        self._guidance_scale = float(cfg.guidance_scale if guidance_scale is None else guidance_scale)
        strength = float(cfg.strength if strength is None else strength)
        num_samples = int(cfg.num_samples if num_samples is None else num_samples)
        if num_samples < 1:
            raise InputError(f"num_samples must be at least 1, got {num_samples}")
        masked_content = str(cfg.masked_content if masked_content is None else masked_content)
        if masked_content not in ("original", "fill"):
            raise InputError(f"masked_content must be 'original' or 'fill', got {masked_content!r}")
        self._interrupt = False

        # 1. Check inputs
        several = isinstance(reference, (list, tuple))
        references = list(reference) if several else [reference]
        object_masks = list(object_mask) if isinstance(object_mask, (list, tuple)) else [object_mask]
        if several and (reference_mask is not None or no_align):
            raise InputError("several references need the alignment stage; drop reference_mask / no_align")
        if not references or (object_mask is not None and len(object_masks) != len(references)):
            raise InputError(f"give one object mask per reference ({len(references)}), or none")
        object_masks = object_masks if object_mask is not None else [None] * len(references)
        checked = [
            self._check_inputs(image, mask, ref, reference_mask, obj, steps, strength, output_type,
                               callback_on_step_end_tensor_inputs)
            for ref, obj in zip(references, object_masks)
        ]
        image, mask, reference, reference_mask, object_mask = checked[0]
        references = [c[2] for c in checked]
        object_masks = [c[4] for c in checked]
        if generator is not None and seed is not None:
            raise InputError("pass either generator or seed, not both")
        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(int(seed))

        # 2. Split the mask into regions and plan one zoom-in window per region (close regions share one)
        plans = plan_windows(
            mask, context=float(context or cfg.context), min_size=cfg.min_window, merge_growth=cfg.merge_growth
        )
        logger.debug("refining %d window(s): %s", len(plans), [p.window for p in plans])

        result = image.copy()
        alignments: list | None = [] if reference_mask is None and not no_align else None
        correspondences: list = [reference_mask.copy() if reference_mask is not None else None] * len(references)
        chosen: list[int] = []
        guidance_paths: list[str] = []
        for plan in plans:
            # 3. The reference region: the user's, the whole reference, or M* from the alignment stage (with
            #    several references, the one whose correspondence is strongest and most compact)
            region, index = reference_mask, 0
            if region is None and not no_align:
                candidates = [
                    self.align(image, plan.full_mask(mask.shape), ref, object_mask=obj, generator=generator,
                               subtoken=subtoken)
                    for ref, obj in zip(references, object_masks)
                ]
                index = max(range(len(candidates)), key=lambda i: (candidates[i].mask.any(), candidates[i].score))
                aligned = candidates[index]
                if several:
                    logger.info("window %s: reference %d of %d (alignment scores %s)", plan.window, index,
                                len(candidates), ", ".join(f"{c.score:.3f}" for c in candidates))
                alignments.append(aligned)
                region = np.asarray(aligned.mask, bool)
                if not region.any():
                    logger.warning("alignment found no matching region for window %s; using the whole reference",
                                   plan.window)
                    region = None
                else:
                    prev = correspondences[index]
                    correspondences[index] = region.copy() if prev is None else prev | region
            chosen.append(index)
            ref_pixels = crop_reference(references[index], region, self.reference_encoder.image_size,
                                        context=cfg.reference_context, fill=cfg.reference_fill)
            tokens = self.encode_reference(self.image_to_tensor(ref_pixels))

            warp, detail = None, None
            if self.uses_warped_guidance:
                geo, how = (None, "off") if not warped_guidance else self._window_registration(
                    image, mask, plan, references[index], region, object_masks[index],
                    alignments[-1] if region is not None and alignments else None, cfg.dilation)
                if geo is not None:
                    warp = self._warp_window(references[index], geo, plan, self.resolution)
                    if warp is None:
                        how = "none (the warped reference misses the window)"
                    elif cfg.detail_transfer and cfg.paste_mode == "residual":
                        full = self._warp_window(references[index], geo, plan, plan.window.size)
                        detail = reference_detail(*full, self.resolution) if full is not None else None
                guidance_paths.append(how)
                logger.info("window %s: warped-reference guidance %s", plan.window, how)

            # 4. Masked-latent inpainting of the window with DDIM and classifier-free guidance
            image_win, inpaint_win, weights = window_inputs(image, mask, plan, self.resolution, cfg.dilation,
                                                            cfg.feather)
            fill_start = strength < 1.0 and masked_content == "fill"
            base = fill_win = hole = None
            if fill_start or cfg.paste_mode == "residual" or self.refalign_config.masked_fill == "telea":
                # one classical fill serves the model's masked input, the fill start and the residual paste
                base, fill_win, hole = classical_fill(image, mask, plan, self.resolution)
            refined = self._denoise_window(image_win, inpaint_win, tokens, steps, strength, generator,
                                           callback_on_step_end, callback_on_step_end_tensor_inputs, warp,
                                           fill_win if fill_start else None, fill_win, num_samples)

            # 5. Back to image scale and paste inside the dilated mask only
            if cfg.paste_mode == "residual":
                inside = detail * hole[..., None] if detail is not None else None
                patch = residual_patch(base, refined, fill_win, inside, hole,
                                       cfg.ramp * plan.window.size / self.resolution)
            else:
                patch = resize_image(refined, plan.window.size)
            paste(result, patch, weights, plan.window)

        self.maybe_free_model_hooks()
        # 6. Output
        if output_type == "pil":
            from PIL import Image

            result = Image.fromarray(result)
        correspondence = correspondences if several else correspondences[0]
        return RefineOutput(result, correspondence, alignments, [p.window for p in plans], chosen, guidance_paths)

    def _check_inputs(self, image, mask, reference, reference_mask, object_mask, steps, strength, output_type,
                      tensor_inputs):
        from refalign.files import as_mask, as_rgb, check_mask

        image = as_rgb(image)
        if mask is None:
            raise InputError("mask: missing; paint the artifact white (255) on black")
        mask = check_mask(as_mask(mask), image.shape[:2], name="mask")
        reference = as_rgb(reference)
        masks = []
        for name, m in (("reference_mask", reference_mask), ("object_mask", object_mask)):
            m = as_mask(m)
            if m is not None:
                if m.shape != reference.shape[:2]:
                    raise InputError(f"{name}: mask is {m.shape[1]}x{m.shape[0]} but the reference is "
                                     f"{reference.shape[1]}x{reference.shape[0]}; use a mask of the same size")
                if not m.any():
                    raise InputError(f"{name}: mask marks no pixels; paint the region white (255) on black")
            masks.append(m)
        if steps < 1:
            raise InputError(f"num_inference_steps must be at least 1, got {steps}")
        if not 0.0 < strength <= 1.0:
            raise InputError(f"strength must be in (0, 1], got {strength}")
        if int(steps * strength) < 1:
            raise InputError(f"strength {strength} of {steps} steps leaves no step to run; raise either")
        if output_type not in ("np", "pil"):
            raise InputError(f"output_type must be 'np' or 'pil', got {output_type!r}")
        bad = [k for k in tensor_inputs if k not in self._callback_tensor_inputs]
        if bad:
            raise InputError(f"callback_on_step_end_tensor_inputs: {bad} not in {self._callback_tensor_inputs}")
        return image, mask, reference, masks[0], masks[1]

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

    def _window_registration(self, image, mask, plan, reference, region, object_mask, aligned, dilation):
        """How the reference maps onto one window: ``((homography, valid_region), how)`` or ``(None, why not)``.

        The image → reference homography comes from the sub-token path of the alignment when it fitted one,
        otherwise from :func:`~refalign.pipelines.subtoken.refine_correspondence` run now (features in a ring
        around the artifact), which here trusts a reliable registration even where it disagrees with ``M*`` (on
        warp cases a wrong ``M*`` was the cause every time it was measured). The valid region is the matched
        region ``M*`` (the whole reference when there is none) dilated by the inpainting dilation plus two model
        pixels, so it covers what is repainted.
        """
        from refalign.guidance import window_to_source
        from refalign.pipelines.subtoken import refine_correspondence
        from refalign.pipelines.zoom import dilate
        from refalign.registration import local_area_scale

        homography, target = None, None
        if aligned is not None and aligned.path == "warp" and aligned.homography is not None:
            homography, reason, target = aligned.homography, aligned.path_reason, aligned.mask
        else:
            m_star = region if region is not None else np.ones(reference.shape[:2], bool)
            geo = refine_correspondence(image, plan.full_mask(mask.shape), reference, m_star, object_mask=object_mask,
                                        trusted_inliers=0)
            if geo.path != "warp":
                return None, f"none ({geo.reason})"
            homography, reason, target = geo.homography, geo.reason, geo.mask
        to_source = window_to_source(plan.window, self.resolution)
        centre = tuple(to_source[:2] @ [self.resolution / 2.0, self.resolution / 2.0, 1.0])
        ref_px = plan.window.size / self.resolution * np.sqrt(max(local_area_scale(homography, centre), 1e-6))
        valid_region = dilate(target, int(np.ceil((dilation + 2.0) * ref_px)))
        return (homography, valid_region), f"warp ({reason})"

    @staticmethod
    def _warp_window(reference, geo, plan, size: int):
        """The reference warped onto ``plan``'s window at ``size`` pixels: ``(pixels, valid)``, or ``None`` when
        nothing of the valid region lands in it (``geo`` from :meth:`_window_registration`)."""
        from refalign.guidance import warp_to_window, window_to_source

        homography, valid_region = geo
        pixels, valid = warp_to_window(reference, valid_region, homography @ window_to_source(plan.window, size), size)
        return (pixels, valid) if valid.any() else None

    def _denoise_window(self, image_win, inpaint_win, cond_tokens, steps, strength, generator, callback,
                        tensor_inputs, warp=None, init_win=None, fill_win=None, num_samples: int = 1) -> np.ndarray:
        """Sample one window at model resolution; returns the decoded window ``(res, res, 3) uint8`` — the mean
        of ``num_samples`` samples drawn in one batch (an estimate of the posterior mean, which minimises the
        expected squared error; 1 = one sample, as the paper).

        ``init_win`` (strength < 1 only) replaces the window as the content that is noised to start from.
        ``fill_win`` is the classical fill a ``masked_fill="telea"`` model sees under the mask (default: Telea at
        model resolution, as in training).
        Masked-latent inpainting: the U-Net sees the masked-image latent and the mask; after each step the latent
        outside the mask is reset to the input's latent noised to the next timestep (clean after the last), so the
        window's known part stays the input's.
        """
        from diffusers.utils.torch_utils import randn_tensor

        image_latents, masked_latents, latent_mask = self.prepare_inpainting_inputs(
            self.image_to_tensor(image_win), self.mask_to_tensor(inpaint_win),
            filled=self.image_to_tensor(fill_win) if fill_win is not None else None,
        )
        k = max(1, int(num_samples))
        image_latents, latent_mask = image_latents.repeat(k, 1, 1, 1), latent_mask.repeat(k, 1, 1, 1)
        cond_tokens = cond_tokens.repeat(k, 1, 1)
        cfg_on = self.do_classifier_free_guidance
        tokens = torch.cat([cond_tokens, self.unconditional_tokens(cond_tokens.shape[0])]) if cfg_on else cond_tokens
        n = 2 if cfg_on else 1
        masked_in, mask_in = masked_latents.repeat(n * k, 1, 1, 1), latent_mask.repeat(n, 1, 1, 1)
        guidance = self.guidance_latents(
            *((self.image_to_tensor(warp[0]), self.mask_to_tensor(warp[1])) if warp is not None else (None, None))
        )
        guidance = guidance.repeat(n * k, 1, 1, 1) if guidance is not None else None

        timesteps = self._timesteps(steps, strength)
        self._num_timesteps = len(timesteps)
        noise = randn_tensor(image_latents.shape, generator=generator, device=self.device, dtype=image_latents.dtype)
        if strength >= 1.0:
            latents = noise * self.scheduler.init_noise_sigma
        else:
            start = image_latents
            if init_win is not None:
                start = codecs.encode(self.codec, self.image_to_tensor(init_win)).to(image_latents.dtype)
                start = start.repeat(k, 1, 1, 1)
            latents = self.scheduler.add_noise(start, noise, timesteps[:1])
        extra = self._extra_step_kwargs(generator)
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                x = torch.cat([latents] * n) if cfg_on else latents
                x = self.scheduler.scale_model_input(x, t)
                noise_pred = self.unet_forward(x, t, masked_in, mask_in, tokens, guidance)
                if cfg_on:
                    cond, uncond = noise_pred.chunk(2)
                    noise_pred = uncond + self._guidance_scale * (cond - uncond)
                latents = self.scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0]
                known = image_latents
                if i < len(timesteps) - 1:
                    known = self.scheduler.add_noise(image_latents, noise, timesteps[i + 1 : i + 2])
                latents = (1.0 - latent_mask) * known + latent_mask * latents
                if callback is not None:
                    available = {"latents": latents, "noise_pred": noise_pred, "tokens": tokens}
                    out = callback(self, i, t, {k: available[k] for k in tensor_inputs}) or {}
                    latents = out.pop("latents", latents)
                bar.update()
        pixels = codecs.decode(self.codec, latents.to(image_latents.dtype))
        return self.tensor_to_image(pixels.float().mean(0, keepdim=True))


def _looks_like_hub_id(name: str) -> bool:
    """``owner/name`` with the characters the hub allows; anything else (``path/to/checkpoint``, ``./model``) is a
    local path and is checked as a folder."""
    import re

    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) is not None
