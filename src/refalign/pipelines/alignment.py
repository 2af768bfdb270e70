"""The alignment stage (paper Algorithm 1, §3.2–3.3, §3.5, §A.4): the region of the reference matching the artifact.

One forward pass of R on the artifact window, conditioned on the *whole* reference, with the cross-attention of one
transformer block read through :func:`~refalign.attention.capture_cross_attention`; eq. 5 sums the head-averaged
attention rows under the artifact mask into a map over the reference's patch tokens; §A.4 post-processing turns it
into the correspondence mask ``M*`` on the reference.

Geometry (matching the alignment-mode training samples of :mod:`refalign.data.samples`):

* **image** — a square window around the artifact, :func:`refalign.windows.square_window` with
  ``AlignmentDefaults.context`` (4× the artifact's bbox: the model must see enough of the object to know which part
  of it the artifact is) and ``min_window``, resized to ``pipe.resolution``;
* **reference** — ``I_r ⊗ M_o`` when an object mask ``object_mask`` is given (the neutral grey
  :data:`refalign.fill.GREY` outside it), cropped to the square centred on the mask's bbox (the whole reference's
  square otherwise), padded with the same grey, resized to the encoder's input. The token grid covers that square,
  so ``M*`` is mapped back through it exactly and limited to the reference (and to ``object_mask``).
* **noise** — the window's latent is noised to the timestep of schedule index ``step`` (0 = first = noisiest, the
  paper's ``t = 0``) with a seeded generator; alignment at any step costs one U-Net pass.

Sub-token alignment (ours) and everything else that registers the window with the reference go through the
window's one :class:`~refalign.pipelines.correspondence.Correspondence`. The step × layer grid search (paper §3.3,
§A.1) lives in :mod:`refalign.eval.alignment_search`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from refalign.attention import (
    CrossAttentionStore,
    capture_cross_attention,
    postprocess_map,
    token_map,
    upsample_to_reference,
)
from refalign.attention.postprocess import PostprocessResult, upsample_soft
from refalign.errors import InputError
from refalign.files import as_mask, as_rgb, check_mask, is_grey, references_like
from refalign.fill import GREY
from refalign.models.unet import cross_attention_layer_names
from refalign.pipelines.correspondence import Correspondence, find_correspondence
from refalign.transfer.engine import ReferenceView
from refalign.windows import (
    ModelFrame, Window, crop, crop_square, mask_bbox, paste_square, resize_image, resize_mask, square_box,
    square_window, valid_region,
)

logger = logging.getLogger(__name__)


@dataclass
class AlignmentOutput:
    """Result of :func:`align`.

    Attributes:
        soft_map: ``(grid_h, grid_w)`` float32 — the cleaned eq. 5 map (noise peaks removed) normalised to ``[0, 1]``.
        raw_map: ``(grid_h, grid_w)`` float32 — eq. 5 as captured (attention mass under the artifact per token).
        mask: ``(H_ref, W_ref)`` bool — the correspondence mask ``M*`` at the reference's resolution.
        token_mask: ``(grid_h, grid_w)`` bool — the blob ``M*`` was grown from.
        step, layer: where the map was read (schedule index, cross-attention layer index).
        score: confidence in ``[0, 1]`` — the share of the cleaned map's mass inside ``token_mask``
            (:func:`refalign.attention.postprocess.mass_share`): 1 when all attention from the artifact lands in
            the chosen blob; about ``|blob| / N`` for an uninformative (uniform) map.
        timestep: the diffusion timestep of ``step``.
        window: the square of the image the model saw.
        reference_box: ``(top, left, side)`` of the reference square the token grid covers (reference pixels; may
            stick out of the reference).
        noise_peaks: ``(grid_h, grid_w)`` bool — tokens removed as ViT noise (§A.4).
        path: ``"cross-attention"`` (``mask`` is the token-level ``M*``), ``"warp"`` (sub-token alignment refined
            it geometrically, :mod:`refalign.pipelines.subtoken`) or ``"located"`` (the artifact where a model that
            was not accepted puts it); ``path_reason`` says why.
        homography: image → reference homography of the sub-token path, when one was fitted.
        correspondence: the window's :class:`~refalign.pipelines.correspondence.Correspondence` (``mask``,
            ``path``, ``path_reason`` and ``homography`` are read from it).
    """

    soft_map: np.ndarray
    raw_map: np.ndarray
    mask: np.ndarray
    token_mask: np.ndarray
    step: int
    layer: int
    score: float
    timestep: int = -1
    window: Window | None = None
    reference_box: tuple[int, int, int] | None = None
    noise_peaks: np.ndarray | None = None
    path: str = "cross-attention"
    path_reason: str = ""
    homography: np.ndarray | None = None
    correspondence: Correspondence | None = None

    def soft_on_reference(self) -> np.ndarray:
        """The soft map bilinearly upsampled onto the reference: ``(H_ref, W_ref)`` float32 in ``[0, 1]``."""
        h, w = self.mask.shape
        top, left, side = self.reference_box or (0, 0, max(h, w))
        return paste_square(upsample_soft(self.soft_map, (side, side)), Window(top, left, side), (h, w), 0.0)


@dataclass
class PreparedAlignment:
    """Everything one alignment needs before the U-Net pass (built once; the search reuses it for every step)."""

    tokens: torch.Tensor
    image_latents: torch.Tensor
    masked_latents: torch.Tensor
    latent_mask: torch.Tensor
    query_mask: torch.Tensor
    noise: torch.Tensor
    window: Window
    reference_box: tuple[int, int, int]
    reference_hw: tuple[int, int]
    object_mask: np.ndarray | None


# ------------------------------------------------------------------------------------------------ geometry
def reference_square(
    reference: np.ndarray, object_mask: np.ndarray | None, fill: int = GREY
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The reference the encoder reads during alignment and the square box it covers (see module docs); ``fill``
    is the model's neutral grey (``refinement.reference_fill``)."""
    h, w = reference.shape[:2]
    if object_mask is None:
        box = square_box((0, 0, h, w))
        return crop_square(reference, box, fill), box.as_tuple()
    box = square_box(mask_bbox(object_mask))
    seg = np.where(object_mask[..., None], reference, np.uint8(fill)).astype(np.uint8)
    return crop_square(seg, box, fill), box.as_tuple()


def _check_object_mask(object_mask, reference: np.ndarray) -> np.ndarray | None:
    m = as_mask(object_mask)
    if m is None:
        return None
    if m.shape != reference.shape[:2]:
        raise InputError(
            f"object_mask is {m.shape[1]}x{m.shape[0]} but the reference is "
            f"{reference.shape[1]}x{reference.shape[0]}; give a mask of the reference's size"
        )
    if not m.any():
        raise InputError("object_mask marks no pixels; paint the object white (255) on black")
    return m


# ------------------------------------------------------------------------------------------------ model side
def check_step_layer(pipe, step: int, layer: int, num_inference_steps: int) -> None:
    """Refuse a schedule index or layer index that does not exist (never clamp)."""
    if not 0 <= int(step) < int(num_inference_steps):
        raise InputError(
            f"step {step} is out of range: the schedule has {num_inference_steps} steps (0-{num_inference_steps - 1})"
        )
    n = len(cross_attention_layer_names(pipe.unet))
    if not 0 <= int(layer) < n:
        raise InputError(
            f"layer {layer} is out of range: this model has {n} cross-attention layers (0-{n - 1}); pass another "
            "layer, or store the best one in the checkpoint with `refalign align-search CASES --write-defaults`"
        )


def prepare_alignment(
    pipe, image, mask, reference, object_mask=None, generator: torch.Generator | None = None
) -> PreparedAlignment:
    """Validate the inputs, then :func:`prepare_checked`."""
    image, mask, reference, object_mask = check_alignment_inputs(image, mask, reference, object_mask)
    return prepare_checked(pipe, image, mask, reference, object_mask, generator)


def check_alignment_inputs(image, mask, reference, object_mask=None):
    """``(image, mask, reference, object_mask)`` as checked arrays (one :class:`InputError` line if not); a
    greyscale image gets a greyscale copy of the reference, as the refine path gives it."""
    image = as_rgb(image)
    mask = check_mask(as_mask(mask), image.shape[:2], name="mask", image_name="image")
    (reference,) = references_like([reference], is_grey(image))
    return image, mask, reference, _check_object_mask(object_mask, reference)


def prepare_checked(
    pipe, image: np.ndarray, mask: np.ndarray, reference: np.ndarray, object_mask: np.ndarray | None,
    generator: torch.Generator | None = None,
) -> PreparedAlignment:
    """Cut the alignment window, encode the reference and draw the noise (no U-Net pass) from checked arrays."""
    cfg = pipe.refalign_config.alignment
    window = square_window(mask_bbox(mask), image.shape[:2], context=float(cfg.context), min_size=int(cfg.min_window))
    res = pipe.resolution
    win_image = resize_image(crop(image, window), res)
    win_mask = resize_mask(crop(mask, window) & valid_region(mask.shape, window), res, conservative=True)

    ref_pixels, box = reference_square(reference, object_mask, pipe.refalign_config.refinement.reference_fill)
    tokens = pipe.encode_reference(pipe.image_to_tensor(resize_image(ref_pixels, pipe.reference_encoder.image_size)))
    mask_t = pipe.mask_to_tensor(win_mask)
    image_latents, masked_latents, latent_mask = pipe.prepare_inpainting_inputs(pipe.image_to_tensor(win_image), mask_t)
    if generator is None:
        generator = torch.Generator("cpu").manual_seed(int(cfg.seed))
    noise = randn_tensor(
        tuple(image_latents.shape), generator=generator, device=image_latents.device, dtype=image_latents.dtype
    )
    return PreparedAlignment(
        tokens=tokens,
        image_latents=image_latents,
        masked_latents=masked_latents,
        latent_mask=latent_mask,
        query_mask=mask_t,
        noise=noise,
        window=window,
        reference_box=box,
        reference_hw=reference.shape[:2],
        object_mask=object_mask,
    )


@torch.no_grad()
def capture_maps(
    pipe, prepared: PreparedAlignment, step: int, layers, num_inference_steps: int
) -> tuple[dict[int, np.ndarray], int]:
    """ONE U-Net pass at schedule index ``step`` reading ``layers`` (``None`` = all): ``({layer: raw map}, timestep)``.

    Raw maps are eq. 5 on the token grid, ``(grid_h, grid_w)`` float32 (CLS dropped).
    """
    scheduler = pipe.scheduler
    scheduler.set_timesteps(int(num_inference_steps), device=prepared.image_latents.device)
    t = scheduler.timesteps[int(step)]
    noisy = scheduler.add_noise(prepared.image_latents, prepared.noise, t.reshape(1))
    latents = scheduler.scale_model_input(noisy, t)
    store = CrossAttentionStore(prepared.query_mask, layers=layers)
    with capture_cross_attention(pipe.unet, store):
        store.set_step(step)
        pipe.unet_forward(latents, t, prepared.masked_latents, prepared.latent_mask, prepared.tokens,
                          pipe.guidance_latents(None, None, latents.shape[0]))
    grid = pipe.token_grid
    maps = {layer: token_map(m, grid)[0].float().cpu().numpy() for (s, layer), m in store.maps.items()}
    return maps, int(t)


def correspondence_mask(
    raw: np.ndarray, prepared: PreparedAlignment, *, noise_z: float, threshold: float
) -> tuple[PostprocessResult, np.ndarray]:
    """§A.4 post-processing of one raw map and its mapping onto the reference → ``(token-grid result, M*)``."""
    post = postprocess_map(raw, noise_z=noise_z, threshold=threshold)
    top, left, side = prepared.reference_box
    square, _ = upsample_to_reference(post.soft_map, post.token_mask, (side, side), threshold)
    m_star = paste_square(square, Window(*prepared.reference_box), prepared.reference_hw, False)
    if prepared.object_mask is not None:
        m_star &= prepared.object_mask
    return post, m_star


def align(pipe, image, mask, reference, step: int | None = None, layer: int | None = None, object_mask=None,
          generator: torch.Generator | None = None, subtoken: bool | None = None) -> AlignmentOutput:
    """Alignment stage (paper Algorithm 1): the region ``M*`` of ``reference`` that matches the masked artifact.

    Args:
        pipe: a :class:`~refalign.pipelines.RefineByAlignPipeline`.
        image: ``I_a`` — ``(H, W, 3) uint8`` array, PIL image or path.
        mask: ``M_a`` — ``(H, W)`` mask (array, PIL or path), true/255 = artifact.
        reference: ``I_r`` — array, PIL image or path.
        step: schedule index (default ``refalign_config.alignment.step``; 0 = noisiest, the paper's ``t = 0``).
        layer: cross-attention layer index in U-Net order (default ``refalign_config.alignment.layer``).
        object_mask: the object's mask on the reference; ``M*`` is limited to it.
        generator: noise source (default: seeded with ``refalign_config.alignment.seed``).
        subtoken: refine ``M*`` geometrically beyond the token grid (:mod:`refalign.pipelines.subtoken`; default
            ``refalign_config.alignment.subtoken``); falls back to ``M*`` when feature matching is unreliable.

    Costs exactly one U-Net forward pass (plus one reference-encoder pass). Raises :class:`InputError` for bad inputs
    or an out-of-range ``step``/``layer``.
    """
    image, mask, reference, object_mask = check_alignment_inputs(image, mask, reference, object_mask)
    return align_checked(pipe, image, mask, reference, object_mask, step=step, layer=layer, generator=generator,
                         subtoken=subtoken)


def align_checked(
    pipe, image: np.ndarray, mask: np.ndarray, reference: np.ndarray, object_mask: np.ndarray | None = None, *,
    step: int | None = None, layer: int | None = None, generator: torch.Generator | None = None,
    subtoken: bool | None = None, register: bool = False, frame: ModelFrame | None = None, dilation: float = 0.0,
    view: ReferenceView | None = None,
) -> AlignmentOutput:
    """:func:`align` on checked arrays, with the window's one correspondence
    (:func:`~refalign.pipelines.correspondence.find_correspondence`; ``register``, ``frame``, ``dilation`` and ``view``
    are passed on to it for the refinement window's warped guidance)."""
    cfg = pipe.refalign_config.alignment
    step = int(cfg.step if step is None else step)
    layer = int(cfg.layer if layer is None else layer)
    check_step_layer(pipe, step, layer, cfg.num_inference_steps)
    prepared = prepare_checked(pipe, image, mask, reference, object_mask, generator)
    maps, timestep = capture_maps(pipe, prepared, step, [layer], cfg.num_inference_steps)
    raw = maps[layer]
    post, m_star = correspondence_mask(raw, prepared, noise_z=cfg.noise_z, threshold=cfg.threshold)
    if not m_star.any():
        logger.warning("alignment at step %d, layer %d found no region (flat correspondence map)", step, layer)
    logger.debug("aligned at step %d (t=%d), layer %d: score %.3f, %d noise token(s) removed",
                 step, timestep, layer, post.score, int(post.noise_peaks.sum()))
    subtoken = bool(cfg.subtoken if subtoken is None else subtoken)
    corr = find_correspondence(image, mask, reference, m_star, path="cross-attention", object_mask=object_mask,
                               subtoken=subtoken, register=register, frame=frame, dilation=dilation, view=view)
    if subtoken:
        logger.info("sub-token alignment: %s (%s)", corr.path, corr.reason)
    return AlignmentOutput(
        soft_map=post.soft_map,
        raw_map=raw.astype(np.float32),
        mask=corr.mask,
        token_mask=post.token_mask,
        step=step,
        layer=layer,
        score=float(post.score),
        timestep=timestep,
        window=prepared.window,
        reference_box=prepared.reference_box,
        noise_peaks=post.noise_peaks,
        path=corr.path,
        path_reason=corr.reason,
        homography=corr.homography,
        correspondence=corr,
    )
