"""``refalign refine``: both stages (paper §3.5) on one image, or on a folder of cases with ``--cases``.

Every input and output path is checked before the model loads (DESIGN §5). Without ``--mask`` the artifact mask is
proposed by :func:`refalign.detect.detect_artifacts` (registration with the first reference that registers) and saved
beside the output; when nothing is found the command refuses and asks for ``--mask``. Batch mode runs unchanged under
``accelerate launch --num_processes N -m refalign.cli refine --cases DIR``, each process taking its share.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from refalign.checks import check_number, check_seed, check_steps, num_train_timesteps
from refalign.cli._common import EXIT_CASES_FAILED, DeviceOption, ModelOption, OverwriteOption, handle_errors
from refalign.errors import InputError
from refalign.files import DEFAULT_MAX_PIXELS
from refalign.pipelines.config import UNREGISTERED

#: Largest --guidance accepted (classifier-free guidance far above ~20 only saturates the window).
MAX_GUIDANCE = 100.0


def default_output(image: Path) -> Path:
    """``<image stem>.refined.png`` beside the image."""
    return image.with_name(f"{image.stem}.refined.png")


def detected_mask_path(output: Path) -> Path:
    """Where a detected mask goes: ``<output stem>.mask.png`` beside the output."""
    return output.with_name(f"{output.stem}.mask.png")


@handle_errors
def refine(
    image: Optional[Path] = typer.Argument(None, help="Image with artifacts (PNG or JPEG).", show_default=False),
    mask: Optional[Path] = typer.Option(
        None, "--mask", help="Artifact mask: white (255) = artifact, same size. Without it the mask is detected by "
        "registering IMAGE with the --reference photos in order (the first that registers) and saved as "
        "OUTPUT-STEM.mask.png; when none registers or nothing is found the command stops and asks for --mask."
    ),
    reference: Optional[List[Path]] = typer.Option(
        None, "--reference", "-r", metavar="PATH", help="Reference photo of the object; repeat it to give several "
        "photos (each artifact region is refined from the one it aligns with best)."
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (default: IMAGE.refined.png)."),
    reference_mask: Optional[Path] = typer.Option(
        None, "--reference-mask", help="Region of the reference to copy from (skips the alignment stage). The "
        "registration searches around it and the whole reference, and keeps the better model that lands in it."
    ),
    object_mask: Optional[Path] = typer.Option(
        None, "--object-mask", help="Object mask on the reference: alignment searches inside it (a transparent "
        "reference's alpha is used when not given)."
    ),
    subtoken: Optional[bool] = typer.Option(
        None, "--subtoken/--no-subtoken", help="Refine the matched region beyond the 16x16 token grid by feature "
        "matching: the registered region, else where a model not accepted still locates the artifact, else M* "
        "(default: the model's)."
    ),
    no_align: bool = typer.Option(False, "--no-align", help="Condition on the whole reference (single-stage)."),
    warped_guidance: bool = typer.Option(
        True, "--warped-guidance/--no-warped-guidance", help="Feed the registered, warped reference to a model "
        "trained with it (no effect on other models; off for ablations)."
    ),
    detect_z: float = typer.Option(
        4.0, "--detect-z", help="Detector threshold (robust z-score; lower finds more); only without --mask."
    ),
    cases: Optional[Path] = typer.Option(None, "--cases", help="Refine every case folder under DIR instead."),
    model: Optional[str] = ModelOption,
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(
        None, "--guidance", help=f"Guidance scale, 0 to {MAX_GUIDANCE:g} (default: the model's)."
    ),
    strength: Optional[float] = typer.Option(
        None, "--strength", help="1 = repaint fully; lower keeps more (default: the model's)."
    ),
    masked_content: Optional[str] = typer.Option(
        None, "--masked-content", help="With --strength < 1, start from the artifact ('original') or from a "
        "classical fill of it ('fill') (default: the model's)."
    ),
    samples: Optional[int] = typer.Option(
        None, "--samples", help="Samples per artifact, averaged (the least-squares estimate; more is "
        "smoother and slower) (default: the model's)."
    ),
    unregistered: Optional[str] = typer.Option(
        None, "--unregistered", help="A region with no reliable correspondence in the reference: 'model' (the "
        "refiner fills it), 'keep' (left as it was), 'synthesize' (rebuilt from the patches of the matching "
        "reference region, --reference-mask or the alignment's; the refiner when there is none), 'guided' "
        "(recoloured where it only changed colours, else synthesized with its own pixels as the guide: its layout "
        "kept, for a region painted around a smeared eye or nose) or 'auto' "
        "(recoloured to its surroundings where it only changed colours — where its surroundings cannot tell, when "
        "the reference never shows its colours and shows the recoloured ones — kept where it looks continuous with "
        "them, "
        "else synthesized; a blurred or warped region's own pixels guide its synthesis (a smeared eye or nose keeps "
        "its layout), and so do those of a region whose only match is a vague alignment (M* 10x its area or more); "
        "a region it synthesizes whose colours follow its surroundings' (a feature drifted to colours they lack) "
        "keeps its own strokes in the synthesis's colours; a region it would synthesize "
        "whose registration was refused only because its damaged pixels differ from it too little gets that "
        "registration's paste; it also recolours a region registered from another view where that continues its "
        "surroundings better than the reference's pixels do) (default: the model's)."
    ),
    dense_flow: Optional[bool] = typer.Option(
        None, "--dense-flow/--no-dense-flow", help="Move a registered region's pasted pixels by the dense optical "
        "flow that aligns them with the known pixels around it, where the registration explains those only in part "
        "(another viewpoint) (default: the model's)."
    ),
    paste: Optional[bool] = typer.Option(
        None, "--paste/--no-paste", help="Paste the reference's own pixels where a region registers with it "
        "(default: the model's); --no-paste gives every region --unregistered instead, for a paste that looks wrong "
        "(a region's line says what speaks against its paste), and averages no located reference into a synthesis "
        "nor pastes one."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed, 0 to 2^64-1 (same seed, same device → same output)."),
    device: Optional[str] = DeviceOption,
    save_correspondence: Optional[Path] = typer.Option(
        None, "--save-correspondence", help="Also save the matched reference region as a mask PNG."
    ),
    overwrite: bool = OverwriteOption,
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="Largest image accepted."),
) -> None:
    """Repaint the masked artifact of IMAGE from a reference photo (align, then refine). Without --mask, the
    artifact is detected from IMAGE's disagreement with the registered reference (as `refalign detect` does)."""
    _check_numbers(steps, guidance, strength, samples, seed, detect_z, max_pixels)
    if masked_content not in (None, "original", "fill"):
        raise InputError(f"--masked-content {masked_content}: use original or fill")
    if unregistered not in (None, *UNREGISTERED):
        raise InputError(f"--unregistered {unregistered}: use {', '.join(UNREGISTERED)}")
    if no_align and reference_mask is not None:
        raise InputError("--no-align and --reference-mask exclude each other; give one")
    call = dict(num_inference_steps=steps, guidance_scale=guidance, strength=strength, masked_content=masked_content,
                num_samples=samples, seed=seed, no_align=no_align,
                subtoken=subtoken, warped_guidance=warped_guidance, unregistered=unregistered, dense_flow=dense_flow,
                paste=paste)
    if cases is not None:
        _refine_batch(cases, image, mask, reference, output, reference_mask or object_mask, save_correspondence,
                      model, device, overwrite, max_pixels, call)
        return
    _refine_one(image, mask, reference, output, reference_mask, object_mask, save_correspondence, model, device,
                overwrite, max_pixels, call, detect_z=detect_z)


def _check_numbers(steps, guidance, strength, samples, seed, detect_z, max_pixels) -> None:
    """Every number finite and in range before any work (a NaN or infinite one would paint garbage, exit 0)."""
    check_number(steps, "--steps", lo=1, integer=True)
    check_number(guidance, "--guidance", lo=0.0, hi=MAX_GUIDANCE)
    check_number(strength, "--strength", lo=0.0, hi=1.0, lo_open=True)
    check_number(samples, "--samples", lo=1, integer=True)
    check_number(detect_z, "--detect-z", lo=0.0)
    check_seed(seed)
    check_number(max_pixels, "--max-pixels", lo=1, integer=True)


def _check_steps_for(model, steps) -> None:
    """``--steps`` against the model's scheduler (a DDIM schedule has at most its training timesteps), read from
    the checkpoint's JSON before the model loads."""
    from refalign.cli._common import resolve_model

    check_steps(steps, num_train_timesteps(resolve_model(model)))


def _refine_one(image, mask, reference, output, reference_mask, object_mask, save_correspondence, model, device,
                overwrite, max_pixels, call, *, detect_z: float) -> None:
    import dataclasses

    from refalign.cli._common import allow_quick_exit, check_writable, load_pipeline, run_summary, write_outputs
    from refalign.files import check_output, load_reference, load_refine_inputs

    missing = [name for name, v in (("IMAGE", image), ("--reference", reference)) if v is None]
    if missing:
        raise InputError(f"missing {', '.join(missing)}; give IMAGE --reference R [--mask M] (or --cases DIR)")
    # 1. every input and output checked before the model loads
    if len(reference) > 1 and (reference_mask is not None or object_mask is not None or call["no_align"]):
        raise InputError("--reference-mask, --object-mask and --no-align take one --reference; with several, give "
                         "transparent PNGs for object masks")
    inputs = load_refine_inputs(image, mask, reference[0], reference_mask, max_pixels=max_pixels)
    extra = [load_reference(r, max_pixels=max_pixels) for r in reference[1:]]
    protected = tuple(p for p in (image, mask, *reference, reference_mask, object_mask) if p is not None)
    output = check_output(output or default_output(image), overwrite=overwrite, protected=protected)
    mask_out = None if mask is not None else check_output(detected_mask_path(output), overwrite=overwrite,
                                                           protected=protected)
    if save_correspondence is not None:
        if call["no_align"]:
            raise InputError("--save-correspondence has nothing to save with --no-align; drop one of them")
        save_correspondence = check_output(save_correspondence, overwrite=overwrite, protected=protected)
        if save_correspondence.resolve() == output.resolve():
            raise InputError(f"{output}: given both as --output and --save-correspondence; use two names")
        if mask_out is not None and save_correspondence.resolve() == mask_out.resolve():
            raise InputError(f"{mask_out}: is where the detected mask goes; give --save-correspondence another name")
        if len(reference) > 1:  # one file per reference: NAME.ref0.png, NAME.ref1.png, ...
            for i in range(len(reference)):
                check_output(_per_reference(save_correspondence, i), overwrite=overwrite, protected=protected)
    # A user-given --reference-mask is the region to copy (alignment skipped); a transparent reference's alpha is
    # the object mask the alignment stage searches within.
    region = inputs.reference_mask if reference_mask is not None else None
    if object_mask is not None:
        from refalign.files import load_object_mask

        obj = load_object_mask(object_mask, inputs.reference.shape[:2], image_name=str(reference[0]))
    else:
        obj = None if reference_mask is not None else inputs.reference_mask
    for folder in {p.parent for p in (output, mask_out, save_correspondence) if p is not None}:
        check_writable(folder)
    alpha = read_alpha(image)
    if mask_out is not None:  # detection is cheap and can refuse: it runs before the model loads
        candidates = [(reference[0], inputs.reference, obj)]
        candidates += [(path, r.image, r.object_mask) for path, r in zip(reference[1:], extra)]
        detected = _detect_mask(image, candidates, inputs.image, detect_z, mask_out)
        inputs = dataclasses.replace(inputs, mask=detected)
        if call["unregistered"] is None:
            from refalign.detect import DETECTED_UNREGISTERED

            call = dict(call, unregistered=DETECTED_UNREGISTERED)
            typer.echo("a detected region is repaired only where it registers with the reference; the others are left "
                       "as they were (they may be clean) — --unregistered auto to repair them too")

    # 2. the model, then both stages
    _check_steps_for(model, call["num_inference_steps"])
    pipe = load_pipeline(model, device)
    start = time.perf_counter()
    if extra:
        refs = [inputs.reference] + [r.image for r in extra]
        objs = [inputs.reference_mask] + [r.object_mask for r in extra]
        out = pipe(inputs.image, inputs.mask, refs, object_mask=objs, **call)
        typer.echo("reference chosen per artifact region: " + ", ".join(str(reference[i]) for i in out.reference_indices))
    else:
        out = pipe(inputs.image, inputs.mask, inputs.reference, reference_mask=region, object_mask=obj, **call)
    seconds = time.perf_counter() - start

    # 3. the outputs, written as one set
    refined = out.image[..., 0] if single_channel(image) else out.image  # a grey file is written grey
    files = {output: with_alpha(refined, alpha, output, image)}
    if mask_out is not None:
        files[mask_out] = inputs.mask
    if save_correspondence is not None and out.correspondence is not None:
        masks = out.correspondence if extra else [out.correspondence]
        for i, m in enumerate(masks):
            if m is not None:
                files[_per_reference(save_correspondence, i) if extra else save_correspondence] = m
    write_outputs(files)
    allow_quick_exit()
    typer.echo(run_summary(out, seconds))
    typer.echo(f"wrote {', '.join(str(p) for p in files)}")


#: Output formats that keep an alpha channel.
ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff")


def read_alpha(path: Path) -> np.ndarray | None:
    """The alpha channel of an image file (``uint8 (H, W)``, EXIF orientation applied) when it has any
    transparency, else ``None``. The refinement works on RGB; this alpha is put back on the output."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        if "A" not in img.getbands() and "transparency" not in img.info:
            return None
        alpha = np.asarray(ImageOps.exif_transpose(img).convert("RGBA").getchannel("A"))
    return alpha if (alpha < 255).any() else None


def single_channel(path: Path) -> bool:
    """Whether an image file stores grey levels only (PIL modes ``1``, ``L``, ``LA``, ``I``, ``I;16``...): the
    pipeline then refines it in grey, and its output is written in grey too."""
    from PIL import Image

    with Image.open(path) as img:
        return img.getbands() in (("1",), ("L",), ("L", "A"), ("I",), ("F",))


def with_alpha(refined: np.ndarray, alpha: np.ndarray | None, output: Path, image: Path) -> np.ndarray:
    """The refined image (RGB, or grey ``(H, W)``) with the input's alpha put back (unchanged), when the output
    format can hold it; otherwise the image, and one line saying the transparency was dropped."""
    if alpha is None:
        return refined
    if output.suffix.lower() not in ALPHA_SUFFIXES:
        typer.echo(f"note: {image} has transparency and {output.suffix} cannot keep it; {output} is written "
                   "without alpha (use .png to keep it)", err=True)
        return refined
    return np.dstack([refined, alpha])


def _detect_mask(image_path, candidates, image, z, mask_out):
    """Propose the artifact mask by registering the image with the references in the order given
    (``candidates``: ``(path, pixels, object mask)``), the first that registers deciding; refuse (one line asking
    for --mask) when none registers or the one that does finds nothing."""
    from refalign.detect import DetectionError, detect_artifacts

    fix = "paint the artifact white (255) on black and pass it as --mask"
    failed = []
    for path, reference, object_mask in candidates:
        try:
            det = detect_artifacts(image, reference, reference_mask=object_mask, z=z)
        except DetectionError as exc:
            failed.append(f"{path}: {str(exc).split('; paint')[0]}")  # the CLI gives its own advice
            continue
        tried = f"after {len(failed)} that did not register; " if failed else ""
        reg = det.registration
        if not det.mask.any():
            raise InputError(f"{image_path}: no --mask given and detection with {path} found no artifact ({tried}"
                             f"registration {reg.reason}, {reg.num_inliers} inliers); lower --detect-z, or {fix}")
        share = 100.0 * det.mask.mean()
        typer.echo(f"no --mask given: detected {det.num_regions} artifact region(s) covering {share:.2f}% of the image "
                   f"by registering with {path} ({tried}{reg.num_inliers} inliers); mask saved with the result as "
                   f"{mask_out}")
        return det.mask
    which = "the reference" if len(failed) == 1 else f"any of the {len(failed)} references"
    raise InputError(f"{image_path}: no --mask given and detection failed with {which} ({'; '.join(failed)}); {fix}")


def _per_reference(path: Path, index: int) -> Path:
    return path.with_name(f"{path.stem}.ref{index}{path.suffix}")


def _refine_batch(cases, image, mask, reference, output, reference_mask, save_correspondence, model, device,
                  overwrite, max_pixels, call) -> None:
    from accelerate import PartialState

    from refalign.cli._common import load_pipeline
    from refalign.eval.batch import ERROR, find_cases, refine_cases

    extra = [n for n, v in (("IMAGE", image), ("--mask", mask), ("--reference", reference), ("--output", output),
                            ("--reference-mask/--object-mask", reference_mask), ("--save-correspondence", save_correspondence))
             if v is not None]
    if extra:
        raise InputError(f"--cases reads each case folder's own files; drop {', '.join(extra)}")
    find_cases(cases)  # a bad folder fails before the model loads
    _check_steps_for(model, call["num_inference_steps"])
    state = PartialState(cpu=_wants_cpu(device))
    pipe = load_pipeline(model, device or str(state.device))
    pipe.set_progress_bar_config(disable=True)
    report = refine_cases(pipe, cases, overwrite=overwrite, max_pixels=max_pixels, state=state, **call)
    typer.echo(
        f"{len(report.done)} refined, {len(report.skipped)} already finished, {len(report.failed)} failed"
        + (f" (process {state.process_index + 1}/{state.num_processes})" if state.num_processes > 1 else "")
    )
    if report.failed:
        typer.echo(f"failed cases have a {ERROR} in their folder: "
                   + ", ".join(p.name for p, _ in report.failed), err=True)
        raise typer.Exit(EXIT_CASES_FAILED)


def _wants_cpu(device) -> bool:
    """Run the processes on CPU when asked to or when there is no accelerator — so that several processes started
    by torchrun (``accelerate launch --multi_gpu``, ``torchrun --nproc_per_node N``) on a CPU-only machine form a
    gloo group and split the cases instead of each doing all of them."""
    import os

    import torch

    if device is not None:
        return str(device).startswith("cpu")
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    mps = getattr(torch.backends, "mps", None)
    return not torch.cuda.is_available() and not (mps is not None and mps.is_available())
