"""The correspondence of one window with one reference: where the artifact lives in the reference (DESIGN §6).

It is computed ONCE per window × reference (:func:`find_correspondence`) and everything downstream reads it: the
alignment stage's ``M*`` and path (:class:`~refalign.pipelines.alignment.AlignmentOutput`), the reference tokens
(``I_r ⊗ region``), the warped-reference guidance, the detail transfer, and what
:class:`~refalign.pipelines.outputs.RefineOutput` reports. A better registration plugs in here, and only here.

Sources of the prior region on the reference (``path`` before registration):

* ``"cross-attention"`` — ``M*`` from the alignment stage (paper Algorithm 1);
* ``"user"`` — the user's ``reference_mask``;
* ``"whole"`` — no alignment (the paper's single-stage ablation): the whole reference.

One registration (:func:`~refalign.pipelines.subtoken.match_artifact`: the local registration of
:mod:`refalign.transfer`, scored on the known pixels around the hole) is run when sub-token alignment, warped
guidance or the transfer of the reference's own pixels needs it. Sub-token alignment replaces a cross-attention
``M*`` by the registered artifact (``path`` becomes ``"warp"``) whenever a model is accepted — its agreement with
``M*`` is reported; the warped guidance and the transfer use the same accepted model (``matrix``). A registration
that is not accepted may still locate the artifact (``path`` ``"located"``,
:func:`~refalign.pipelines.subtoken.located_region`): the region becomes the artifact carried through its best model,
for what draws on the region (a synthesis, the overlay, the report), while ``matrix`` stays ``None``: nothing is
pasted through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refalign.fill import GREY
from refalign.guidance import warp_to_window
from refalign.mask_ops import dilate
from refalign.pipelines.subtoken import MODEL_PATHS, decide, match_artifact
from refalign.registration import local_area_scale
from refalign.transfer.engine import ReferenceView
from refalign.transfer.register import LocalRegistration, ring_width
from refalign.windows import ModelFrame, area_ratio

#: Margin of the guidance's valid region around the registered artifact, in model pixels beyond the inpainting
#: dilation: the valid region covers everything that is repainted.
VALID_MARGIN = 2.0
#: A region of the reference this many times the artifact's area (:func:`~refalign.windows.area_ratio`) or more is a
#: vague match: its IoU with the artifact's true match is at most the inverse. The alignment's score cannot say so — the
#: attention mass inside a large region is large whatever its aim. On the development cases (cv15, cv17 and the
#: multiview cases of dc17) a cross-attention ``M*`` spans a median 2.8 times the artifact (90 % under 9.0, at most
#: 20.5) on crossview cases and 3.4 (under 12.9, at most 47) on multiview ones; on the 56 crossview cases its mean IoU
#: with the true match is 0.12-0.14 whatever its size, while its score rises with it (0.47 under 3 times, 0.79 from 3 to
#: 10, 0.85 from 10).
VAGUE_AREA_RATIO = 10.0


@dataclass
class Correspondence:
    """Where one window's artifact lives in one reference.

    Attributes:
        region: ``(H_ref, W_ref)`` bool — the region of the reference the refinement is conditioned on
            (``I_r ⊗ region``); ``None`` for the whole reference (no alignment, or alignment found nothing).
        path: ``"warp"`` (sub-token alignment registered the artifact pixel-accurately), ``"located"`` (the
            artifact where a registration that was not accepted puts it), ``"cross-attention"`` (token-level
            ``M*``), ``"user"`` (the user's reference mask) or ``"whole"`` (no alignment).
        reason: why this path (and what the registration found, when it ran).
        homography: image → reference 3×3 of the registration, when one was fitted (also an unreliable one).
        valid_region: ``(H_ref, W_ref)`` bool — the reference pixels the warped guidance may use (the registered
            artifact, grown to cover what is repainted); ``None`` when there is no usable registration for the
            window (or no window was given).
        num_inliers: RANSAC inliers of the registration (0 when none ran).
        m_star: the token-level ``M*`` of the alignment stage (``None`` on the user and whole paths).
        registration: what the one registration found (``"homography from N inliers"``) or why it is unusable;
            empty when none ran.
        fit: the local registration itself (candidates, scores, the colour fit), ``None`` when none ran.
        matrix: the accepted model image → reference (``None`` when no model was accepted): what the guidance,
            the detail and the transfer of the reference's pixels use.
    """

    region: np.ndarray | None
    path: str
    reason: str = ""
    homography: np.ndarray | None = None
    valid_region: np.ndarray | None = None
    num_inliers: int = 0
    m_star: np.ndarray | None = None
    registration: str = ""
    fit: LocalRegistration | None = None
    matrix: np.ndarray | None = None

    @property
    def confidence(self) -> float:
        """The registration's confidence in [0, 1] (0 when none was accepted or none ran)."""
        return self.fit.confidence if self.fit is not None and self.matrix is not None else 0.0

    @property
    def mask(self) -> np.ndarray | None:
        """What the alignment stage reports as ``M*``: the registered (or located) artifact on the warp (located)
        path, else ``M*``."""
        return self.region if self.path in MODEL_PATHS else self.m_star

    @property
    def synthesis_region(self) -> np.ndarray | None:
        """The region a synthesis draws its patches from: :attr:`region`, and on the located path its surroundings
        too — grown by its ring width (:func:`~refalign.transfer.register.ring_width`). A located region is the
        artifact's own size, a few patches wide; synthesised from it alone, 32 + 55 crossview windows (cv15 and the
        seed-2 set) scored 24.18 and 23.02 dB box PSNR against 24.31 and 23.14 from ``M*``, grown 24.27 and 23.18."""
        if self.region is None or self.path != "located":
            return self.region
        return dilate(self.region, int(round(ring_width(self.region))))

    def m_star_ratio(self, artifact: np.ndarray) -> float | None:
        """How many times the ``artifact``'s area (image-sized bool) the region covers when it is the alignment's
        ``M*`` (:func:`~refalign.windows.area_ratio`; ``None`` on every other path): from
        :data:`VAGUE_AREA_RATIO` it is a vague match."""
        if self.path != "cross-attention" or self.region is None:
            return None
        return area_ratio(self.region, artifact)

    @property
    def guidance(self) -> str:
        """What the warped guidance gets from this correspondence: ``"warp (…)"`` or ``"none (…)"``."""
        return f"warp ({self.registration})" if self.valid_region is not None else f"none ({self.registration})"


def find_correspondence(
    image: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray,
    prior: np.ndarray | None,
    *,
    path: str,
    object_mask: np.ndarray | None = None,
    subtoken: bool = False,
    register: bool = False,
    frame: ModelFrame | None = None,
    dilation: float = 0.0,
    view: ReferenceView | None = None,
) -> Correspondence:
    """The correspondence of the artifact ``mask`` (``(H, W)`` bool, image frame) with ``reference``.

    Args:
        prior: the region the correspondence starts from (``M*``, the user's mask, or ``None`` for the whole
            reference), ``path`` names it (``"cross-attention"``, ``"user"``, ``"whole"``).
        object_mask: the object on the reference; registration only takes features on it.
        subtoken: sub-token alignment — a registration may replace a cross-attention ``M*`` (module docs).
        register: register even when sub-token alignment does not ask for it (for warped guidance).
        frame, dilation: the refinement window and its inpainting dilation (model pixels): with both, a usable
            registration gets the ``valid_region`` the guidance may use.
        view: the reference prepared for registration (its features over the search area, computed once per
            reference and call); prepared here when ``None``.
    """
    has_prior = prior is not None and bool(prior.any())
    out = Correspondence(prior if has_prior else None, path, m_star=prior if path == "cross-attention" else None)
    refine = subtoken and path == "cross-attention" and has_prior
    if subtoken and path == "cross-attention" and not has_prior:
        out.reason = "no token-level region to refine"
    if not (refine or register):
        return out
    match = match_artifact(image, mask, reference, prior if has_prior else None, object_mask=object_mask, view=view)
    out.homography, out.num_inliers = match.registration.homography, match.registration.num_inliers
    out.registration, out.fit = match.reason, match.registration
    out.matrix = match.registration.matrix if match.usable else None
    if refine:
        sub = decide(match, prior)
        out.reason = sub.reason
        if sub.path in MODEL_PATHS:
            out.region, out.path = sub.mask, sub.path
    elif has_prior and path == "cross-attention":
        out.reason = "sub-token alignment off"
    if match.usable and frame is not None:
        margin = frame.reference_radius(dilation + VALID_MARGIN, local_area_scale(out.matrix, frame.centre()))
        out.valid_region = dilate(match.warped, margin)
    return out


def warped_reference(
    correspondence: Correspondence, reference: np.ndarray, frame: ModelFrame, size: int, fill: int = GREY
) -> tuple[np.ndarray, np.ndarray] | None:
    """The reference warped onto ``frame``'s window at ``size`` pixels, restricted to the correspondence's valid
    region: ``(pixels, valid)``, or ``None`` when there is no usable registration or nothing of the valid region
    lands in the window. ``fill``: the grey where no reference pixel lands (the model's ``reference_fill``)."""
    if correspondence.valid_region is None:
        return None
    matrix = correspondence.matrix @ frame.to_source(size)
    pixels, valid = warp_to_window(reference, correspondence.valid_region, matrix, size, fill)
    return (pixels, valid) if valid.any() else None
