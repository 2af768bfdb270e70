"""``refalign example``: refine the built-in example with the shipped model and write pictures of every stage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from refalign.cli._common import DeviceOption, ModelOption, OverwriteOption, handle_errors

logger = logging.getLogger(__name__)

OUTPUT_FILES = ("image.png", "mask.png", "reference.png", "target.png", "refined.png", "correspondence.png",
                "overlay.png", "before_after.png")


@handle_errors
def example(
    output_dir: Path = typer.Option(Path("refalign-example"), "--output-dir", "-o", help="Folder to write into."),
    model: Optional[str] = ModelOption,
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the model's)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    device: Optional[str] = DeviceOption,
    overwrite: bool = OverwriteOption,
) -> None:
    """Refine a generated example (a procedural object with a shuffled-detail artifact, and a second view of it as
    the reference) and write the inputs, the refined image, the correspondence overlay and a before/after panel."""
    import time

    from refalign.errors import OutputError
    from refalign.examples import make_example
    from refalign.files import save_image
    from refalign.cli._common import load_pipeline

    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"{output_dir}: is a file; give a folder for --output-dir")
    clash = [f for f in OUTPUT_FILES if (output_dir / f).exists()]
    if clash and not overwrite:
        raise OutputError(f"{output_dir / clash[0]}: already exists; choose another --output-dir or pass --overwrite")
    if not output_dir.parent.exists():
        raise OutputError(f"{output_dir.parent}: folder does not exist; create it first")

    pipe = load_pipeline(model, device)
    ex = make_example()
    start = time.perf_counter()
    out = pipe(ex.image, ex.mask, ex.reference, object_mask=ex.reference_mask, num_inference_steps=steps, seed=seed)
    seconds = time.perf_counter() - start

    from refalign.demo.visuals import before_after, combine_soft_maps, demo_overlay
    from refalign.eval.metrics import window_psnr_ssim
    from refalign.fill import telea_fill

    soft = combine_soft_maps(a.soft_on_reference() for a in (out.alignment or []))
    output_dir.mkdir(exist_ok=True)
    files = {
        "image.png": ex.image, "mask.png": ex.mask, "reference.png": ex.reference, "target.png": ex.target,
        "refined.png": out.image,
        "overlay.png": demo_overlay(ex.reference, soft, out.correspondence),
        "before_after.png": before_after(ex.image, out.image, ex.mask),
    }
    if out.correspondence is not None:
        files["correspondence.png"] = out.correspondence
    for name, arr in files.items():
        save_image(arr, output_dir / name)
    before = window_psnr_ssim(ex.image, ex.target, ex.mask)
    after = window_psnr_ssim(out.image, ex.target, ex.mask)
    typer.echo(f"refined 1 artifact region in {seconds:.1f} s; wrote {len(files)} files to {output_dir}/")
    classical = window_psnr_ssim(telea_fill(ex.image, ex.mask), ex.target, ex.mask)
    typer.echo(f"artifact window vs. clean target: PSNR {before[0]:.2f} -> {after[0]:.2f} dB, "
               f"SSIM {before[1]:.3f} -> {after[1]:.3f} (OpenCV Telea inpainting: {classical[0]:.2f} dB, "
               f"{classical[1]:.3f})")
