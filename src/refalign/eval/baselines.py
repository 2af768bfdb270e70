"""Methods the benchmark runs on a case: baselines and the refalign pipeline.

* ``identity`` — the input unchanged (the floor every method must beat).
* ``telea`` / ``ns`` — OpenCV inpainting of the mask (Telea 2004; Navier–Stokes, Bertalmío et al. 2001), radius 3,
  no reference.
* ``paste`` — naive copy from the reference: take the correspondence region ``C`` on the reference (the case's
  ground-truth ``correspondence.png`` when present; else the pipeline's alignment when a model is given; else a
  masked template match of the artifact's surroundings, see :func:`template_correspondence`), resize the reference
  crop of ``C``'s bounding box onto the artifact mask's bounding box (axis-aligned scale + shift, no colour
  correction, no blending) and copy it inside the mask only. The source is recorded as ``correspondence_source``.
* ``oracle`` — the upper bound on ``warp`` cases: the reference pulled back through the case's ground-truth
  homography (``meta.json`` ``homography``) by the refine path's own transfer, colour-fitted on the ring of known
  pixels around the mask with the exact pixel pairs (:func:`refalign.transfer.colour.fit_colour`), pasted in the
  mask. No method that reads the reference can do better than exact geometry; on cases without ground-truth
  geometry it does not apply (:class:`NotApplicable`, not a failure).
* ``verified-paste`` — on ``crossview`` cases, the reference pasted through the homography ``make-cases`` verified
  the case with (``meta.json`` ``local_homography``) the way the refine path pastes a registration (its ring's
  colour map and offset field, the dense flow) but with no acceptance check: what a plane model's paste across
  two real views gives when the model is as good as matched features make it. Not applicable elsewhere.
* ``refalign`` — the full pipeline (alignment + refinement, paper §3.5); ``refalign-single`` — the same model with
  no alignment, conditioned on the whole reference (the paper's "single-stage" ablation, Table 3). Both get the
  case's ``reference_mask.png`` as the pipeline's ``object_mask``. ``refalign-noguide`` — a model trained with
  warped-reference guidance (:mod:`refalign.guidance`, ours) run with the guidance input off (the ablation of it).
  The pipeline methods record the guidance each window got and the paste radius, so the background check allows
  exactly the band the pipeline may repaint.
* ``refalign-region`` — the full pipeline told where the artifact's content lies in the reference, as a user who
  paints it with ``--reference-mask`` tells it (the advice of an unregistered window's report): the case's
  :meth:`~refalign.eval.cases.Case.matching_region` (``correspondence.png`` on warp cases, the mask through the
  verified ``local_homography`` on crossview ones) as the pipeline's ``reference_mask``; not applicable elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from refalign.errors import InputError
from refalign.eval.cases import Case
from refalign.fill import telea_fill
from refalign.mask_ops import distance_to
from refalign.transfer.colour import fit_colour
from refalign.transfer.register import colour_area, colour_box, colour_weights, ring_width, score_warp, warp_box
from refalign.transfer.source import paste_hole, registered_source, transfer_source
from refalign.windows import crop, mask_bbox, resize_image, resize_mask, square_window

PIXEL_METHODS = ("identity", "telea", "ns", "paste", "oracle", "verified-paste")
MODEL_METHODS = ("refalign", "refalign-region", "refalign-single", "refalign-noguide")
METHODS = PIXEL_METHODS + MODEL_METHODS


class NotApplicable(InputError):
    """The method does not apply to this case (e.g. ``oracle`` without ground-truth geometry): the runner records
    the case as skipped for this method, not as failed."""


@dataclass
class MethodOutput:
    """What a method returns: the refined image and, when it predicts one, the correspondence on the reference."""

    image: np.ndarray
    correspondence: np.ndarray | None = None
    correspondence_source: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def identity(case: Case) -> MethodOutput:
    return MethodOutput(case.image.copy())


def opencv_inpaint(case: Case, flags: int, radius: int = 3) -> MethodOutput:
    """OpenCV inpainting of the mask; outside the mask the result is the input (OpenCV keeps it already)."""
    out = telea_fill(case.image, case.mask, radius, navier_stokes=flags == cv2.INPAINT_NS)
    out[~case.mask] = case.image[~case.mask]
    return MethodOutput(out)


def template_correspondence(
    image: np.ndarray, mask: np.ndarray, reference: np.ndarray, *, scales=(0.6, 0.75, 0.9, 1.0, 1.15, 1.35, 1.6),
    context: float = 3.0, work_side: int = 256,
) -> np.ndarray:
    """Predict where the artifact lies on the reference without a model: match the square window around the
    artifact (artifact pixels excluded through the template mask, normalised cross-correlation) over the reference
    at several scales; the artifact mask, scaled and placed at the best match, is the predicted region."""
    win = square_window(mask_bbox(mask), mask.shape, context=context, min_size=32)
    tmpl, tmask = crop(image, win), ~crop(mask, win)
    rh, rw = reference.shape[:2]
    f = min(1.0, work_side / max(rh, rw))
    ref_small = resize_image(reference, (max(8, round(rh * f)), max(8, round(rw * f))))
    best = (-np.inf, 0, 0, 0)
    for s in scales:
        side = max(8, round(win.size * s * f))
        if side >= min(ref_small.shape[:2]):
            continue
        t = resize_image(tmpl, side)
        tm = resize_mask(tmask, side, conservative=False).astype(np.uint8)
        if tm.sum() < 16:
            continue
        res = cv2.matchTemplate(ref_small, t, cv2.TM_CCOEFF_NORMED, mask=np.repeat(tm[..., None], 3, 2))
        res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
        _, score, _, loc = cv2.minMaxLoc(res)
        if score > best[0]:
            best = (score, loc[1], loc[0], side)
    if not np.isfinite(best[0]):
        raise InputError("reference is too small to search for the artifact's region; give a larger reference")
    _, top, left, side = best
    full_side = max(1, round(side / f))
    placed = resize_mask(crop(mask, win), full_side, conservative=False)
    out = np.zeros((rh, rw), bool)
    t0, l0 = round(top / f), round(left / f)
    t1, l1 = min(rh, t0 + full_side), min(rw, l0 + full_side)
    out[t0:t1, l0:l1] = placed[: t1 - t0, : l1 - l0]
    if not out.any():  # the artifact fell outside after rounding: take the matched window itself
        out[t0:t1, l0:l1] = True
    return out


def paste_region(image: np.ndarray, mask: np.ndarray, reference: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Resize the reference crop of ``region``'s bounding box onto ``mask``'s bounding box and copy it inside the
    mask (every pixel outside the mask stays the input's)."""
    t, l, b, r = mask_bbox(mask)
    rt, rl, rb, rr = mask_bbox(region)
    patch = resize_image(reference[rt:rb, rl:rr], (b - t, r - l))
    out = image.copy()
    m = mask[t:b, l:r]
    out[t:b, l:r][m] = patch[m]
    return out


def oracle(case: Case) -> MethodOutput:
    """The reference through the ground-truth geometry, pasted in the mask by the refine path's own transfer
    (:func:`refalign.transfer.source.transfer_source`: Lanczos warp, smooth offset field), with the colour map that
    exact pixel pairs allow — the polynomial pair fit (:func:`refalign.transfer.colour.fit_colour`) on the same ring
    the refine path uses. The gap between it and refalign is what registration and its misregistration-proof
    colour map cost (the module docstring's ``oracle``)."""
    hom = case.meta.get("homography")
    if hom is None:
        raise NotApplicable(f"{case.path}: oracle needs the ground-truth geometry (meta.json 'homography', warp cases)")
    matrix = np.asarray(hom, np.float64)  # image → reference: the case's reference is the target warped by it
    mask = case.mask
    t, l, b, r = box = colour_box(mask)
    warped, valid = warp_box(case.reference, matrix, box)
    sub = mask[t:b, l:r]
    dist = distance_to(sub)
    width = ring_width(mask)
    ring = colour_area(valid, sub, dist, width)
    if ring.sum() < 12:
        raise NotApplicable(f"{case.path}: too few reference pixels around the mask to fit the oracle's colour")
    fit = fit_colour(warped[ring], case.image[t:b, l:r][ring], colour_weights(dist[ring], width))
    source, valid, box = transfer_source(case.image, mask, case.reference, matrix, fit)
    out = case.image.copy()
    pasted = paste_hole(out, source, mask, box, valid)
    return MethodOutput(out, info={"oracle_coverage": float(pasted.sum() / max(1, mask.sum()))})


def verified_paste(case: Case) -> MethodOutput:
    """The reference through the crossview case's verified ``local_homography``, pasted as the refine path pastes
    an accepted registration (:func:`refalign.transfer.source.registered_source`), unchecked (module docstring)."""
    hom = case.meta.get("local_homography")
    if hom is None:
        raise NotApplicable(f"{case.path}: verified-paste needs the homography make-cases verified a crossview case "
                            "with (meta.json 'local_homography')")
    matrix = np.asarray(hom, np.float64)
    score = score_warp(case.image, case.mask, case.reference, matrix)
    pixels, valid, box, _ = registered_source(case.image, case.mask, case.reference, matrix, score)
    out = case.image.copy()
    pasted = paste_hole(out, pixels, case.mask, box, valid)
    return MethodOutput(out, info={"ring_correlation": round(float(score.gradient_correlation), 4),
                                   "paste_coverage": float(pasted.sum() / max(1, case.mask.sum()))})


def _aligned_region(pipe, case: Case) -> np.ndarray | None:
    """The correspondence mask ``M*`` of the pipeline's alignment stage (``AlignmentOutput.mask``)."""
    # ``align``'s ``object_mask`` is the object's mask on the reference (M* is limited to it)
    result = pipe.align(case.image, case.mask, case.reference, object_mask=case.reference_mask)
    corr = getattr(result, "mask", getattr(result, "correspondence", None))
    return None if corr is None else np.asarray(corr, bool)


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def paste(case: Case, pipe=None) -> MethodOutput:
    """Naive paste of the matched reference region (see the module docstring for where the region comes from)."""
    if case.correspondence is not None:
        region, source = case.correspondence, "ground truth"
    elif pipe is not None:
        region, source = _aligned_region(pipe, case), "refalign alignment"
    else:
        region, source = template_correspondence(case.image, case.mask, case.reference), "template match"
    if region is None or not region.any():
        raise InputError(f"{case.path}: no correspondence region to paste from ({source} found none)")
    return MethodOutput(paste_region(case.image, case.mask, case.reference, region),
                        None if source == "ground truth" else region, source)


def run_pipeline(case: Case, pipe, *, no_align: bool, steps: int | None, seed: int,
                 warped_guidance: bool = True, region: bool = False) -> MethodOutput:
    """One call of :class:`~refalign.pipelines.pipeline_refine_by_align.RefineByAlignPipeline` on a case; with
    ``region``, told the case's matching region (``refalign-region``)."""
    import torch

    from refalign.pipelines.zoom import paste_radius

    kwargs: dict[str, Any] = {"no_align": no_align, "generator": torch.Generator("cpu").manual_seed(seed)}
    if not warped_guidance:
        kwargs["warped_guidance"] = False
    if region:
        matched, _ = case.matching_region()
        if matched is None:
            raise NotApplicable(f"{case.path}: refalign-region needs the case's matching region (correspondence.png, "
                                "or meta.json 'local_homography' of a crossview case)")
        kwargs["reference_mask"] = matched
    elif case.reference_mask is not None and _accepts(pipe.__call__, "object_mask"):
        # the case's reference_mask.png is the object's mask (alignment searches inside it); the pipeline's own
        # ``reference_mask`` argument means "copy from exactly here" and would skip alignment, so it is not used
        kwargs["object_mask"] = case.reference_mask
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    out = pipe(case.image, case.mask, case.reference, **kwargs)
    corr = getattr(out, "correspondence", None)
    info: dict[str, Any] = {}
    if getattr(out, "windows", None) and hasattr(pipe, "refalign_config"):
        r = pipe.refalign_config.refinement
        info["paste_radius"] = max(paste_radius(w, pipe.resolution, r.dilation, r.feather) for w in out.windows)
    if getattr(out, "guidance", None):
        info["guidance"] = list(out.guidance)
    if getattr(out, "sources", None):
        info["sources"], info["confidence"] = list(out.sources), [round(float(c), 4) for c in out.confidence]
        info["doubts"] = [list(d) for d in getattr(out, "doubts", None) or []]
        info["reports"] = list(getattr(out, "reports", None) or [])  # each window's line: how, and why
        if hasattr(pipe, "refalign_config"):
            info["paste"] = bool(pipe.refalign_config.refinement.paste)
    if region:  # the region it was given is not a prediction to score
        return MethodOutput(np.asarray(out.image, np.uint8), None, "matching region given", info)
    return MethodOutput(np.asarray(out.image, np.uint8), None if corr is None else np.asarray(corr, bool),
                        None if no_align else "refalign alignment", info)


def make_method(name: str, pipe=None, *, steps: int | None = None, seed: int = 0) -> Callable[[Case], MethodOutput]:
    """The function that runs method ``name`` on a case (``pipe`` is required by the refalign methods)."""
    if name not in METHODS:
        raise InputError(f"--method {name}: unknown method; choose from {', '.join(METHODS)}")
    if name in MODEL_METHODS and pipe is None:
        raise InputError(f"--method {name} needs a model; pass --model PATH to a checkpoint")
    if name == "identity":
        return identity
    if name == "telea":
        return lambda case: opencv_inpaint(case, cv2.INPAINT_TELEA)
    if name == "ns":
        return lambda case: opencv_inpaint(case, cv2.INPAINT_NS)
    if name == "paste":
        return lambda case: paste(case, pipe)
    if name == "oracle":
        return oracle
    if name == "verified-paste":
        return verified_paste
    if name == "refalign-noguide" and not getattr(pipe, "uses_warped_guidance", False):
        raise InputError("--method refalign-noguide needs a model trained with warped-reference guidance "
                         "(model.warped_guidance); use --method refalign for this one")
    return lambda case: run_pipeline(case, pipe, no_align=name == "refalign-single", steps=steps, seed=seed,
                                     warped_guidance=name != "refalign-noguide", region=name == "refalign-region")
