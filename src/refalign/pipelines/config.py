"""``refalign.json``: what a checkpoint needs beyond the diffusers components (DESIGN §4).

It holds the alignment defaults (which diffusion step and transformer layer to read, post-processing
thresholds), refinement defaults, the model's working resolution, and the training config that produced the
checkpoint. It is written beside ``model_index.json`` by ``RefineByAlignPipeline.save_pretrained``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refalign.checks import check_refalign_config
from refalign.errors import CheckpointError, InputError
from refalign.files import write_bytes_atomic
from refalign.fill import GREY
from refalign.typed_config import build_typed, set_dotted

FORMAT_VERSION = 1
FILE_NAME = "refalign.json"
#: ``refinement.source`` and ``refinement.unregistered`` values.
SOURCES = ("model", "reference")
UNREGISTERED = ("keep", "model", "synthesize", "guided", "auto")


@dataclass
class AlignmentDefaults:
    """Where and how the alignment stage (paper Algorithm 1) reads cross-attention.

    Attributes:
        step: index into the sampler's schedule of ``num_inference_steps`` steps (0 = the first, noisiest step)
            at which the map is read. The paper reads ``t = 0`` of 50 DDIM steps at inference.
        layer: transformer block, numbered in U-Net order down → mid → up from 0 (paper: ``l = 9`` of 16).
        num_inference_steps: length of the schedule that ``step`` indexes.
        noise_z: a token is a ViT noise peak (§A.4) when it exceeds its neighbourhood by this many robust
            standard deviations.
        threshold: fraction of the cleaned map's maximum above which a token belongs to ``M*``.
        score: mIoU of these settings on the set they were searched on (``None`` if never searched).
        context: the alignment window is a square of ``context ×`` the artifact's longest bbox side around it
            (``refalign.windows.square_window``). Wide (4×, wider than refinement's 2×) because the model has to see
            enough of the object to know *which part* of it the artifact is; a tight crop shows only the hole.
        subtoken: refine ``M*`` beyond the token grid by feature matching (ours, :mod:`refalign.pipelines.subtoken`).
        min_window: smallest side of that window in image pixels (before resizing to the model's resolution).
        seed: seed of the noise added to the window's latent when no generator is passed (alignment is
            deterministic by default).
    """

    step: int = 0
    layer: int = 9
    num_inference_steps: int = 50
    noise_z: float = 4.0
    threshold: float = 0.5
    score: float | None = None
    context: float = 4.0
    min_window: int = 64
    seed: int = 0
    subtoken: bool = False


@dataclass
class RefinementDefaults:
    """Sampling defaults of the refinement stage (paper §3.5).

    Attributes:
        num_inference_steps: DDIM steps.
        guidance_scale: classifier-free guidance scale (``<= 1``: a single conditional pass per step).
        context: zoom-in window side as a multiple of the artifact's longest bounding-box side.
        min_window: smallest window side in image pixels.
        dilation: radius of the dilated artifact mask in model pixels (scaled by ``window / resolution`` to image
            pixels, at least 1). The model inpaints the dilated mask and the paste fades out across it; pixels
            outside it are bit-identical to the input.
        merge_growth: overlapping windows of two regions are merged when the merged window's side is at most this
            multiple of the larger one.
        reference_context: the reference crop is the square centred on ``M*``'s bounding box, this times its longer
            side (1.0 = tight, as the training references are built).
        reference_fill: grey level given to reference pixels outside ``M*`` (``I_r ⊗ M*``) and to the padding.
        strength: share of the schedule run on the window (1 = from pure noise, as the paper; lower starts from the
            window's content noised to that level, as diffusers' img2img).
        masked_content: what is under the mask at the start when ``strength < 1``: ``"original"`` (the artifact
            itself) or ``"fill"`` (a classical Telea inpainting of the mask: the model then only has to add the
            detail, the low frequencies come from the surroundings).
        feather: width of the paste's fade-out around the artifact in model pixels (``None``: ``dilation``).
        paste_mode: ``"window"`` — paste the refined window upsampled (the paper's zoom-in); ``"residual"`` — add
            the model's change over a classical fill to the same fill at full resolution
            (:func:`refalign.pipelines.zoom.residual_patch`; keeps the sharp surroundings; ours).
        detail_transfer: with ``paste_mode="residual"`` and a registered reference (warped guidance), add the
            reference's band finer than the model's resolution inside the artifact
            (:func:`refalign.pipelines.zoom.reference_detail`; ours).
        ramp: with ``paste_mode="residual"``, the model's change fades in over this many model pixels from the
            edge of the filled hole, where the classical fill meets the surroundings (0 = no fade; ours).
        num_samples: samples drawn per window in one batch and averaged (an estimate of the posterior mean, which
            minimises the expected squared error; 1 = one sample, as the paper; ours).
        source: where the hole's pixels come from (DESIGN §6; ours). ``"model"`` — the refiner inpaints every window
            (the paper); ``"reference"`` — where the window's neighbourhood registers reliably with a reference
            (:mod:`refalign.transfer`), the reference's own pixels, warped and colour-fitted at full resolution;
            other windows get ``unregistered``.
        unregistered: with ``source="reference"``, what a window without a reliable correspondence gets: ``"model"``
            (the refiner, as ``source="model"``; the user is told), ``"keep"`` (the input, unchanged),
            ``"synthesize"`` (the hole synthesised from the correspondence's reference region — the user's reference
            mask or ``M*`` — by PatchMatch over a Telea fill's coarse band, :mod:`refalign.transfer.synthesis`; the
            refiner when there is no region), ``"guided"`` (the artifact's own pixels recoloured where it only
            changed colours, as ``"auto"`` does, else synthesised as ``"synthesize"`` with its own pixels as the
            guide: its layout is kept and its texture rebuilt — for a mask painted around a smeared feature, an eye
            or a nose, which ``"auto"`` may synthesise away where it is not blurred; on 66 smeared parts 19.97 / 0.210
            against auto's 19.92 / 0.210 and 19.62 / 0.211 kept; on free-form masks auto stays ahead, 24.73 / 0.153
            against 24.24 / 0.159 on cv17; docs/results.md) or ``"auto"`` (the artifact's own pixels recoloured to its
            surroundings where it only changed colours, :func:`refalign.transfer.damage.edge_colours` — where the
            ring alone cannot tell, when the reference never shows the damaged colours and shows the recoloured
            ones, :func:`refalign.transfer.damage.reference_colours`; kept where it
            looks continuous with them, :func:`refalign.transfer.damage.looks_mild` — unless it looks blurred
            (:func:`refalign.transfer.damage.interior_detail`), then synthesised with its own pixels as the guide;
            else as ``"synthesize"``, guided by its own pixels where its interior is a blur
            (:func:`refalign.transfer.damage.interior_blur`), where that continues the surroundings nearly as well
            or where the region is a vague ``M*``, which cannot say what it held
            (``guided`` in :func:`refalign.transfer.synthesis.synthesize_hole`); where its colours follow its
            surroundings' and its strokes are not a blur
            (:attr:`refalign.transfer.damage.EdgeColours.follows_surroundings`: a feature whose colours drifted to
            ones its surroundings lack), its own strokes are kept in the synthesis's colours
            (:func:`refalign.transfer.damage.recolour_to_source`) — where it would synthesise, a
            registration refused for its damage ratio alone is pasted instead
            (:attr:`refalign.transfer.register.LocalRegistration.damage_refused`: the region looks nearly as the
            reference says, a feature painted around that a synthesis would rebuild as its surroundings); it assumes
            the mask hugs the artifact; and a *registered* window whose model explains the ring only in part — a
            paste across views — takes the artifact's recoloured pixels instead where they continue their
            surroundings better, :meth:`refalign.transfer.damage.EdgeColours.recolours_below`). On the development
            benchmark's 71 unregistered other-photo windows, box PSNR / GMSD: auto 24.36 / 0.151 (24.01 / 0.154
            before its own pixels guided the synthesis, session 9; 22.76 / 0.160 before it recoloured, session 5),
            Telea 21.62 / 0.186, kept 20.73 / 0.183; over all 74 other-photo cases (session 5) auto 22.89,
            synthesize 22.00, model 21.72, keep 20.95 dB. Recolouring wins on colour drifts (30.50 against 23.65
            kept), keeping on other mild artifacts, the synthesis guided by their own pixels on blurred and garbled
            ones (garbled 24.55 against 24.27 kept and 23.63 before; lost detail 22.34 / GMSD 0.200 against 22.29 /
            0.225 kept), a fill on content from elsewhere (hallucinated, shuffled: 7-8 dB). The shipped model uses
            ``"auto"``; the class default stays the paper's ``"model"``.
        harmonize: with ``source="reference"``, run the refiner over the transferred pixels (the model's residual x₀
            as a correction over that source, pasted with ``paste_mode="residual"``) instead of pasting them as
            they are.
        dense_flow: with ``source="reference"``, move the transferred pixels by the dense flow that aligns them with
            the known pixels around the hole where the registered model explains those only in part and the flow
            shifts them by at least a pixel on average (:func:`refalign.transfer.flow.flow_correct`: across views a
            plane model lands a few pixels off); a registration that is already right is pasted as warped. On the
            six accepted cross-view windows of the development sets (session 7) +1.4 dB box PSNR on average, GMSD
            lower on five; no warp window moves.
        paste: with ``source="reference"``, paste the registered reference's pixels where the registration is
            accepted. ``False`` treats every window as unregistered (it gets ``unregistered``; the report still
            says what registered): the recourse for a paste that looks wrong — the checks accept a window whose
            damaged pixels differ from the warped reference at least 1.6 times as much as the known pixels around
            it do, and on real pairs three such windows came out worse than the input (the model card's Limits);
            each window's report says what speaks against its paste.
    """

    num_inference_steps: int = 50
    guidance_scale: float = 2.5
    context: float = 2.0
    min_window: int = 64
    dilation: float = 3.0
    merge_growth: float = 2.5
    reference_context: float = 1.0
    reference_fill: int = GREY
    strength: float = 1.0
    masked_content: str = "original"
    feather: float | None = None
    paste_mode: str = "window"
    detail_transfer: bool = False
    num_samples: int = 1
    ramp: float = 0.0
    source: str = "model"
    unregistered: str = "model"
    harmonize: bool = False
    dense_flow: bool = True
    paste: bool = True


@dataclass
class RefalignConfig:
    """Everything in ``refalign.json``."""

    preset: str = "tiny"
    resolution: int = 64
    #: what the U-Net sees under the mask in its masked-image input: ``"zero"`` (SD inpainting, the paper) or
    #: ``"telea"`` (a classical fill, :mod:`refalign.fill`; ours). A property of the trained model.
    masked_fill: str = "zero"
    #: the U-Net's output is x₀ *minus the masked-image input* (scheduler ``prediction_type="sample"``): the
    #: network predicts a correction over the (classical) fill, and a zero output reproduces the fill. A property
    #: of the trained model (ours; see :meth:`RefineByAlignPipeline.unet_forward`).
    residual_prediction: bool = False
    alignment: AlignmentDefaults = field(default_factory=AlignmentDefaults)
    refinement: RefinementDefaults = field(default_factory=RefinementDefaults)
    training: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def set_window_geometry(self, *, align_context: float, refine_context: float, min_window: int,
                            fill: int = GREY) -> None:
        """Record the window geometry a model is trained with — the alignment and refinement window contexts,
        the smallest window and the neutral fill grey — so that inference and the training sample builders
        (:func:`refalign.training.data_setup.sample_spec`) read the same values from ``refalign.json``."""
        self.alignment.context, self.alignment.min_window = float(align_context), int(min_window)
        self.refinement.context, self.refinement.min_window = float(refine_context), int(min_window)
        self.refinement.reference_fill = int(fill)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = FILE_NAME) -> "RefalignConfig":
        data = dict(data)
        version = data.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{source}: format version {version} is newer than this refalign supports; upgrade refalign")
        try:
            alignment = build_typed(AlignmentDefaults, data.pop("alignment", {}), "alignment", source)
            refinement = build_typed(RefinementDefaults, data.pop("refinement", {}), "refinement", source)
            config = cls(alignment=alignment, refinement=refinement, **data)
        except InputError as exc:
            raise CheckpointError(f"{exc}; fix the file") from None
        except TypeError as exc:
            raise CheckpointError(f"{source}: unexpected content ({exc}); re-save the checkpoint") from None
        check_refalign_config(config, source, CheckpointError)
        if config.refinement.paste_mode not in ("window", "residual"):
            raise CheckpointError(f"{source}: paste_mode {config.refinement.paste_mode!r} is not window or residual; "
                                  "fix the file")
        if config.masked_fill not in ("zero", "telea"):
            raise CheckpointError(f"{source}: masked_fill {config.masked_fill!r} is not zero or telea; fix the file")
        r = config.refinement
        if r.masked_content not in ("original", "fill"):
            raise CheckpointError(f"{source}: masked_content {r.masked_content!r} is not original or fill; fix the file")
        if not (isinstance(r.num_samples, int) and r.num_samples >= 1):
            raise CheckpointError(f"{source}: num_samples {r.num_samples!r} must be an integer >= 1; fix the file")
        if r.ramp < 0:
            raise CheckpointError(f"{source}: ramp {r.ramp!r} must be >= 0; fix the file")
        for name, allowed in (("source", SOURCES), ("unregistered", UNREGISTERED)):
            if getattr(r, name) not in allowed:
                raise CheckpointError(f"{source}: {name} {getattr(r, name)!r} is not {' or '.join(allowed)}; "
                                      "fix the file")
        if r.harmonize and r.paste_mode != "residual":
            raise CheckpointError(f"{source}: harmonize needs paste_mode residual (the model's correction is added to "
                                  "the transferred pixels); fix the file")
        return config

    def save(self, path: str | Path) -> None:
        write_bytes_atomic(path, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> "RefalignConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing; this folder is not a refalign checkpoint") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc}); re-save the checkpoint") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: expected a JSON object; re-save the checkpoint")
        return cls.from_dict(data, source=str(path))


#: Settings ``--set`` refuses, and why: a measurement of the checkpoint, or a value the model was trained with.
FIXED = {
    "alignment.score": "a measurement (the mIoU of the searched step and layer); `refalign align-search` writes it",
    "refinement.reference_fill": "the grey the model was trained with; change it by training",
}


def _no_op(config: RefalignConfig) -> list[tuple[str, str]]:
    """``(setting, why)`` for every setting of ``config`` that would silently do nothing."""
    r = config.refinement
    out = []
    if r.paste_mode == "window":
        if r.detail_transfer:
            out.append(("refinement.detail_transfer", "adds detail only with refinement.paste_mode=residual"))
        if r.ramp > 0:
            out.append(("refinement.ramp", "fades the change in only with refinement.paste_mode=residual"))
    if r.masked_content == "fill" and r.strength >= 1.0:
        out.append(("refinement.masked_content", "chooses the start only with refinement.strength < 1"))
    if r.source == "model":
        if r.harmonize:
            out.append(("refinement.harmonize", "acts only with refinement.source=reference"))
        if r.unregistered != "model":
            out.append(("refinement.unregistered", "acts only with refinement.source=reference"))
        if not r.dense_flow:
            out.append(("refinement.dense_flow", "acts only with refinement.source=reference"))
        if not r.paste:
            out.append(("refinement.paste", "acts only with refinement.source=reference"))
    return out


def apply_overrides(config: RefalignConfig, overrides: list[str], *, check_effect: bool = True) -> RefalignConfig:
    """A copy of ``config`` with ``section.key=value`` settings applied (``alignment.*`` / ``refinement.*``), e.g.
    ``["refinement.num_samples=1", "alignment.subtoken=false"]``; values are parsed as YAML and must have the
    field's type (:mod:`refalign.typed_config`, the training config's mechanism). Refused with one
    :class:`~refalign.errors.InputError` line naming the setting: an unknown key or a wrong value, a :data:`FIXED`
    setting, and a setting that the result would silently ignore (detail transfer or a ramp with the window paste,
    a fill start with strength 1 — only a setting given here, not one of the checkpoint's that the others turn off;
    ``check_effect=False`` skips this last check, for checking the keys and values before the checkpoint they
    apply to is loaded)."""
    sections = {"alignment": AlignmentDefaults, "refinement": RefinementDefaults}
    known = [f"{s}.{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls)]
    touched = set()
    for item in overrides:
        key, sep, _ = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise InputError(f"--set {item}: expected SECTION.KEY=VALUE with one of "
                             f"{', '.join(k for k in known if k not in FIXED)}")
        if key in FIXED:
            raise InputError(f"--set {item}: {key} cannot be set: {FIXED[key]}")
        touched.add(key)
    data = set_dotted(config.to_dict(), overrides)
    try:
        result = RefalignConfig.from_dict(data, source="--set")
    except CheckpointError as exc:
        raise InputError(f"{exc}".replace("; fix the file", "; choose another value")) from None
    for key, why in _no_op(result) if check_effect else []:
        # refused only when the setting that would do nothing is one the user gave: switching the checkpoint to
        # another path (e.g. source=model) leaves the checkpoint's own settings for the other path inert, by intent
        if key in touched:
            raise InputError(f"--set: {key}={getattr(result.refinement, key.split('.')[1])!r} {why}; "
                             f"set {key} too, or change the other setting")
    return result


