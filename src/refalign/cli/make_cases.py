"""``refalign make-cases``: benchmark cases from real photos (library: :mod:`refalign.eval.make_cases`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from refalign.cli._common import OverwriteOption, handle_errors


@handle_errors
def make_cases(
    photos: Path = typer.Argument(..., help="Folder of images, or of <object>/<photo>.jpg (several views each)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the case folders into."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed and photos give the same cases."),
    per_photo: int = typer.Option(1, "--per-photo", help="Cases made from each photo."),
    kinds: Optional[List[str]] = typer.Option(None, "--kinds", help=(
        "Artifact kinds (repeat the option): garbled, shuffled, lost_detail, colour_drift, hallucinated (default: "
        "these five); smeared (a mushy eye or nose: colours and rough layout kept, structure gone).")),
    reference_kinds: Optional[List[str]] = typer.Option(None, "--reference-kinds", help="warp, multiview, crossview (default: warp and multiview; crossview puts the artifact on content the other photo shows)."),
    size: int = typer.Option(512, "--size", help="Longer side of the cases, in pixels."),
    on_text: bool = typer.Option(False, "--on-text", help="Put the artifact over text the OCR reads in the photo "
                                 "(text/logo cases; needs the `ocr` extra or tesseract; photos without text give none)."),
    on_parts: bool = typer.Option(False, "--on-parts", help="Put the artifact over a distinct part of the object (an "
                                  "eye, a nose, a logo), its mask hugging it as a user paints it; photos with none "
                                  "give no case."),
    overwrite: bool = OverwriteOption,
) -> None:
    """Build benchmark cases with synthetic artifacts (garbled print, shuffled detail, lost detail, colour drift,
    hallucinated patches) on the detailed parts of real photos, each with a warped or multi-view reference, or a
    crossview one (another photo that shows the artifact's content)."""
    from refalign.eval.make_cases import MakeCasesConfig, make_cases as build

    cfg = MakeCasesConfig(seed=seed, per_photo=per_photo, size=size, overwrite=overwrite, on_text=on_text,
                           on_parts=on_parts)
    if kinds:
        cfg.kinds = tuple(k for arg in kinds for k in arg.split(",") if k)
    if reference_kinds:
        cfg.reference_kinds = tuple(k for arg in reference_kinds for k in arg.split(",") if k)
    written = build(photos, out, cfg)
    typer.echo(f"wrote {len(written)} cases to {out}")
