"""``refalign align`` and ``refalign align-search``: the alignment stage (paper Algorithm 1) and its step × layer
search.

Both check every input and output path before the model loads (DESIGN §5); the work is done by
:func:`refalign.pipelines.alignment.align` and :func:`refalign.eval.alignment_search.search_alignment`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from refalign.checks import check_seed, check_steps, num_train_timesteps
from refalign.cli._common import DeviceOption, ModelOption, OverwriteOption, handle_errors
from refalign.errors import InputError, OutputError
from refalign.files import DEFAULT_MAX_PIXELS

SEARCH_FILES = ("gamma.csv", "gamma.png", "best.json")


def default_output(image: Path) -> Path:
    """``<image stem>.correspondence.png`` beside the image."""
    return image.with_name(f"{image.stem}.correspondence.png")


@handle_errors
def align(
    image: Path = typer.Argument(..., help="Image with artifacts (PNG or JPEG).", show_default=False),
    mask: Path = typer.Option(..., "--mask", help="Artifact mask: white (255) = artifact, same size as IMAGE."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Reference photo of the object."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Correspondence mask M* (255 = region) (default: IMAGE.correspondence.png)."
    ),
    object_mask: Optional[Path] = typer.Option(
        None, "--object-mask", help="Object mask on the reference; M* stays inside it (a transparent PNG's alpha "
        "is used when not given)."
    ),
    overlay: Optional[Path] = typer.Option(
        None, "--overlay", help="Also save a labelled picture of M* on the reference (with its confidence)."
    ),
    step: Optional[int] = typer.Option(None, "--step", min=0, help="Schedule index to read (default: the model's)."),
    layer: Optional[int] = typer.Option(None, "--layer", min=0, help="Cross-attention layer (default: the model's)."),
    subtoken: Optional[bool] = typer.Option(
        None, "--subtoken/--no-subtoken", help="Refine M* beyond the token grid by feature matching: the registered "
        "region, else where a model not accepted still locates the artifact, else M* (default: the model's)."
    ),
    model: Optional[str] = ModelOption,
    device: Optional[str] = DeviceOption,
    seed: Optional[int] = typer.Option(None, "--seed", help="Noise seed (default: the model's alignment seed)."),
    overwrite: bool = OverwriteOption,
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Largest image accepted."),
) -> None:
    """Find the region of the reference that matches the masked artifact and save it as a mask."""
    from refalign.cli._common import allow_quick_exit, check_writable, load_pipeline, write_outputs
    from refalign.files import check_output, load_refine_inputs

    # 1. every input and output checked before the model loads
    check_seed(seed)
    inputs = load_refine_inputs(image, mask, reference, object_mask, max_pixels=max_pixels)
    protected = tuple(p for p in (image, mask, reference, object_mask) if p is not None)
    output = check_output(output or default_output(image), overwrite=overwrite, protected=protected)
    if overlay is not None:
        overlay = check_output(overlay, overwrite=overwrite, protected=protected)
        if overlay.resolve() == output.resolve():
            raise InputError(f"{output}: given both as --output and --overlay; use two names")
    for folder in {p.parent for p in (output, overlay) if p is not None}:
        check_writable(folder)

    # 2. the model, one U-Net pass
    import torch

    pipe = load_pipeline(model, device)
    generator = None if seed is None else torch.Generator("cpu").manual_seed(int(seed))
    out = pipe.align(inputs.image, inputs.mask, inputs.reference, step=step, layer=layer,
                     object_mask=inputs.reference_mask, generator=generator, subtoken=subtoken)
    from refalign.pipelines.correspondence import VAGUE_AREA_RATIO
    from refalign.pipelines.subtoken import MODEL_PATHS
    from refalign.windows import area_ratio

    ratio = area_ratio(out.mask, inputs.mask)
    files = {output: out.mask}
    if overlay is not None:
        from refalign.demo.visuals import correspondence_picture

        # the confidence of what found the region: the attention's for M*, the registration's best model's for a
        # region it registered or located
        path = {"warp": "registered", "located": "located, not registered"}.get(out.path, out.path)
        how = f"{path}, {ratio:.1f}x the artifact's area" + (", vague" if ratio >= VAGUE_AREA_RATIO else "")
        by_model = out.path in MODEL_PATHS
        confidence = out.correspondence.fit.best.score.confidence if by_model else out.score
        files[overlay] = correspondence_picture(inputs.reference, out.mask, confidence, how)
    write_outputs(files)  # one set: the correspondence and its picture, or neither
    allow_quick_exit()
    path = f", {out.path}: {out.path_reason}" if out.path_reason else ""
    typer.echo(f"wrote {', '.join(map(str, files))} (step {out.step}, layer {out.layer}, confidence "
               f"{out.score:.3f}{path})")
    if not out.mask.any():
        typer.echo("warning: the correspondence map was flat; the mask is empty", err=True)
    elif ratio >= VAGUE_AREA_RATIO:
        typer.echo(f"warning: M* covers {ratio:.0f}x the artifact's area (at the reference's scale): a vague match, "
                   "at best a small part of it is the artifact's; paint the matching region and pass it to refine "
                   "as --reference-mask", err=True)


@handle_errors
def align_search(
    cases: Path = typer.Argument(..., help="Folder of case folders with correspondence.png ground truth.",
                                 show_default=False),
    model: Optional[str] = ModelOption,
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Folder for gamma.csv, gamma.png, best.json (default: CASES.align-search)."
    ),
    steps: Optional[int] = typer.Option(
        None, "--steps", min=1, help="Schedule length T to search (default: the model's alignment schedule)."
    ),
    write_defaults: bool = typer.Option(
        False, "--write-defaults", help="Store the best step and layer in the model's refalign.json."
    ),
    device: Optional[str] = DeviceOption,
    seed: Optional[int] = typer.Option(None, "--seed", help="Noise seed (default: the model's alignment seed)."),
    overwrite: bool = OverwriteOption,
) -> None:
    """Grid-search the diffusion step and layer whose cross-attention aligns best (mIoU) on a set of cases."""
    from refalign.cli._common import load_pipeline, resolve_model
    from refalign.eval.cases import CORRESPONDENCE, list_cases
    from refalign.eval.alignment_search import search_alignment

    # 1. inputs and outputs checked before the model loads
    check_seed(seed), check_steps(steps, num_train_timesteps(resolve_model(model)))
    folders = list_cases(cases)
    if not any((f / CORRESPONDENCE).is_file() for f in folders):
        raise InputError(f"{cases}: no case has a {CORRESPONDENCE} (the ground truth the search scores against)")
    output = output or cases.with_name(f"{cases.name}.align-search")
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: is a file; give a folder for --output")
    if not output.parent.exists():
        raise OutputError(f"{output.parent}: output folder does not exist; create it first")
    existing = [f for f in SEARCH_FILES if (output / f).exists()]
    if existing and not overwrite:
        raise OutputError(f"{output}: already holds {', '.join(existing)}; choose another --output or pass --overwrite")
    model_path = resolve_model(model)
    if write_defaults and not (Path(model_path) / "refalign.json").is_file():
        raise InputError(f"--write-defaults: {model_path} is not a local checkpoint folder with refalign.json")

    # 2. the model: T U-Net passes per case, each reading every layer
    pipe = load_pipeline(model_path, device)
    result = search_alignment(pipe, cases, num_inference_steps=steps, output_dir=output, seed=seed)
    best_step, best_layer, score = result.best
    typer.echo(
        f"best: step {best_step} of {result.num_inference_steps} (t={result.timesteps[best_step]}), "
        f"layer {best_layer}, mIoU {score:.4f} over {len(result.case_names)} case(s)"
        + (f"; skipped {len(result.skipped)} without {CORRESPONDENCE}" if result.skipped else "")
    )
    typer.echo(f"wrote {', '.join(str(output / f) for f in SEARCH_FILES)}")
    if write_defaults:
        from refalign.eval.alignment_search import store_alignment_defaults

        typer.echo(f"updated {store_alignment_defaults(model_path, result)}")
