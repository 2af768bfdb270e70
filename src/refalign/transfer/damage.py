"""What the damaged pixels of a region say about the damage (issue 15 part 6), for windows without a registration.

**Recoloured artifacts.** A print or patch that only changed colours (a hue, saturation or tone drift) keeps the
truth's strokes in place, and its colours jump at the mask's edge where the strokes run on. :func:`edge_colours`
pairs each pixel just inside the edge with the nearest pixel just outside it and measures the colour step between
them against the step between true pixels the same distance apart (the same pairs across the edge of the hole
grown by :data:`NATURAL_GAP` px); a robust colour map fitted on the pairs
(:func:`~refalign.transfer.colour.fit_colour`) is the recolouring. :attr:`EdgeColours.recolours` asks for a real
jump (:data:`MIN_STEP`) and that the map bring it down to about the natural step (:data:`MAX_RECOLOURED_STEP`),
remove a real part of it (:data:`MIN_STEP_REMOVED`), be undone by the map fitted the other way
(:data:`MAX_ROUND_TRIP`, :data:`ROUND_TRIP_SHARE`) and explain the outside colours' variation
(:data:`MIN_EXPLAINED`): a garbled, blurred or moved artifact has a step no colour map removes, content from
elsewhere keeps one, a map fitted to unchanged colours only shrinks them towards their mean (regression to the mean:
its inverse shrinks them again), and two flat colours meeting at the mask's edge — a patch masked along its own
border — say nothing about the patch's true colour.
:func:`recolour_region` applies the map to the region; the pairs' depth and the growth scale with the image like
the registration's score.

Measured with ``python benchmarks/bench_recolour.py CASES --clean-photos ../shared/data/dreambooth-dev``. On the 69
unregistered other-photo windows of the development sets (dc17, cv15) 10 of the 13 colour-drift windows are
recoloured and none of another kind, box PSNR / GMSD 35.86 / 0.022 on those against 23.39 / 0.061 for doing nothing
and 20.64 / 0.193 for Telea; on the 1024-px copies 8 of 11, 34.86 / 0.031 against 22.50 / 0.070; on three more
crossview sets (cv17, cvx1, cvx2) 8 of 21, 33.44 / 0.039 against 21.16 / 0.084, again none of another kind. Per kind
(median, in natural steps): colour drift steps 2.79, leaves 1.23 after the map, round trip 0.52, explains 0.61;
garbled and blurred artifacts remove 0.02–0.11 of their step; shuffled and hallucinated ones leave 2.5–2.8 and
explain 0.03–0.13. The risk is a mask drawn along a region's own border over content that was right: on the 78
development photos, 3689 masks along colour regions (k-means) are recoloured 7 times (the worst at 14.3 dB PSNR
against the photo; the other six at 20.4–28.6, five of them blurred background blobs). The real-jump rule was set
there: with steps of 1.0–1.4 allowed and a third of the spread, 68 were (the worst to 9.9 dB). Without the round
trip a clean textured region with a step of 1.16 was recoloured (the map shrank its colours); without the spread
rule, a navy label masked along its border was painted the shirt's grey (``tests/test_damage.py``). Session 16
loosened the bars (from a step of 1.4, 1.3 left, a round trip of 0.8 and half the spread): every window that then
changed on eleven benchmark sets was a colour drift (10 more recoloured: +5.8 to +15.4 dB each, none worse; one of
them had been pasted from another view), for 5 more recolourings on the clean photos (docs/results.md).

**Where the ring cannot confirm the map, the reference can.** Two nearly flat colours at the edge (a lid or a label's
ground drifted, masked inside its own region) give a map that removes the step (:meth:`EdgeColours.removes_step`)
but explains little of the outside colours' spread or is not closely undone by the map fitted the other way
(:meth:`EdgeColours.unconfirmed`); a label masked along its own border gives the same pairs, and its true colour is
not the ring's. The reference tells them apart:
:func:`reference_colours` asks whether the object ever shows the damaged colours (at most
:data:`ABSENT_FROM_REFERENCE` of them, :func:`colours_present`) and shows the recoloured ones (at least
:data:`PRESENT_IN_REFERENCE`). Where the window's strokes would not be kept in a synthesis's colours (below; those
drifts have their colours already, and a map fitted on flat pairs flattens texture), ``auto`` and ``guided``
recolour on that word. On 26 sets 40 distinct windows change, 39 of them colour drifts, 19.61 / 0.087 → 27.27 /
0.087, better in PSNR on 39 (docs/results.md, "Where the ring cannot confirm the map").

**Colours the surroundings lack.** A feature whose colours drifted to ones its ring does not show (a dog's black
nose turned green on white fur) is refused by the recolouring, whose map is fitted on the ring and cannot say what
those colours become; a synthesis from the reference region finds the colours but loses the feature, since it
rebuilds the region from texture. The two are combined: where the colour map across the edge still explains
:data:`FOLLOWS_EXPLAINED` of the outside colours' spread, or :data:`FOLLOWS_EXPLAINED_INVERTIBLE` with a round trip
within :data:`FOLLOWS_ROUND_TRIP` (:attr:`EdgeColours.follows_surroundings`; content from elsewhere does not) and the
strokes are not a blur (:func:`interior_blur`, :func:`interior_detail`),
:func:`recolour_to_source` carries the damaged pixels into the synthesis's colours by a guided filter — locally
colour-affine maps of the damaged image fitted to the synthesis inside the hole and to the image itself outside it.
On sixteen development sets 99 windows change, 93 of them colour drifts, all 93 better in box PSNR and GMSD: 20.72 /
0.189 synthesised, 26.23 / 0.075 their strokes in the synthesis's colours, 20.53 / 0.103 as they were
(docs/results.md, "Colours the surroundings lack"); the round-trip band of session 27 changes 23 more, 21 of them
colour drifts, 19.52 / 0.220 → 23.98 / 0.098, as they were 20.30 / 0.115 (docs/results.md, "A fifth of the spread,
undone by the inverse map"; on four held-out sets 3 drifts gain, a hallucinated and two garbled windows lose).

**Against a paste.** A window registered from another view gets a paste a pixel or several off; where its artifact
only changed colours, its own strokes recoloured are the better source when they continue the surroundings better
than the paste does: :meth:`EdgeColours.recolours_below` holds the recoloured step against the paste's own
(:func:`edge_step`) instead of :data:`MAX_RECOLOURED_STEP`, the other rules unchanged (the pipeline asks only where
the registration explains the ring in part, as the dense flow does).

**A paste that breaks the edge.** The same step speaks against a paste across views where the registration's own
checks cannot tell a wrong paste from a right one (:data:`~refalign.transfer.register.CLEAR_DAMAGE_RATIO`): a
paste that continues the surroundings at the mask's edge less well than the damaged pixels do
(:func:`paste_edge_steps`, :attr:`EdgeSteps.breaks`) is reported with that doubt, where the registration explains
the ring only in part as above. Measured on the 139 verified crossview cases (the reference pasted through the
geometry each was built with, registration checks off; ``bench --method verified-paste`` on three crossview sets,
session 15): 53 pastes break the edge, 49 of them worse than doing nothing (mean −2.22 dB against it); of the 86
others 12 are (mean +4.19 dB) — 28 of 35 garbled and 18 of 26 blurred pastes break it (those artifacts continue
their surroundings), 0 of 29 hallucinated. Every real pair registered wrongly so far breaks it (a bear's tag 1.86
against the damage's 1.34, a sneaker's sole 1.14 against 1.10, a cartoon's face from two other drawings 2.27 and
2.17 against 1.22), and so does the benchmark's one wrong acceptance (2.19 against 1.15); of its other 12 registered
cross-view windows one does (3.05 against 2.90, +0.76 dB over doing nothing). Warp pastes stay far from it (78
windows, at most 0.84 times the damage's step). It is a doubt, not a gate, because it needs a mask that hugs its
artifact: drawn with 8 px of clean pixels around the damage, the damaged pixels at the mask's edge are the truth,
and all 8 cross-view pastes those masks registered break the edge (paste 1.42–3.97, damaged 0.78–1.51) — 6 of them
right, +3.5 to +14.9 dB over doing nothing. The pixels just inside the edge do not tell the two apart either: they
differ from the paste 0.93–1.04 times as much as the ring does on the real wrong pairs, 0.97–1.16 on the margins.

**Mild artifacts.**
A blurred or warped artifact (or a recoloured one the test above refuses) stays continuous with its surroundings:
its strokes run on across the mask's edge, and the input is a fair guess of the truth — keeping it beats the
refiner's fill. Content from elsewhere (hallucinated, shuffled) breaks at the edge, and the fill wins.
:func:`edge_contrast` measures that break: the mean gradient magnitude on the mask's edge over the mean on the ring
of known pixels around it, and :func:`looks_mild` is the decision ``refinement.unregistered="auto"`` takes per
window.

**Blurred and warped artifacts.** Such an artifact still shows where its strokes are, only not their detail. Its
own pixels then guide the synthesis at a lower weight than the known ones
(:func:`~refalign.transfer.synthesis.synthesize_hole` with ``guided=True``: they start the coarsest level and give
the coarse band, the reference region the detail). ``unregistered="auto"`` uses them on two kinds of window:

* a window it would keep whose interior holds under :data:`BLURRED_DETAIL` of its surroundings' gradient energy
  (:func:`interior_detail`) — a kept blur has none of the detail;
* a window it would synthesise where the guided synthesis leaves at most :data:`GUIDED_STEP_RATIO` times the colour
  step at the mask's edge that the plain one does (:func:`edge_step`): the damaged structure continues the
  surroundings about as well as their smooth continuation. Content from elsewhere breaks there (the ranges under
  :data:`GUIDED_STEP_RATIO`).

The interior measure alone does not single out blurs among windows that break from their surroundings: content
copied from a smooth part of the photo is as flat (seven hallucinated windows at 0.31–0.59 in the two extra
crossview seeds, where the guided synthesis lost 0.6–8.3 dB), hence the step test there. The step test in turn
assumes the truth continues the surroundings, which a feature painted around does not: a smeared nose, guided,
breaks from the white fur around it as the true nose does, so the step test rebuilt it as fur. A third rule
therefore asks whether the interior *is* a blur (:func:`interior_blur`): a blurred image keeps nearly all of its
gradient energy under a further small blur, a textured one or a flat one does not (a flat one has none to keep:
the measure's floor). A breaking window whose interior keeps at least :data:`BLURRED_INTERIOR` of it is guided
whatever the step test says (session 24, docs/results.md, "A blurred interior keeps its layout").

Measured on the development benchmark's other-photo cases (crossview and multiview) with a window the registration
left unregistered (71), box PSNR: the refiner everywhere 21.54 dB, kept everywhere 20.73, ``auto`` 22.62 (GMSD 0.161
against 0.179 and 0.183); on the 67 of an earlier run, a choice knowing the truth reached 23.03 and every threshold
from 1.3 to 2.5 beat both fixed choices. The measure assumes the mask's edge lies on the artifact's edge, as in the
benchmark's synthetic cases: a mask painted with a wide margin of clean pixels makes every artifact look mild (then
the input is kept), and a flat fill with a faint seam looks mild too. Measured with the 71 masks grown by 8 px:
64 of 69 unregistered windows kept, 21.43 dB against 21.73 kept everywhere and 19.16 synthesised everywhere; the
largest edge contrast over eroded copies of the mask (0-14 px) instead measured 21.73 there but 22.73 against 22.92
on the masks as drawn, so the edge itself decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from refalign.mask_ops import dilate, distance_to
from refalign.transfer.colour import ColourFit, fit_colour, guided_filter
from refalign.transfer.register import image_scale, mean_colour_error, ring_width
from refalign.transfer.source import paste_hole
from refalign.windows import mask_bbox

#: Pixels on each side of the mask's edge that form the edge band.
EDGE_BAND = 1.5
#: An artifact whose edge contrast is below this looks mild: keeping it beats the refiner's fill (the sweep on the 67
#: unregistered development cases of the earlier run: 1.3 → 22.17 dB, 1.6 → 22.62, 2.0 → 22.44, 2.5 → 22.03; the
#: refiner everywhere 21.66, kept everywhere 20.61).
MILD_EDGE_CONTRAST = 1.6
#: Floor of the ring's mean gradient (grey levels per pixel), so a flat ring does not turn faint edges into a break.
FLAT_FLOOR = 1.0
#: Radius (px at a 512-px image, scaled with :func:`~refalign.transfer.register.image_scale`) of the guided filter's
#: boxes in :func:`recolour_to_source`, its ridge (grey levels squared) and the radius its maps are fitted at (the
#: image subsampled by ``RESTROKE_RADIUS // RESTROKE_FIT_RADIUS``, He & Sun's fast guided filter).
RESTROKE_RADIUS, RESTROKE_EPS, RESTROKE_FIT_RADIUS = 64, 25.0, 16
#: A window ``auto`` would keep whose :func:`interior_detail` is below this looks blurred: its own pixels guide a
#: synthesis instead (module docstring). Over the windows ``auto`` keeps in the development sets and three more
#: crossview sets (80 of 192 unregistered windows): lost-detail artifacts measure 0.13-0.46, garbled prints
#: 0.26-1.05, colour drifts 0.66 or more, shuffled tiles 0.54 or more (one window at 0.54, which the guided
#: synthesis improved by 1.1 dB).
BLURRED_DETAIL = 0.6
#: A window ``auto`` would synthesise takes the synthesis guided by its own pixels when that leaves at most this
#: multiple of the plain synthesis's colour step at the mask's edge (:func:`edge_step`; module docstring). Over the
#: windows ``auto`` synthesises in the same sets (112) the ratio is 1.70-5.3 on hallucinated content, 1.39-4.1 on
#: shuffled tiles (one window at 1.39, guided 1.5 dB worse), 0.83-1.75 on garbled prints, 1.06-1.88 on blurs and
#: 0.97-3.3 on colour drifts (two guided, +4 and +7 dB); chosen on the development sets alone.
GUIDED_STEP_RATIO = 1.4
#: Gaussian scale (px at a 512-px image, scaled with :func:`~refalign.transfer.register.image_scale`) of the further
#: blur :func:`interior_blur` applies, and the depth (px, scaled alike) from the mask's edge beyond which it reads the
#: hole's interior — about twice the scale and one more, so the colour step at the edge does not leak in.
BLUR_PROBE_SIGMA, BLUR_PROBE_DEPTH = 2.0, 5.0
#: A window ``auto`` would synthesise whose :func:`interior_blur` is at least this is synthesised with its own pixels
#: as the guide. Over the 140 windows of seven development sets that ``auto`` synthesised unguided (session 24, 512
#: px): 32 of the 36 smeared and lost-detail ones read 0.85 or more (the others 0.61-0.848), every hallucinated,
#: shuffled, garbled and colour-drift one 0.84 or less but one (a hallucinated tile of a sloth's fur, 0.90). Any bar
#: from 0.85 to 0.89 guides the same windows; 0.90 would leave out that tile and four smeared windows (the smeared
#: set 0.15 dB lower).
BLURRED_INTERIOR = 0.85
#: Pixels inside the mask's edge (up to this distance, at a 512-px image; scaled like the registration's score)
#: paired with the nearest pixel outside it.
PAIR_DEPTH = 3.0
#: Growth of the hole (px at a 512-px image, scaled) whose edge pairs give the natural colour step between true
#: pixels.
NATURAL_GAP = 4
#: Floor of the natural step (grey levels), so a flat surrounding does not turn JPEG noise into a jump.
STEP_FLOOR = 1.0
#: Smallest colour step at the edge, as a multiple of the natural step: the colours do jump there (a mask drawn
#: along a region's own border in a textured photo meets steps of 0.9-1.4 that a map fitted to them "removes"; 1.4
#: until session 16, when a poop emoji's drift at 1.395 (+12.5 dB recoloured) and a tinted patch of a dog's fur at
#: 1.39 were kept, and 1.35 recolours no more of the clean photos' 3689 masks — 1.3 would recolour 3 more).
MIN_STEP = 1.35
#: Largest colour step left by the recolouring, as a multiple of the natural step: the edge is then about as
#: continuous as true content (colour drifts leave 0.49–1.66; 1.3, until session 16, missed several of them).
MAX_RECOLOURED_STEP = 1.7
#: Least part of the step the recolouring must remove, in natural steps.
MIN_STEP_REMOVED = 0.5
#: Largest round-trip error (the colour map, then the map fitted the other way), in natural steps: a recolouring is
#: undone by its inverse, while a map fitted to noisy pairs of unchanged colours shrinks them towards their mean.
MAX_ROUND_TRIP = 0.8
#: ... or this share of the step, where that is more: a map that undoes a large recolouring misses by more in absolute
#: terms (a bright green drift on a candle's wooden lid, step 13.8, came back within 0.83; a dog's, step 7.8, within
#: 1.11, +9.8 dB recoloured); on the clean photos' 3689 masks it recolours none more.
ROUND_TRIP_SHARE = 0.15
#: Least share of the outside colours' spread (mean distance to their mean) that the map must explain: the pairs
#: carry structure, not two flat colours meeting at the mask's edge (a patch masked along its own border, whose
#: true colour its surroundings cannot tell; colour drifts explain 0.42–0.84, half was the bar until session 16).
MIN_EXPLAINED = 0.4
#: Least share of the outside colours' spread that the colour map across a region's edge explains for the region's
#: colours to follow its surroundings' (:attr:`EdgeColours.follows_surroundings`) where the recolouring itself is
#: refused. On the windows ``auto`` rebuilt from texture on eleven development sets (session 25, 279 windows), the
#: median share by kind: colour drift 0.34, lost detail 0.36, garbled 0.23, hallucinated 0.07, shuffled 0.05, smeared
#: 0.06 — content from elsewhere does not follow, a drifted or blurred feature does.
FOLLOWS_EXPLAINED = 0.3
#: A map explaining less, down to this share, still says the region's colours follow its surroundings' where its
#: inverse undoes it within :data:`FOLLOWS_ROUND_TRIP` natural steps (session 27: between 0.2 and 0.3 of the spread
#: on twenty development sets, 25 of 28 colour drifts come back that close and 2 of 15 windows of other kinds).
FOLLOWS_EXPLAINED_INVERTIBLE = 0.2
#: Largest round trip (:attr:`EdgeColours.round_trip`, natural steps) for :data:`FOLLOWS_EXPLAINED_INVERTIBLE`.
FOLLOWS_ROUND_TRIP = 1.7
#: Colour presence (:func:`colours_present`): colours fall in bins of this many grey levels per channel, and a bin is
#: present in a photo holding at least :data:`PRESENCE_SHARE` of its pixels (about 200 of a megapixel).
PRESENCE_BIN, PRESENCE_SHARE = 16, 2e-4
#: Pixels of the reference read for :func:`colours_present` at most (a regular subsample beyond).
PRESENCE_PIXELS = 1_000_000
#: The reference confirms a recolouring the ring alone refuses (:attr:`ReferenceColours.confirms`) when at most this
#: share of the damaged colours appear in it and at least :data:`PRESENT_IN_REFERENCE` of the recoloured ones do: the
#: object never shows the damaged colours and shows the ones the map gives. Over the 253 distinct windows of 26 sets
#: whose map removes the edge step but whose recolouring is refused (session 27), colour drifts' damaged colours
#: appear at 0.18 on average, garbled, shuffled and hallucinated content's at 0.59-0.88; on the development photos'
#: clean masks along colour regions, each with every other photo of its object as the reference, 3 of 2074 pairs.
ABSENT_FROM_REFERENCE = 0.1
PRESENT_IN_REFERENCE = 0.6


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Sobel (3×3) gradient magnitude of the grey image, in grey levels per pixel (``(H, W)`` float32)."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(gx, gy) / 8.0  # a unit ramp gives 8 with Sobel 3×3


def _require_partial(hole: np.ndarray, caller: str) -> None:
    """Raise ``ValueError`` (naming ``caller``) unless ``hole`` marks some pixels and leaves some known: every
    measure here compares the region with its surroundings."""
    if not hole.any() or hole.all():
        raise ValueError(f"{caller}: the hole must mark some pixels and leave some known")


def _around_box(hole: np.ndarray, reach: float) -> tuple[int, int, int, int]:
    """The hole's box grown by ``reach`` px and 2 more (a 3×3 gradient's support, a distance transform's last step),
    clipped to the image: what a measure reaching that far from the hole reads."""
    return mask_bbox(hole, margin=int(np.ceil(reach)) + 2)


def _around(image: np.ndarray, hole: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` and ``hole`` cropped to :func:`_around_box`: the same numbers as on the whole image at a fraction
    of the cost (a 4096² photo's gradients took 0.7 s per measure)."""
    t, l, b, r = _around_box(hole, reach)
    return image[t:b, l:r], hole[t:b, l:r]


def edge_contrast(image: np.ndarray, hole: np.ndarray) -> float:
    """How sharply the region ``hole`` (``(H, W)`` bool) breaks from its surroundings in ``image`` (``(H, W, 3)``):
    the mean gradient magnitude within :data:`EDGE_BAND` px of the mask's edge (both sides) over the mean on the
    ring of known pixels around it (:func:`~refalign.transfer.register.ring_width`, floored at
    :data:`FLAT_FLOOR`). About 1: the strokes run on across the edge; well above: a seam."""
    _require_partial(hole, "edge_contrast")
    width = ring_width(hole)
    image, hole = _around(image, hole, width)
    outside, inside = distance_to(hole), distance_to(~hole)
    band = ((outside > 0) & (outside <= EDGE_BAND)) | (hole & (inside <= EDGE_BAND))
    ring = ~hole & (outside > EDGE_BAND) & (outside <= width)
    grad = gradient_magnitude(image)
    around = max(float(grad[ring].mean()) if ring.any() else 0.0, FLAT_FLOOR)
    return float(grad[band].mean()) / around


def interior_detail(image: np.ndarray, hole: np.ndarray) -> float:
    """How much detail the region ``hole`` (``(H, W)`` bool) of ``image`` (``(H, W, 3)``) holds against its
    surroundings: the mean gradient magnitude inside it over the mean on the ring of known pixels around it
    (:func:`~refalign.transfer.register.ring_width`, floored at :data:`FLAT_FLOOR`). About 1 or more: as detailed as
    its surroundings; well below: a blur (or content from a flat part of the photo)."""
    _require_partial(hole, "interior_detail")
    width = ring_width(hole)
    image, hole = _around(image, hole, width)
    ring = ~hole & (distance_to(hole) <= width)
    grad = gradient_magnitude(image)
    return float(grad[hole].mean()) / max(float(grad[ring].mean()) if ring.any() else 0.0, FLAT_FLOOR)


def interior_blur(image: np.ndarray, hole: np.ndarray) -> float:
    """Whether the region ``hole`` (``(H, W)`` bool) of ``image`` (``(H, W, 3)``) is a blur: the share of the
    gradient energy of its interior (pixels deeper than :data:`BLUR_PROBE_DEPTH` from its edge) that survives a
    further Gaussian blur of :data:`BLUR_PROBE_SIGMA` (both scaled with the image), the energy before the blur
    floored at :data:`FLAT_FLOOR`. Near 1: smooth structure, as a blur leaves it; well below: detail finer than the
    probe (texture, print, noise) — or nothing at all, as in a flat patch. 0 when no pixel is that deep."""
    _require_partial(hole, "interior_blur")
    scale = image_scale(image.shape[:2])
    sigma, depth = BLUR_PROBE_SIGMA * scale, BLUR_PROBE_DEPTH * scale
    image, hole = _around(image, hole, 3 * sigma)
    inner = hole & (distance_to(~hole) > depth)
    if not inner.any():
        return 0.0
    sharp = gradient_magnitude(image)[inner].mean()
    blurred = gradient_magnitude(cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma))[inner].mean()
    return float(blurred) / max(float(sharp), FLAT_FLOOR)


def looks_mild(image: np.ndarray, hole: np.ndarray, threshold: float = MILD_EDGE_CONTRAST) -> bool:
    """Whether the artifact in ``hole`` looks continuous with its surroundings (:func:`edge_contrast` below
    ``threshold``): then keeping the input is the better guess for an unregistered window."""
    return mildness(image, hole, threshold)[0]


def mildness(image: np.ndarray, hole: np.ndarray, threshold: float = MILD_EDGE_CONTRAST) -> tuple[bool, float]:
    """:func:`looks_mild` and the :func:`edge_contrast` it decided on (for reports)."""
    contrast = edge_contrast(image, hole)
    return contrast < threshold, contrast


@dataclass(frozen=True)
class EdgeColours:
    """The colour step across a region's edge (module docstring), in natural steps (the step between true pixels the
    same distance apart): ``step`` as it is, ``recoloured_step`` after the ``colour`` map fitted on the pairs across
    the edge, and ``round_trip`` — how far the pairs' inside colours land from themselves through that map and then
    the map fitted the other way; ``explained`` the share of the outside colours' spread the map accounts for."""

    step: float
    recoloured_step: float
    round_trip: float
    explained: float
    colour: ColourFit

    @property
    def recolours(self) -> bool:
        """Whether the region is its surroundings' content in other colours: a step of at least :data:`MIN_STEP`
        that the map brings down to at most :data:`MAX_RECOLOURED_STEP`, removing at least :data:`MIN_STEP_REMOVED`,
        and that is undone by its inverse within :data:`MAX_ROUND_TRIP` or :data:`ROUND_TRIP_SHARE` of the step (all
        in natural steps); the map explains at least :data:`MIN_EXPLAINED` of the outside colours' spread."""
        return self.recolours_below(MAX_RECOLOURED_STEP)

    def recolours_below(self, bar: float) -> bool:
        """:attr:`recolours` with the step left by the map held below ``bar`` (natural steps) instead of
        :data:`MAX_RECOLOURED_STEP` — e.g. the step a registered paste leaves (:func:`edge_step`)."""
        return self.removes_step(bar) and self.round_trip <= self.round_trip_bar and self.explained >= MIN_EXPLAINED

    @property
    def round_trip_bar(self) -> float:
        """The largest round trip a recolouring may leave: :data:`MAX_ROUND_TRIP`, or :data:`ROUND_TRIP_SHARE` of
        the step where that is more (natural steps)."""
        return max(MAX_ROUND_TRIP, ROUND_TRIP_SHARE * self.step)

    def unconfirmed(self) -> str:
        """What keeps the ring from confirming a map that removes the step (:meth:`removes_step`), in words with
        their numbers (for reports): its round trip, its explained share, or both."""
        bar = self.round_trip_bar
        said = [f"the map fitted the other way undoes it within {self.round_trip:.2f} > {bar:.2f} natural steps"
                if self.round_trip > bar else "",
                f"it explains {self.explained:.2f} < {MIN_EXPLAINED} of the surroundings' spread"
                if self.explained < MIN_EXPLAINED else ""]
        return "; ".join(x for x in said if x)

    def removes_step(self, bar: float = MAX_RECOLOURED_STEP) -> bool:
        """The edge half of :meth:`recolours_below`: a real jump (:data:`MIN_STEP`) that the map brings below ``bar``,
        removing at least :data:`MIN_STEP_REMOVED` — whether the map is a recolouring or shrinks colours towards
        their mean is the round trip's and the explained share's to say, or the reference's
        (:func:`reference_colours`)."""
        return (self.step >= MIN_STEP and self.recoloured_step <= bar
                and self.step - self.recoloured_step >= MIN_STEP_REMOVED)

    @property
    def follows_surroundings(self) -> bool:
        """Whether the region's colours are a map of its surroundings' though the recolouring may be refused: the map
        fitted across the edge explains at least :data:`FOLLOWS_EXPLAINED` of the outside colours' spread, or at
        least :data:`FOLLOWS_EXPLAINED_INVERTIBLE` with a round trip within :data:`FOLLOWS_ROUND_TRIP` (a map
        between the region's colours and its surroundings', not one that shrinks them towards their mean). A feature
        whose colours drifted to ones the ring lacks, or whose detail was lost, still follows; content from
        elsewhere (shuffled, hallucinated) does not."""
        return self.explained >= FOLLOWS_EXPLAINED or (self.explained >= FOLLOWS_EXPLAINED_INVERTIBLE
                                                       and self.round_trip <= FOLLOWS_ROUND_TRIP)

    def describe_following(self) -> str:
        """Why :attr:`follows_surroundings` holds, with its numbers (for reports)."""
        said = f"the colour map across its edge explains {self.explained:.2f} of their spread"
        if self.explained >= FOLLOWS_EXPLAINED:
            return f"{said} >= {FOLLOWS_EXPLAINED}"
        return (f"{said} >= {FOLLOWS_EXPLAINED_INVERTIBLE} and the map fitted the other way undoes it within "
                f"{self.round_trip:.2f} <= {FOLLOWS_ROUND_TRIP} natural steps")

    def describe(self) -> str:
        return (f"colour step at its edge {self.step:.2f}x that around it, {self.recoloured_step:.2f}x after "
                f"recolouring (round trip {self.round_trip:.2f})")


def edge_pairs(image: np.ndarray, hole: np.ndarray, depth: float = PAIR_DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """``(inside, outside)`` colours ``(N, 3)`` float32: every pixel of ``hole`` within ``depth`` px of its edge and
    the nearest pixel outside it (OpenCV's labelled distance transform)."""
    dist, labels = cv2.distanceTransformWithLabels(hole.astype(np.uint8), cv2.DIST_L2, 5,
                                                   labelType=cv2.DIST_LABEL_PIXEL)
    outside = ~hole
    nearest = np.zeros(int(labels.max()) + 1, np.int64)
    nearest[labels[outside]] = np.flatnonzero(outside)
    inner = hole & (dist <= depth)
    return (image[inner].astype(np.float32),
            image.reshape(-1, image.shape[-1])[nearest[labels[inner]]].astype(np.float32))


def _edge_reach(scale: float) -> tuple[float, int]:
    """``(depth, gap)``: :data:`PAIR_DEPTH` and :data:`NATURAL_GAP` on an image ``scale`` times the development
    cases' size (:func:`~refalign.transfer.register.image_scale`); the edge measures read ``depth + gap`` px around
    the hole."""
    return PAIR_DEPTH * scale, int(round(NATURAL_GAP * scale))


def _edge(image: np.ndarray, hole: np.ndarray, caller: str,
          scale: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """``(inside, outside, natural)``: the pairs across the edge of ``hole`` (:func:`edge_pairs`, to the scaled
    :data:`PAIR_DEPTH`) in the hole's neighbourhood, and the natural step — the same pairs across the edge of the
    hole grown by the scaled :data:`NATURAL_GAP` (floored at :data:`STEP_FLOOR`; ``nan`` when the grown hole leaves
    no true pixels). ``scale``: the whole image's (default: ``image``'s own, which may be a crop of it)."""
    _require_partial(hole, caller)
    depth, gap = _edge_reach(image_scale(image.shape[:2]) if scale is None else scale)
    crop, sub = _around(image, hole, gap + depth)
    inside, outside = edge_pairs(crop, sub, depth)
    grown = dilate(sub, gap)
    if grown.all():  # a hole that nearly fills the image: no true pixels to measure the natural step on
        return inside, outside, float("nan")
    return inside, outside, max(mean_colour_error(*edge_pairs(crop, grown, depth)), STEP_FLOOR)


def edge_step(image: np.ndarray, hole: np.ndarray) -> float:
    """The colour step across the edge of ``hole`` in ``image``, in natural steps (:attr:`EdgeColours.step`): how
    far a filled region continues its surroundings (about 1: as true content does)."""
    inside, outside, natural = _edge(image, hole, "edge_step")
    return mean_colour_error(inside, outside) / natural


def edge_step_after(image: np.ndarray, hole: np.ndarray, pixels: np.ndarray, valid: np.ndarray | None,
                    box: tuple[int, int, int, int]) -> float:
    """:func:`edge_step` of ``image`` once ``pixels`` over ``box`` are pasted inside ``hole``
    (:func:`~refalign.transfer.source.paste_hole`; ``valid`` as there), ``image`` untouched: the paste goes into a
    copy of the hole's neighbourhood only (with ``box``), not of the whole image — the same number, without a
    300 MB copy per call at the 100-MP input limit."""
    scale = image_scale(image.shape[:2])
    depth, gap = _edge_reach(scale)
    t, l, b, r = _around_box(hole, gap + depth)  # what _edge reads, and the box
    t, l, b, r = min(t, box[0]), min(l, box[1]), max(b, box[2]), max(r, box[3])
    crop, sub = image[t:b, l:r].copy(), hole[t:b, l:r]
    paste_hole(crop, pixels, sub, (box[0] - t, box[1] - l, box[2] - t, box[3] - l), valid)
    inside, outside, natural = _edge(crop, sub, "edge_step_after", scale)
    return mean_colour_error(inside, outside) / natural


@dataclass(frozen=True)
class EdgeSteps:
    """The colour step at a hole's edge (:func:`edge_step`, natural steps) with a paste in it and as damaged."""

    paste: float
    damaged: float

    @property
    def breaks(self) -> bool:
        """The paste continues the surroundings less well than the damaged pixels do (module docstring)."""
        return self.paste > self.damaged

    def describe(self) -> str:
        return f"edge step {self.paste:.2f}x pasted against {self.damaged:.2f}x as damaged"


def paste_edge_steps(image: np.ndarray, hole: np.ndarray, pixels: np.ndarray, valid: np.ndarray | None,
                     box: tuple[int, int, int, int]) -> EdgeSteps:
    """How far a paste (``pixels`` over ``box``, as :func:`edge_step_after` takes it) and the damaged pixels of
    ``image`` each continue the hole's surroundings (module docstring, "A paste that breaks the edge")."""
    return EdgeSteps(edge_step_after(image, hole, pixels, valid, box), edge_step(image, hole))


def edge_colours(image: np.ndarray, hole: np.ndarray) -> EdgeColours:
    """The colour step across the edge of ``hole`` in ``image`` and the colour map that removes it (module
    docstring). Works on the hole's neighbourhood only. A hole that leaves no true pixels beyond the natural step's
    gap gets ``nan`` measures, which never recolour."""
    inside, outside, natural = _edge(image, hole, "edge_colours")
    colour = fit_colour(inside, outside)
    if not np.isfinite(natural):
        return EdgeColours(float("nan"), float("nan"), float("nan"), float("nan"), colour)
    mapped = colour.apply(inside)
    back = fit_colour(outside, inside).apply(mapped)
    left = mean_colour_error(mapped, outside)
    spread = mean_colour_error(outside, np.broadcast_to(outside.mean(axis=0), outside.shape))
    return EdgeColours(mean_colour_error(inside, outside) / natural, left / natural,
                       mean_colour_error(back, inside) / natural, 1.0 - left / max(spread, 1e-6), colour)


def recolour_to_source(image: np.ndarray, hole: np.ndarray, source: np.ndarray,
                       box: tuple[int, int, int, int]) -> np.ndarray:
    """The damaged pixels of ``hole`` carried into the colours of ``source`` — the hole's pixels from a synthesis,
    ``(h, w, 3)`` over ``box`` (image coordinates, holding the whole hole) — as ``(h, w, 3)`` float32 over ``box``:
    the hole's pixels replaced, the others ``source``'s.

    The guided filter (:func:`~refalign.transfer.colour.guided_filter`, boxes of :data:`RESTROKE_RADIUS` px scaled
    with the image, ridge :data:`RESTROKE_EPS`) of the composite — ``source`` inside the hole, the image outside —
    with the image itself as the guide, over the hole's neighbourhood grown by two radii. Each box's colour-affine
    map takes the known colours to themselves and the damaged colours to the synthesis's there, so the strokes of
    an artifact whose colours drifted come back in place, in the colours the synthesis found for the region (module
    docstring, "Colours the surroundings lack")."""
    t, l, b, r = box
    if source.shape[:2] != (b - t, r - l) or hole[t:b, l:r].sum() != hole.sum():
        raise ValueError(f"recolour_to_source: the source must cover the whole hole over box {box}, got "
                         f"{source.shape[:2]}")
    scale = image_scale(image.shape[:2])
    radius = max(1, round(RESTROKE_RADIUS * scale))
    ct, cl, cb, cr = mask_bbox(hole, margin=2 * radius)
    ct, cl, cb, cr = min(ct, t), min(cl, l), max(cb, b), max(cr, r)  # and all of the source's box
    composite = image[ct:cb, cl:cr].astype(np.float32)
    sub = hole[t:b, l:r]
    composite[t - ct:b - ct, l - cl:r - cl][sub] = source[sub]
    mapped = guided_filter(image[ct:cb, cl:cr], composite, radius, RESTROKE_EPS,
                           step=max(1, radius // RESTROKE_FIT_RADIUS))
    out = np.asarray(source, np.float32).copy()
    out[sub] = mapped[t - ct:b - ct, l - cl:r - cl][sub]
    return np.clip(out, 0, 255)


def strokes_follow(edge: EdgeColours, blur: float, detail: float, mild: bool) -> bool:
    """Whether ``auto`` keeps a region's own strokes in a synthesis's colours (:func:`recolour_to_source`): it breaks
    from its surroundings (not ``mild``, :func:`looks_mild`: a mild region is kept, or rebuilt around its pixels
    when blurred), its colours follow its surroundings' (``edge``, :attr:`EdgeColours.follows_surroundings`; content
    from elsewhere does not) and its strokes are not a blur — neither a blurred interior (``blur``,
    :func:`interior_blur` under :data:`BLURRED_INTERIOR`) nor one with less detail than its surroundings
    (``detail``, :func:`interior_detail` under :data:`BLURRED_DETAIL`: lost detail measured 0.18–0.53 where colour
    drifts measured 0.68 or more, docs/results.md). Such a region is not recoloured on the reference's word."""
    return not mild and edge.follows_surroundings and blur < BLURRED_INTERIOR and detail >= BLURRED_DETAIL


def colours_present(colours: np.ndarray, photo: np.ndarray) -> float:
    """The share of ``colours`` (``(N, 3)``) that ``photo`` (``(H, W, 3)``) shows: a colour counts when its bin
    (:data:`PRESENCE_BIN` levels per channel) holds at least :data:`PRESENCE_SHARE` of the photo's pixels (read at
    most :data:`PRESENCE_PIXELS` of them, regularly subsampled). 0 for no colours."""
    return _present(colours, _bin_shares(photo))


def _bin_key(colours: np.ndarray) -> np.ndarray:
    """Each colour's bin (:data:`PRESENCE_BIN` levels per channel) as one index, for ``(N, 3+)`` colours."""
    bins = 256 // PRESENCE_BIN
    q = np.clip(colours, 0, 255).astype(np.int64) // PRESENCE_BIN
    return (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]


def _bin_shares(photo: np.ndarray) -> np.ndarray:
    """The share of ``photo``'s pixels in each colour bin (:func:`_bin_key`), read at most :data:`PRESENCE_PIXELS`
    of them (regularly subsampled)."""
    stride = max(1, int(np.ceil(np.sqrt(photo.shape[0] * photo.shape[1] / PRESENCE_PIXELS))))
    pixels = photo[::stride, ::stride].reshape(-1, photo.shape[-1])
    return np.bincount(_bin_key(pixels), minlength=(256 // PRESENCE_BIN) ** 3) / len(pixels)


def _present(colours: np.ndarray, shares: np.ndarray) -> float:
    """:func:`colours_present` on a photo's :func:`_bin_shares`."""
    return float((shares[_bin_key(colours)] >= PRESENCE_SHARE).mean()) if len(colours) else 0.0


@dataclass(frozen=True)
class ReferenceColours:
    """How far the reference shows a region's colours (:func:`colours_present`): ``damaged`` as they are,
    ``recoloured`` through the colour map across the region's edge."""

    damaged: float
    recoloured: float

    @property
    def confirms(self) -> bool:
        """The recolouring is the object's: the reference shows at most :data:`ABSENT_FROM_REFERENCE` of the damaged
        colours and at least :data:`PRESENT_IN_REFERENCE` of the recoloured ones."""
        return self.damaged <= ABSENT_FROM_REFERENCE and self.recoloured >= PRESENT_IN_REFERENCE

    def describe(self) -> str:
        return (f"the reference shows {self.damaged:.2f} of its colours (<= {ABSENT_FROM_REFERENCE}) and "
                f"{self.recoloured:.2f} of them recoloured (>= {PRESENT_IN_REFERENCE})")


def reference_colours(image: np.ndarray, hole: np.ndarray, colour: ColourFit,
                      reference: np.ndarray) -> ReferenceColours:
    """:class:`ReferenceColours` of the region ``hole`` of ``image`` through ``colour`` (the map across its edge,
    :attr:`EdgeColours.colour`) in ``reference``: where the ring alone cannot tell a recolouring from a map that
    shrinks colours (two flat colours at the edge), a drift to colours the object never shows, mapped to ones it
    does, is one; a label masked along its own border, whose colours the object shows, is not."""
    damaged, shares = image[hole].astype(np.float32), _bin_shares(reference)  # the reference's bins, read once
    return ReferenceColours(_present(damaged, shares), _present(colour.apply(damaged), shares))


def recolour_region(image: np.ndarray, hole: np.ndarray,
                    colour: ColourFit) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``(pixels, box)``: the image's pixels over the hole's bounding box ``box`` (``(top, left, bottom, right)``)
    through ``colour`` (float32), for :func:`~refalign.transfer.source.paste_hole`."""
    t, l, b, r = box = mask_bbox(hole)
    return colour.apply(image[t:b, l:r].astype(np.float32)), box
