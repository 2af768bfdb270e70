"""``refalign example``: refine a built-in example with the shipped model, write labelled pictures of every stage
and print the scores over the artifact beside OpenCV Telea and doing nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from refalign.cli._common import (
    DeviceOption,
    ModelOption,
    OverwriteOption,
    check_output_folder,
    handle_errors,
    run_summary,
)
from refalign.checks import check_seed, check_steps, num_train_timesteps
from refalign.errors import InputError

OUTPUT_FILES = ("image.png", "mask.png", "reference.png", "target.png", "refined.png", "correspondence.png",
                "overlay.png", "token_map.png", "before_after.png", "zoom.png")


@handle_errors
def example(
    output_dir: Path = typer.Option(Path("refalign-example"), "--output-dir", "-o", help="Folder to write into."),
    kind: str = typer.Option(
        "photo", "--kind", help="photo: two real photos of a backpack, the print of its label damaged on one; "
        "procedural: a generated object seen twice."
    ),
    model: Optional[str] = ModelOption,
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampling steps (default: the model's)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    paste: Optional[bool] = typer.Option(
        None, "--paste/--no-paste", help="As refine's: --no-paste refuses the reference's registered pixels, to see "
        "what the region gets without them (default: the model's)."
    ),
    device: Optional[str] = DeviceOption,
    overwrite: bool = OverwriteOption,
) -> None:
    """Refine a built-in example (by default a real photo pair: a backpack's label with its print smeared, and
    another photo of the backpack as the reference) and write the inputs, the refined image, labelled pictures of
    the correspondence used and of the token attention map, and a labelled before/after panel."""
    from refalign.cli._common import allow_quick_exit, load_pipeline, resolve_model, write_outputs
    from refalign.examples import EXAMPLE_KINDS, load_example  # deferred: OpenCV, ~0.1 s of every command's start

    # 1. the output folder and the example, checked and built before the model loads
    if kind not in EXAMPLE_KINDS:
        raise InputError(f"--kind {kind}: use {' or '.join(EXAMPLE_KINDS)}")
    check_output_folder(output_dir, OUTPUT_FILES, overwrite=overwrite)
    check_seed(seed)
    check_steps(steps, num_train_timesteps(resolve_model(model)))
    ex = load_example(kind)

    # 2. the model, both stages
    pipe = load_pipeline(model, device)
    start = time.perf_counter()
    out = pipe(ex.image, ex.mask, ex.reference, object_mask=ex.reference_mask, num_inference_steps=steps, seed=seed,
               paste=paste)
    seconds = time.perf_counter() - start

    # 3. scores over the artifact, pictures, all files written as one set
    scores = example_scores(ex, out.image)
    files = {output_dir / name: arr for name, arr in example_pictures(ex, out, scores).items()}
    write_outputs(files)
    allow_quick_exit()
    typer.echo(f"example ({kind}): {ex.description}")
    typer.echo(run_summary(out, seconds))
    typer.echo("over the artifact (the mask's bounding box grown by 8 px), against the undamaged image "
               "(PSNR rewards blur; GMSD and the detail ratio do not):")
    for name, (p, s, g, d) in scores.items():
        typer.echo(f"  {name:<14} PSNR {p:6.2f} dB   SSIM {s:.3f}   GMSD {g:.3f}   detail {d:.2f}")
    typer.echo(f"wrote {len(files)} files to {output_dir}/")


def example_scores(ex, refined) -> dict[str, tuple[float, float, float, float]]:
    """Over the artifact, against the example's clean target, for doing nothing, OpenCV Telea inpainting and the
    refinement: ``(PSNR, SSIM, GMSD, detail)`` — PSNR/SSIM and GMSD over the mask's box
    (:func:`refalign.eval.metrics.box_psnr_ssim`, :func:`~refalign.eval.metrics.box_gmsd`; lower GMSD = the truth's
    edges) and the detail ratio in the mask (1 = the truth's texture, below 1 = blurred)."""
    from refalign.eval.metrics import box_gmsd, box_psnr_ssim, detail_ratio
    from refalign.fill import telea_fill

    results = {"doing nothing": ex.image, "OpenCV Telea": telea_fill(ex.image, ex.mask), "refalign": refined}
    return {name: (*box_psnr_ssim(x, ex.target, ex.mask), box_gmsd(x, ex.target, ex.mask),
                   detail_ratio(x, ex.target, ex.mask) or 0.0)
            for name, x in results.items()}


def example_pictures(ex, out, scores) -> dict[str, object]:
    """Every file of the example by name: the raw inputs and result, and labelled pictures (the correspondence the
    refinement used with its confidence, the token attention map on its own, the before/after panel)."""
    from refalign.demo.visuals import (
        artifact_zoom,
        combine_soft_maps,
        correspondence_picture,
        labelled_before_after,
        token_map_picture,
    )

    windows = out.alignment or []
    registered = [c for c, src in zip(out.confidence, out.sources) if src.startswith("reference")]
    if registered:  # the registration's confidence: the correspondence the repair actually used
        confidence, how = min(registered), "registered, its own pixels copied"
    else:
        confidence = min((a.score for a in windows), default=None)
        how = ", ".join(sorted({a.path for a in windows})) + "; alignment score"
    soft = combine_soft_maps(a.soft_on_reference() for a in windows)
    before, after = scores["doing nothing"][0], scores["refalign"][0]
    files = {
        "image.png": ex.image, "mask.png": ex.mask, "reference.png": ex.reference, "target.png": ex.target,
        "refined.png": out.image,
        "overlay.png": correspondence_picture(ex.reference, out.correspondence, confidence, how),
        "token_map.png": token_map_picture(ex.reference, soft),
        "before_after.png": labelled_before_after(
            ex.image, out.image, ex.mask,
            (f"input: artifact outlined, PSNR {before:.1f} dB", f"refined: PSNR {after:.1f} dB")),
        "zoom.png": artifact_zoom(
            [ex.image, out.image, ex.target],
            [f"input ({before:.1f} dB)", f"refined ({after:.1f} dB)", "undamaged"], ex.mask),
    }
    if out.correspondence is not None:
        files["correspondence.png"] = out.correspondence
    return files
