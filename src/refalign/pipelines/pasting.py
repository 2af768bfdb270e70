"""How a refined window goes back into the image: one strategy per pipeline call, chosen from
``refinement.paste_mode`` (:func:`paste_strategy`).

* :class:`WindowPaste` — the paper's zoom-in: the refined window, upsampled to the window's size.
* :class:`ResidualPaste` — ours: the model's change over the window's classical fill, added to the same fill at full
  resolution, optionally faded in from the hole's edge (``ramp``) and with the registered reference's fine band
  added inside the hole (``detail_transfer``; :func:`~refalign.pipelines.zoom.reference_detail`).

A strategy says what it needs before the window is sampled (``needs_fill``: the window's classical fill), gathers
its own sources from the window's correspondence (``prepare``, after the guidance) and turns the model's window into
an image-scale patch (``patch``); the pipeline then blends the patch with the window's paste weights
(:func:`~refalign.pipelines.zoom.paste`), so pixels outside the dilated mask are never written. Another source of
pixels for the hole (e.g. the reference transferred at full resolution) is another strategy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refalign.pipelines.config import RefinementDefaults
from refalign.pipelines.correspondence import warped_reference
from refalign.pipelines.window_job import WindowJob
from refalign.pipelines.zoom import reference_detail, residual_patch
from refalign.windows import resize_image


@dataclass(frozen=True)
class WindowPaste:
    """The paper's zoom-in paste: the refined window itself, resized to the window's size."""

    needs_fill = False

    def prepare(self, job: WindowJob, reference: np.ndarray, fill: int) -> None:
        """Nothing beyond the model's window."""

    def patch(self, job: WindowJob, refined: np.ndarray) -> np.ndarray:
        return resize_image(refined, job.window.size)


@dataclass(frozen=True)
class ResidualPaste:
    """Residual upsampling (:func:`~refalign.pipelines.zoom.residual_patch`): ``base + up(refined − fill) [+ detail]``
    with the change faded in over ``ramp`` model pixels from the hole's edge."""

    ramp: float = 0.0
    detail_transfer: bool = False
    needs_fill = True

    def prepare(self, job: WindowJob, reference: np.ndarray, fill: int) -> None:
        """With ``detail_transfer`` and a warped guidance for the window: the registered reference's band finer
        than the model (``job.detail``, image scale)."""
        if not self.detail_transfer or job.warp is None:
            return
        full = warped_reference(job.correspondence, reference, job.frame, job.window.size, fill)
        job.detail = reference_detail(*full, job.frame) if full is not None else None

    def patch(self, job: WindowJob, refined: np.ndarray) -> np.ndarray:
        fill = job.fill
        inside = job.detail * fill.hole[..., None] if job.detail is not None else None
        return residual_patch(fill.base, refined, fill.model, inside, fill.hole, job.frame.image_px(self.ramp))


def paste_strategy(settings: RefinementDefaults) -> WindowPaste | ResidualPaste:
    """The paste strategy of ``refinement.paste_mode`` (checked when ``refalign.json`` is loaded)."""
    if settings.paste_mode == "residual":
        return ResidualPaste(ramp=float(settings.ramp), detail_transfer=bool(settings.detail_transfer))
    return WindowPaste()
