"""``refalign detect``: propose the artifact mask by registering the image with the reference."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from refalign.cli._common import OverwriteOption, handle_errors

logger = logging.getLogger(__name__)


@handle_errors
def detect(
    image: Path = typer.Argument(..., help="Image with artifacts."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Photo of the real object."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the proposed mask (255 = artifact)."),
    object_mask: Optional[Path] = typer.Option(None, "--object-mask", help="Object mask of the reference."),
    score_map: Optional[Path] = typer.Option(None, "--score-map", help="Also write the disagreement score as an image."),
    z: float = typer.Option(4.0, help="Robust z-score threshold; lower finds more."),
    max_regions: int = typer.Option(3, help="Keep at most this many regions."),
    overwrite: bool = OverwriteOption,
) -> None:
    """Propose the artifact mask: register the image with the reference (SIFT + RANSAC homography), normalise
    colour, and flag regions that disagree. Works when image and reference show the same, mostly planar view."""
    import numpy as np

    from refalign.checks import check_number
    from refalign.detect import detect_artifacts

    check_number(z, "--z", lo=0.0), check_number(max_regions, "--max-regions", lo=1, integer=True)
    from refalign.files import check_output, load_image, load_object_mask, load_reference, save_image

    img = load_image(image)
    ref = load_reference(reference)
    ref_mask = load_object_mask(object_mask, ref.image.shape[:2], image_name=str(reference)) if object_mask else ref.object_mask
    protected = tuple(p for p in (image, reference, object_mask) if p)
    check_output(output, overwrite=overwrite, protected=protected)
    if score_map:
        check_output(score_map, overwrite=overwrite, protected=protected)
    det = detect_artifacts(img, ref.image, reference_mask=ref_mask, z=z, max_regions=max_regions)
    if not det.mask.any():
        typer.echo(f"no artifact found (registration: {det.registration.num_inliers} inliers); nothing written", err=True)
        raise typer.Exit(1)
    save_image(det.mask, output)
    if score_map:
        save_image((np.clip(det.score / 10.0, 0, 1) * 255).astype(np.uint8), score_map)
    share = 100.0 * det.mask.mean()
    typer.echo(f"{output}: {det.num_regions} region(s), {share:.2f}% of the image "
               f"(registered with {det.registration.num_inliers} inliers)")
