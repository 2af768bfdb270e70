"""One window's job in the refine path, and the settings of one pipeline call.

:class:`WindowJob` collects what the pipeline works out for one zoom-in window, in the order it does so: the window
and its model frame, the chosen reference and its :class:`~refalign.pipelines.correspondence.Correspondence`, the
reference tokens, what the model sees, the classical fill, the warped guidance and the detail band. The paste
strategy (:mod:`refalign.pipelines.pasting`) reads it to turn the model's window back into image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from refalign.pipelines.alignment import AlignmentOutput
from refalign.pipelines.correspondence import VAGUE_AREA_RATIO, Correspondence
from refalign.pipelines.subtoken import LOCATED_MIX_CORRELATION
from refalign.pipelines.zoom import ClassicalFill, ZoomWindow
from refalign.transfer.damage import EdgeColours, EdgeSteps
from refalign.transfer.flow import FlowCorrection
from refalign.transfer.register import CLEAR_DAMAGE_RATIO, MIN_DAMAGE_RATIO
from refalign.transfer.synthesis import Synthesis
from refalign.windows import ModelFrame, Window


#: The hint that keeps a window as it was.
KEEP_HINT = "--unregistered keep to leave it as it was"
#: Said where ``auto`` chose the plain synthesis over the guided one (its decision in :attr:`WindowJob.choice`): a
#: feature painted around (an eye, a nose) comes back as its surroundings' texture there, and ``"guided"`` keeps its
#: layout (docs/results.md, "Smeared parts").
GUIDED_HINT = ("--unregistered guided to keep its layout, if it was a feature (an eye, a nose) now rebuilt as its "
               "surroundings")
#: What can speak against an accepted paste (:attr:`WindowJob.doubts`): a damage ratio under
#: :data:`~refalign.transfer.register.CLEAR_DAMAGE_RATIO`, and a paste across views that continues the surroundings
#: less well than the damaged pixels do (:attr:`~refalign.transfer.damage.EdgeSteps.breaks`).
CLOSE_CALL, BREAKS_EDGE = "close call", "breaks the edge"


@dataclass(frozen=True)
class RefineSettings:
    """The sampling settings of one pipeline call (the call's arguments over ``refalign.json``'s defaults)."""

    steps: int
    strength: float
    masked_content: str
    num_samples: int
    generator: torch.Generator | None = None
    callback: Callable[..., dict] | None = None
    callback_inputs: Sequence[str] = ("latents",)
    unregistered: str = "model"
    dense_flow: bool = True
    #: one for every window, or one per window (the pipeline hands each window its own)
    paste: bool | tuple[bool, ...] = True

    @property
    def seed(self) -> int:
        """The call's seed for the pipeline's own randomness outside the model (synthesis): the generator's
        initial seed, 0 without one."""
        return int(self.generator.initial_seed()) if self.generator is not None else 0

    @property
    def fill_start(self) -> bool:
        """Whether sampling starts from the window's classical fill (``strength < 1`` with ``"fill"``)."""
        return self.strength < 1.0 and self.masked_content == "fill"


@dataclass
class WindowJob:
    """Everything about one window's refinement.

    Attributes:
        plan: the window and the artifact regions it repaints.
        frame: the window seen at the model's resolution (model ↔ image pixels).
        mask: ``(H, W)`` bool — this window's regions in image coordinates (what alignment and registration read).
        reference_index: which reference the window is refined from.
        correspondence: where the artifact lives in that reference (computed once).
        alignment: the alignment stage's output for that reference (``None`` without alignment).
        tokens: the reference tokens the refiner cross-attends to (``I_r ⊗ region``).
        image: the window at model resolution; ``inpaint``: the dilated mask to inpaint at model resolution;
        weights: the paste weights at image scale.
        fill: the window's one classical fill (when the paste, the model's input or the start needs it).
        warp: the reference warped onto the window at model resolution, ``(pixels, valid)``, for guidance.
        detail: the registered reference's band finer than the model (image scale), for the residual paste.
        guidance: what the warped guidance got, for the report (``"warp (…)"``, ``"none (…)"``, ``"off"``).
        source: where the hole's pixels come from: ``"model"``, ``"reference"``, ``"reference+model"``,
            ``"synthesis"``, ``"synthesis+model"``, ``"recoloured"`` or ``"kept"``
            (:attr:`RefineOutput.sources <refalign.pipelines.outputs.RefineOutput>`).
        transfer: the hole's pixels as pasted, ``(pixels, valid, box)`` in image coordinates — the reference's,
            registered (:func:`refalign.transfer.source.transfer_source`) when ``source`` starts with
            ``"reference"`` (moved by the dense flow when ``flow`` says so), synthesised from its region when it
            starts with ``"synthesis"``; the image's own, recoloured (:func:`refalign.transfer.damage.recolour_region`),
            when it is ``"recoloured"`` (``valid`` ``None`` for both).
        flow: what the dense-flow correction of the registered pixels did
            (:func:`refalign.transfer.flow.flow_correct`; ``None`` when it did not run).
        synthesis: the synthesis itself (:func:`refalign.transfer.synthesis.synthesize_hole`), for the report.
        fallback: why the source asked for (synthesis) was not used, when it was not.
        choice: how ``unregistered="auto"`` decided for this window (its edge contrast, interior detail or edge
            steps), for the report.
        unpasted: the window registered, but the call asked for no paste (``paste=False``): it got ``unregistered``.
        edge_steps: for a paste across views, how far it and the damaged pixels each continue the surroundings at
            the mask's edge (:func:`refalign.transfer.damage.paste_edge_steps`), for the report.
        located_mix: on the located path, the ring's gradient correlation under the model whose warp of the
            reference was averaged into the synthesis (``None`` when none was).
        restroke: the colour step across the mask's edge and its colour map, when the synthesis gave only the colours
            and the artifact's own strokes were kept in them (:func:`refalign.transfer.damage.recolour_to_source`;
            ``None`` when they were not), for the report.
    """

    plan: ZoomWindow
    frame: ModelFrame
    mask: np.ndarray
    reference_index: int = 0
    correspondence: Correspondence | None = None
    alignment: AlignmentOutput | None = None
    tokens: torch.Tensor | None = None
    image: np.ndarray | None = None
    inpaint: np.ndarray | None = None
    weights: np.ndarray | None = None
    fill: ClassicalFill | None = None
    warp: tuple[np.ndarray, np.ndarray] | None = None
    detail: np.ndarray | None = None
    guidance: str = ""
    source: str = "model"
    transfer: tuple[np.ndarray, np.ndarray | None, tuple[int, int, int, int]] | None = None
    synthesis: Synthesis | None = None
    flow: FlowCorrection | None = None
    fallback: str = ""
    choice: str = ""
    unpasted: bool = False
    edge_steps: EdgeSteps | None = None
    located_mix: float | None = None
    restroke: EdgeColours | None = None

    @property
    def doubts(self) -> tuple[str, ...]:
        """What speaks against the window's paste (:data:`CLOSE_CALL`, :data:`BREAKS_EDGE`); empty when nothing
        does or nothing was pasted."""
        if not self.source.startswith("reference"):
            return ()
        close = self.correspondence.fit.best.score.damage_ratio < CLEAR_DAMAGE_RATIO
        breaks = self.edge_steps is not None and self.edge_steps.breaks
        return tuple(d for d, on in ((CLOSE_CALL, close), (BREAKS_EDGE, breaks)) if on)

    @property
    def runs_model(self) -> bool:
        return self.source in ("model", "reference+model", "synthesis+model")

    def report(self) -> str:
        """One line for the user: the window, where its pixels came from, and why."""
        line = self._report()
        return f"{line} [{self.choice}]" if self.choice else line

    def _report(self) -> str:
        w = self.window
        where = f"window at ({w.left}, {w.top}) size {w.size}"
        corr = self.correspondence
        if self.source.startswith("reference"):
            how = "the reference's own pixels"
            how += f", {self.flow.describe()}" if self.flow is not None and self.flow.applied else ""
            how += ", harmonized by the model" if self.source.endswith("model") else ""
            if corr.matrix is None:  # auto's paste through a model refused only for its damage ratio
                return (f"{where}: {how} through {refused_model(corr)} — not registered ({corr.registration})"
                        f"{self._doubt_text()}")
            return f"{where}: {how} — registered ({_registration(corr)}){self._doubt_text()}"
        if self.unpasted:
            return (f"{where}: {self._how_unpasted()}, not the registered reference's pixels (--no-paste; registered: "
                    f"{_registration(corr)}) — --paste to paste them")
        why = corr.registration if corr is not None and corr.registration else "no registration ran"
        if corr is not None and corr.path == "located":
            why += "; its best model still locates the matching region"
        if self.source.startswith("synthesis"):
            return f"{where}: {self._how_synthesised()} (no geometric model fits: {why}) — {KEEP_HINT}"
        if self.fallback:
            return (f"{where}: not synthesised ({self.fallback}); refined by the model instead — "
                    f"{_hints(corr, KEEP_HINT)}")
        if self.source == "recoloured" and corr is not None and corr.matrix is not None:
            return (f"{where}: its own pixels recoloured to their surroundings, which they continue better than the "
                    f"registered reference's pixels do (registered: {_registration(corr)}) — --unregistered keep to "
                    "paste the reference's pixels instead")
        if self.source == "recoloured":
            return (f"{where}: its own pixels recoloured to their surroundings (no reliable correspondence in the "
                    f"reference: {why}) — {KEEP_HINT}")
        if self.source == "kept":
            hint = _hints(corr) or ("your --reference-mask region does not explain it either; --unregistered "
                                    "synthesize rebuilds its texture (not print or letters) from that region")
            return f"{where}: no reliable correspondence in the reference ({why}); region left as it was — {hint}"
        if corr is not None and corr.fit is not None and corr.matrix is None:
            return (f"{where}: no reliable correspondence in the reference ({why}); refined by the model instead — "
                    f"{_hints(corr, KEEP_HINT)}")
        conf = corr.confidence if corr is not None else 0.0
        return f"{where}: refined by the model (registration: {why}; confidence {conf:.2f})"

    def _doubt_text(self) -> str:
        """:attr:`doubts` in words, with their numbers and the way to refuse the paste (empty without doubts): good
        pastes and wrong ones both lie under the damage ratio's bar; the edge step tells only where the mask hugs
        its artifact. A paste through a model refused for its damage ratio (no accepted model) has its ratio in
        :attr:`choice` already; its line always ends with the way to refuse it, ``--unregistered keep``."""
        doubts, said = self.doubts, []
        registered = self.correspondence.matrix is not None
        if not doubts and registered:
            return ""
        if CLOSE_CALL in doubts and registered:
            ratio = self.correspondence.fit.best.score.damage_ratio
            said.append(f"a close call: the damaged pixels differ from the paste {ratio:.2f}x as much as the known "
                        f"pixels around it do (accepted from {MIN_DAMAGE_RATIO:g}x, clear from "
                        f"{CLEAR_DAMAGE_RATIO:g}x)")
        if BREAKS_EDGE in doubts:
            said.append(f"it continues the surroundings less well than the damaged pixels do "
                        f"({self.edge_steps.describe()}; where the mask hugs its artifact such pastes came out worse "
                        "than doing nothing 49 times in 53)")
        refuse = "--no-paste leaves the region to --unregistered" if registered else KEEP_HINT
        return " — " + "; ".join(said + [f"if it looks wrong, {refuse}"])

    def _how_synthesised(self) -> str:
        how = f"synthesised from {_region_name(self.correspondence, self.mask)} in {self.synthesis.levels} level(s)"
        how += ", guided by its own pixels" if self.synthesis.guided else ""
        if self.located_mix is not None:
            how += (f", averaged with the reference warped through the model that located it (ring correlation "
                    f"{self.located_mix:.2f} >= {LOCATED_MIX_CORRELATION})")
        if self.restroke is not None:
            how += (f", its own strokes then kept in the synthesis's colours (its colours follow its surroundings': "
                    f"{self.restroke.describe_following()})")
        return how + (", harmonized by the model" if self.source.endswith("model") else "")

    def _how_unpasted(self) -> str:
        """What a registered window got instead of the paste (``paste=False``)."""
        if self.source.startswith("synthesis"):
            return self._how_synthesised()
        if self.source == "recoloured":
            return "its own pixels recoloured to their surroundings"
        if self.source == "kept":
            return "left as it was"
        return f"refined by the model ({self.fallback})" if self.fallback else "refined by the model"

    @property
    def window(self) -> Window:
        return self.plan.window

    @property
    def region(self) -> np.ndarray | None:
        """The reference region the refinement is conditioned on (``None``: the whole reference)."""
        return self.correspondence.region if self.correspondence is not None else None


def refused_model(corr: Correspondence) -> str:
    """The report's name for the model ``unregistered="auto"`` pasted though the damage ratio refused it: the one
    that located the window, or the one found around the user's region."""
    return "the model that locates it" if corr.path == "located" else "the model found around your --reference-mask"


def _registration(corr: Correspondence) -> str:
    """An accepted registration in the report's words: how it was found, and its confidence."""
    return f"{corr.registration}; confidence {corr.confidence:.2f}"


def _hints(corr: Correspondence | None, *more: str) -> str:
    """What the user can do, joined by "or": paint the matching region with ``--reference-mask`` — unless the
    window's correspondence is that region already — then ``more``."""
    paint = () if corr is not None and corr.path == "user" else ("paint the matching region with --reference-mask",)
    return ", or ".join(paint + more)


def _region_name(corr: Correspondence, artifact: np.ndarray) -> str:
    """The reference region a synthesis used, in the user's words (the user's, the registered or located
    artifact's, or ``M*``); ``M*``'s size against the ``artifact``'s, and whether that makes it a vague match
    (:data:`~refalign.pipelines.correspondence.VAGUE_AREA_RATIO`)."""
    n = int(corr.region.sum())
    if corr.path == "user":
        return f"your --reference-mask region ({n} px)"
    if corr.path == "warp":  # registered, its paste refused (``paste=False``)
        return f"the registered region ({n} px)"
    if corr.path == "located":
        return f"the region the registration located ({n} px; not registered)"
    ratio = corr.m_star_ratio(artifact)
    vague = ", a vague match" if ratio >= VAGUE_AREA_RATIO else ""
    return f"the alignment's matching region M* ({n} px, {ratio:.1f}x the artifact's area{vague})"
