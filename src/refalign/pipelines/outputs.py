"""What :class:`~refalign.pipelines.pipeline_refine_by_align.RefineByAlignPipeline` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refalign.windows import Window


@dataclass
class RefineOutput:
    """Result of both stages (paper §3.5).

    Attributes:
        image: the refined image, ``(H, W, 3) uint8`` (a ``PIL.Image`` with ``output_type="pil"``); outside the
            dilated artifact mask it equals the input bit for bit.
        correspondence: ``(H_ref, W_ref)`` bool — the region of the reference the refinement was conditioned on
            (the union of ``M*`` over the windows, or the user's ``reference_mask``); ``None`` with ``no_align``
            (the whole reference was used). With several references: a list, one entry per reference
            (``None`` for a reference no window chose).
        alignment: one ``AlignmentOutput`` per window (of the chosen reference) when the alignment stage ran,
            else ``None``.
        windows: the zoom-in windows that were refined, in image coordinates.
        reference_indices: for each window, which reference it was refined from (always 0 with one reference).
        guidance: for a model with warped-reference guidance, what each window got: ``"warp (…)"`` with how the
            homography was found, ``"none (…)"`` with why not, or ``"off"``; empty for other models.
        sources: for each window, where its hole's pixels came from: ``"reference"`` (the registered reference's own
            pixels; under ``unregistered="auto"`` also those through a model refused for its damage ratio alone,
            its confidence then 0), ``"reference+model"`` (those, harmonized by the refiner), ``"synthesis"`` (no
            geometric model fits: synthesised from the matching reference region, ``unregistered="synthesize"``),
            ``"synthesis+model"`` (that, harmonized), ``"model"`` (the refiner), ``"recoloured"``
            (``unregistered="auto"``: the artifact's own pixels recoloured to their surroundings,
            :func:`refalign.transfer.damage.edge_colours` — where no correspondence is reliable, or where a paste
            across views continues the surroundings less well) or ``"kept"`` (no reliable correspondence: the input left
            as it was).
        confidence: for each window, the confidence of its registration in [0, 1] (0 when none was accepted).
        doubts: for each window, what speaks against its paste — ``"close call"`` (a damage ratio under
            :data:`~refalign.transfer.register.CLEAR_DAMAGE_RATIO`), ``"breaks the edge"`` (a paste across views that
            continues the surroundings less well than the damaged pixels do,
            :func:`refalign.transfer.damage.paste_edge_steps`); empty for a window with no doubt or no paste. The
            way out is ``paste=False`` (``unregistered="keep"`` for a paste whose confidence is 0).
        reports: for each window, one line for the user: where it is, how it was repaired and why.
    """

    image: Any
    correspondence: np.ndarray | None
    alignment: list | None
    windows: list[Window] = field(default_factory=list)
    reference_indices: list[int] = field(default_factory=list)
    guidance: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    doubts: list[tuple[str, ...]] = field(default_factory=list)
