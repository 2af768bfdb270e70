"""Region-level synthesis (DESIGN §6, issue 15 part 4): where the region of the reference that matches a hole is
known — the user's ``--reference-mask`` or the alignment stage's ``M*`` — but no geometric model fits it, the hole
is synthesised from that region's patches.

The method is exemplar-based completion by **PatchMatch** (Barnes, Shechtman, Finkelstein & Goldman, SIGGRAPH 2009)
inside the multiscale **EM voting** of Wexler, Shechtman & Irani (PAMI 2007, "Space-time completion of video"):

* the target is the hole's box with its known ring (:func:`~refalign.transfer.register.colour_box`); every patch
  that overlaps the hole must resemble some patch of the source region, its known pixels included — the ring
  constrains what may continue into the hole;
* E-step: a nearest-neighbour field (NNF) from each such target patch to a source patch, found by PatchMatch
  (propagation of good offsets to neighbours, then random search at exponentially shrinking radii);
* M-step: each hole pixel becomes the weighted mean of the source pixels the overlapping patches put on it, weights
  ``exp(−d / 2σ²)`` of the patch distance ``d`` with ``σ²`` its 75th percentile (Wexler et al. §3.2);
* coarse to fine: solved first at the coarsest level of a pyramid, the NNF and the estimate upsampled as the
  start of the next level.

The synthesis supplies the hole's texture; its structure — the band coarser than :data:`STRUCTURE_SIGMA` — comes
from a Telea fill (:func:`structure_and_texture`, after Bertalmío et al. 2003): a patch from another photo has the
object's texture but rarely the exact low frequencies of this hole, which the surroundings predict better.

**Guided by the damaged pixels** (issue 15 part 6; ``guided=True``): a blurred or warped artifact still shows where
its strokes are, only not their detail. Its own pixels then start the coarsest level instead of the Telea fill — at
that scale a blur is nearly the truth, so the first nearest-neighbour field picks source patches that agree with
them and the finer levels inherit it — and give the band coarser than :data:`STRUCTURE_SIGMA` in place of Telea's:
the damaged pixels at a lower weight than the known ones, which stay constraints. The synthesised finer band is a
guess at the lost detail and enters at :data:`GUIDED_DETAIL`. Which windows get it is the pipeline's
``unregistered="auto"`` decision (:mod:`refalign.transfer.damage`).

Before synthesis the region's colours are carried into the image's: with no pixel correspondence, only a
distribution match is available — histogram specification (:func:`~refalign.transfer.colour.fit_quantiles`) of the
reference's ring around the region onto the image's ring around the hole (:func:`region_colour`), the same kind of
content on both sides.

Everything is vectorised over the patches of a level (each source patch is one row of a bank); colours are
float32 in [0, 255]; boxes are ``(top, left, bottom, right)``, bottom/right exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from refalign.fill import telea_fill
from refalign.mask_ops import dilate, distance_to
from refalign.transfer.colour import ColourFit, QuantileFit, fit_quantiles
from refalign.transfer.register import colour_area, colour_box, colour_weights, ring_width, square_around
from refalign.windows import mask_bbox

#: Patch side (odd), in pixels of every pyramid level.
PATCH = 7
#: The coarsest level keeps the hole's shorter side at least this many patches wide.
COARSE_PATCHES = 2.0
MAX_LEVELS = 5
#: EM iterations at the coarsest level and at every finer one; PatchMatch iterations per EM iteration at the
#: coarsest level (one at finer ones, whose random search reaches :data:`FINE_SEARCH` patches around the match).
EM_COARSE, EM_FINE = 6, 2
PM_STEPS = 2
FINE_SEARCH = 3
#: Gaussian scale (pixels) splitting structure from texture (:func:`structure_and_texture`): the hole's band coarser
#: than this comes from a Telea fill of it, the finer band from the synthesis. On the development benchmark's 68
#: unregistered other-photo windows (box PSNR / GMSD / detail ratio): synthesis alone 20.51 / 0.200 / 0.46,
#: split at σ = 2: 21.80 / 0.177 / 0.44, at σ = 4: 21.90 / 0.177 / 0.43 (Telea 21.68 / 0.187 / 0.22).
STRUCTURE_SIGMA = 4.0
#: Weight of the synthesised finer band in a guided synthesis (:func:`structure_and_texture`). That band is a guess
#: at the detail a blur lost, only partly aligned with the truth's: with correlation ρ and energies ``E_t`` (truth)
#: and ``E_s`` (synthesis) a weight ``w`` leaves the squared error ``E_t + w²E_s − 2wρ√(E_t E_s)``, least at
#: ``w = ρ√(E_t / E_s)`` — below 1, so a guess is shrunk towards the blur. On the development sets' guided windows
#: (unregistered, box PSNR / GMSD / detail ratio): lost detail 22.12 / 0.194 / 0.39 at weight 1, 22.35 / 0.200 / 0.25
#: at 0.5, kept as they were 22.29 / 0.225 / 0.17; garbled 24.38 / 0.149 and 24.55 / 0.149, kept 24.27 / 0.142.
GUIDED_DETAIL = 0.5
#: Largest source read around a region, pixels a side at the image's scale (memory: one bank row per patch).
MAX_SOURCE_SIDE = 384
#: Holes whose box is longer than this (pixels) are synthesised at a reduced scale and the texture upsampled
#: (time and memory grow with the hole's area; 3 of the 71 other-photo development holes are longer).
MAX_HOLE_SIDE = 192
#: Fewest source patch centres a region must offer; fewer and synthesis is refused.
MIN_SOURCE_CENTRES = 16
#: The source's scale relative to the image when none is given. The same scale: on the development benchmark's
#: unregistered other-photo windows the ratio of the areas of ``M*`` and the hole (clipped to 0.5-2) measured worse
#: (box PSNR 20.39 vs 20.51 dB over 68 windows) — a token-level ``M*`` is coarser than the hole it matches.
SCALE = 1.0


class SynthesisError(ValueError):
    """The region cannot be synthesised from (empty, or too small to offer patches); the caller may fall back."""


@dataclass(frozen=True)
class Synthesis:
    """A synthesised hole: ``pixels`` (``(h, w, 3)`` float32 in [0, 255]) over ``box`` in image coordinates (hole
    pixels synthesised, the others the image's), the ``colour`` map applied to the source, the ``scale`` of the
    source relative to the image, the number of ``levels`` of the pyramid and whether the hole's own pixels
    ``guided`` it (module docstring)."""

    pixels: np.ndarray
    box: tuple[int, int, int, int]
    colour: QuantileFit | ColourFit
    scale: float
    levels: int
    guided: bool = False


# --------------------------------------------------------------------------------------------- source and colour


def region_colour(image: np.ndarray, hole: np.ndarray, reference: np.ndarray, region: np.ndarray
                  ) -> QuantileFit | ColourFit:
    """The colour map reference → image for synthesis from ``region``: histogram specification (Gonzalez & Woods
    §3.3.2, :func:`~refalign.transfer.colour.fit_quantiles`) of the reference's ring around ``region`` onto the
    image's ring around ``hole`` (each :func:`~refalign.transfer.register.colour_area` wide, nearer pixels weighing
    more). Rings, not the region itself: the image's hole is unknown, so the known pixels on both sides are the
    surroundings of the same content. Identity when either ring has fewer than 12 pixels."""
    sides = []
    for pixels, mask in ((reference, region), (image, hole)):
        t, l, b, r = colour_box(mask)
        sub = mask[t:b, l:r]
        dist, width = distance_to(sub), ring_width(mask)
        area = colour_area(np.ones_like(sub), sub, dist, width)
        sides.append((pixels[t:b, l:r][area], colour_weights(dist[area], width)))
    (src, ws), (dst, wd) = sides
    if len(src) < 12 or len(dst) < 12:
        return ColourFit.identity()
    return fit_quantiles(src, dst, ws, wd)


def source_patches(reference: np.ndarray, region: np.ndarray, colour: QuantileFit | ColourFit, scale: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The source of synthesis: the reference around ``region``, colour-mapped and resized by ``1 / scale`` to the
    image's scale, ``(pixels (hs, ws, 3) float32, centres (hs, ws) bool)``; ``centres`` marks where a source patch
    may be centred: ``region`` grown by its ring width (a token-level region is coarse, and the content next to the
    match is the object's too). At most :data:`MAX_SOURCE_SIDE` pixels a side (at the image's scale), centred on
    the region's centroid: a large painted region costs no more than that."""
    allowed = dilate(region, int(round(ring_width(region))))
    t, l, b, r = mask_bbox(allowed, margin=PATCH)
    side = int(MAX_SOURCE_SIDE * scale)
    if b - t > side or r - l > side:
        ys, xs = np.nonzero(region)
        t, l, b, r = square_around((int(ys.mean()), int(xs.mean()), int(ys.mean()) + 1, int(xs.mean()) + 1), side,
                                   region.shape)
    pixels = colour.apply(reference[t:b, l:r]).astype(np.float32)
    allowed = allowed[t:b, l:r]
    if abs(scale - 1.0) > 1e-3:
        size = (max(PATCH, round((r - l) / scale)), max(PATCH, round((b - t) / scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR)
        allowed = cv2.resize(allowed.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.5
    return pixels, allowed


# --------------------------------------------------------------------------------------------- one pyramid level


def _valid_centres(allowed: np.ndarray, radius: int) -> np.ndarray:
    """Centres whose whole patch lies inside the source and that ``allowed`` marks."""
    out = np.zeros_like(allowed)
    h, w = allowed.shape
    if h > 2 * radius and w > 2 * radius:
        out[radius:h - radius, radius:w - radius] = allowed[radius:h - radius, radius:w - radius]
    return out


@dataclass
class Level:
    """One pyramid level of the problem: the current ``target`` estimate (``(h, w, 3)``; known pixels exact), its
    ``known`` mask, the ``source`` and its valid patch ``centres``; ``ys, xs``: the target patch centres being
    solved (every pixel within a patch radius of the hole); ``ny, nx, cost``: their NNF and patch distances."""

    target: np.ndarray
    known: np.ndarray
    source: np.ndarray
    centres: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    bank: np.ndarray
    rows: np.ndarray
    ny: np.ndarray | None = None
    nx: np.ndarray | None = None
    cost: np.ndarray | None = None

    @staticmethod
    def build(target: np.ndarray, known: np.ndarray, source: np.ndarray, allowed: np.ndarray, radius: int
              ) -> "Level":
        """The level's problem; ``bank`` holds every valid source patch as one row ``(K, P · 3)`` and ``rows``
        maps a source pixel (flat index) to its row (-1: not a valid centre), so a patch distance reads one
        contiguous row instead of ``P`` scattered pixels."""
        ys, xs = np.nonzero(dilate(~known, radius))
        source = source.astype(np.float32)
        centres = _valid_centres(allowed, radius)
        cy, cx = np.nonzero(centres)
        dy, dx = patch_offsets(radius)
        bank = source[cy[:, None] + dy[None], cx[:, None] + dx[None]].reshape(len(cy), -1)
        bank = np.clip(np.round(bank), 0, 255).astype(np.uint8)  # a quarter of the memory; distances barely move
        rows = np.full(centres.size, -1, np.int64)
        rows[cy * centres.shape[1] + cx] = np.arange(len(cy))
        return Level(target.astype(np.float32), known, source, centres, ys, xs, bank, rows)


def patch_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(dy, dx)`` offsets of a ``(2r+1)²`` patch, row-major."""
    d = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    return dy.ravel(), dx.ravel()


def target_patches(level: Level, radius: int) -> np.ndarray:
    """The target patches at the level's centres, ``(N, P · 3)`` float32 (row-major pixels, then channels); beyond
    the target's border the nearest pixel stands in (edge replication)."""
    h, w = level.known.shape
    dy, dx = patch_offsets(radius)
    py = np.clip(level.ys[:, None] + dy[None], 0, h - 1)
    px = np.clip(level.xs[:, None] + dx[None], 0, w - 1)
    return level.target[py, px].reshape(len(level.ys), -1)


def patch_distances(patches: np.ndarray, bank: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean squared colour difference per pixel (summed over channels) between target ``patches`` ``(N, P · 3)``
    and the source patches ``bank[rows]`` (:attr:`Level.bank`) — the PatchMatch patch distance (SSD)."""
    diff = patches - bank[rows]
    return np.einsum("ij,ij->i", diff, diff) * (3.0 / patches.shape[1])


def _improve(level: Level, patches: np.ndarray, cy: np.ndarray, cx: np.ndarray, which: np.ndarray | None = None
             ) -> None:
    """Try candidate centres ``(cy, cx)`` for the target centres ``which`` (indices; ``None``: all); keep those
    that are valid and closer."""
    hs, ws = level.centres.shape
    ok = (cy >= 0) & (cy < hs) & (cx >= 0) & (cx < ws)
    ok[ok] = level.centres[cy[ok], cx[ok]]
    if not ok.any():
        return
    if which is None and ok.all():
        idx, sub = slice(None), patches
    else:
        idx = (np.arange(len(level.ys)) if which is None else which)[ok]
        sub, cy, cx = patches[idx], cy[ok], cx[ok]
    d = patch_distances(sub, level.bank, level.rows[cy * ws + cx])
    better = d < level.cost[idx]
    idx = np.arange(len(level.ys))[idx][better]
    level.ny[idx], level.nx[idx], level.cost[idx] = cy[better], cx[better], d[better]


def propagate(level: Level, patches: np.ndarray, step: int) -> None:
    """PatchMatch propagation (Barnes et al. 2009 §3.2), all centres at once: each centre tries its four
    neighbours' offsets at distance ``step`` (``step`` > 1 spreads good offsets faster, as jump flooding does)."""
    h, w = level.known.shape
    index = np.full((h, w), -1, np.int64)
    index[level.ys, level.xs] = np.arange(len(level.ys))
    for ey, ex in ((step, 0), (-step, 0), (0, step), (0, -step)):
        qy, qx = level.ys - ey, level.xs - ex
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        which = np.nonzero(inside)[0]
        nb = index[qy[which], qx[which]]
        which, nb = which[nb >= 0], nb[nb >= 0]
        _improve(level, patches, level.ny[nb] + ey, level.nx[nb] + ex, which)


def random_search(level: Level, patches: np.ndarray, rng: np.random.Generator, max_radius: float, alpha: float = 0.5
                  ) -> None:
    """PatchMatch random search (Barnes et al. 2009 §3.2): candidates uniformly within radii ``w·αⁱ`` around each
    centre's current match, from ``max_radius`` (``w``) down to one pixel; plus one uniform draw over all valid
    centres (so a level escapes a poor start)."""
    hs, ws = level.centres.shape
    n = len(level.ys)
    everywhere = np.flatnonzero(level.centres)
    pick = everywhere[rng.integers(0, len(everywhere), n)]
    _improve(level, patches, pick // ws, pick % ws)
    r = float(max_radius)
    while r >= 1.0:
        k = int(r)
        cy = level.ny + rng.integers(-k, k + 1, n)
        cx = level.nx + rng.integers(-k, k + 1, n)
        _improve(level, patches, cy, cx)
        r *= alpha


def vote(level: Level, radius: int) -> np.ndarray:
    """The M-step of Wexler et al. (2007, §3.2): every hole pixel becomes the weighted mean of the source pixels
    that the patches overlapping it map onto it, weights ``exp(−d / 2σ²)`` with ``σ²`` the 75th percentile of the
    patch distances ``d``; known pixels keep their values. Returns the new target ``(h, w, 3)``."""
    h, w = level.known.shape
    dy, dx = patch_offsets(radius)
    sigma2 = max(float(np.percentile(level.cost, 75)), 1e-3)
    wc = np.exp(-level.cost / (2.0 * sigma2)).astype(np.float64) + 1e-12
    py, px = level.ys[:, None] + dy[None], level.xs[:, None] + dx[None]
    inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    flat = (py * w + px)[inside]
    vals = level.source[level.ny[:, None] + dy[None], level.nx[:, None] + dx[None]][inside]
    wts = np.broadcast_to(wc[:, None], inside.shape)[inside]
    den = np.bincount(flat, wts, minlength=h * w)
    out = level.target.copy()
    hole = ~level.known
    for c in range(3):
        num = np.bincount(flat, wts * vals[:, c], minlength=h * w)
        out[..., c][hole] = (num / np.maximum(den, 1e-12)).reshape(h, w)[hole]
    return out


def solve_level(level: Level, radius: int, em_steps: int, pm_steps: int, max_radius: float,
                rng: np.random.Generator) -> None:
    """EM iterations at one level: ``pm_steps`` rounds of PatchMatch (propagation at shrinking steps, random search
    from ``max_radius``) against the current estimate, then :func:`vote`."""
    for _ in range(em_steps):
        patches = target_patches(level, radius)
        level.cost = patch_distances(patches, level.bank, level.rows[level.ny * level.centres.shape[1] + level.nx])
        for _ in range(pm_steps):
            for step in (4, 2, 1):
                propagate(level, patches, step)
            random_search(level, patches, rng, max_radius)
        level.target = vote(level, radius)


# --------------------------------------------------------------------------------------------- coarse to fine


def _random_field(level: Level, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ws = level.centres.shape[1]
    everywhere = np.flatnonzero(level.centres)
    pick = everywhere[rng.integers(0, len(everywhere), len(level.ys))]
    return pick // ws, pick % ws


def upsample_field(coarse: Level, fine: Level, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The fine level's starting NNF from the coarse one's: ``n_fine(p) = s · n_coarse(⌊p / s⌋) + (p mod s)`` with
    ``s`` the ratio of the sources' sizes (≈ 2); centres the coarse field does not cover, or that land on an
    invalid source centre, start at random."""
    h, w = coarse.known.shape
    sy = fine.centres.shape[0] / coarse.centres.shape[0]
    sx = fine.centres.shape[1] / coarse.centres.shape[1]
    fy = fine.target.shape[0] / h
    fx = fine.target.shape[1] / w
    index = np.full((h, w), -1, np.int64)
    index[coarse.ys, coarse.xs] = np.arange(len(coarse.ys))
    qy = np.clip((fine.ys / fy).astype(int), 0, h - 1)
    qx = np.clip((fine.xs / fx).astype(int), 0, w - 1)
    q = index[qy, qx]
    ny, nx = _random_field(fine, rng)
    have = q >= 0
    cy = np.round(coarse.ny[q[have]] * sy + (fine.ys[have] - qy[have] * fy)).astype(np.int64)
    cx = np.round(coarse.nx[q[have]] * sx + (fine.xs[have] - qx[have] * fx)).astype(np.int64)
    hs, ws = fine.centres.shape
    ok = (cy >= 0) & (cy < hs) & (cx >= 0) & (cx < ws)
    ok[ok] = fine.centres[cy[ok], cx[ok]]
    sel = np.nonzero(have)[0][ok]
    ny[sel], nx[sel] = cy[ok], cx[ok]
    return ny, nx


def pyramid_levels(hole: np.ndarray, source_shape: tuple[int, int], patch: int = PATCH) -> int:
    """How many levels: halve while the hole's shorter side keeps :data:`COARSE_PATCHES` patches and the source
    keeps four patches, at most :data:`MAX_LEVELS`."""
    t, l, b, r = mask_bbox(hole)
    side = min(b - t, r - l) / (COARSE_PATCHES * patch)
    src = min(source_shape) / (4.0 * patch)
    n = int(np.floor(np.log2(max(min(side, src), 1.0)))) + 1
    return int(np.clip(n, 1, MAX_LEVELS))


def _down(pixels: np.ndarray, factor: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def pyramid(target: np.ndarray, known: np.ndarray, source: np.ndarray, allowed: np.ndarray, *, patch: int = PATCH
            ) -> tuple[Level, ...]:
    """The levels of a synthesis problem, finest first: ``target`` (``(h, w, 3)``; ``known`` ``(h, w)``
    bool, false = hole) and the patches of ``source`` (``(hs, ws, 3)``) centred where ``allowed``, halved per level
    (:func:`pyramid_levels`). Unsolved: one pyramid serves several solves (:func:`solve_pyramid` copies what it
    changes). Raises :class:`SynthesisError` when a level's source offers fewer than :data:`MIN_SOURCE_CENTRES`
    patches."""
    radius = patch // 2
    stack = []
    for i in range(pyramid_levels(~known, source.shape[:2], patch)):
        f = 2 ** i
        tgt, src = (target, source) if i == 0 else (_down(target, f), _down(source, f))
        kn = known if i == 0 else _down(known.astype(np.float32), f) >= 0.999
        al = allowed if i == 0 else _down(allowed.astype(np.float32), f) >= 0.5
        stack.append(Level.build(tgt, kn, src, al, radius))
    if not all(lv.centres.sum() >= MIN_SOURCE_CENTRES for lv in stack):
        raise SynthesisError(f"synthesis: the source region offers fewer than {MIN_SOURCE_CENTRES} patches of "
                             f"{patch}x{patch} pixels; paint a larger matching region")
    return tuple(stack)


def solve_pyramid(levels: tuple[Level, ...], *, seed: int = 0, patch: int = PATCH, guided: bool = False
                  ) -> np.ndarray:
    """Multiscale EM (Wexler et al. 2007) with PatchMatch (Barnes et al. 2009) over the :func:`pyramid`
    ``levels`` (left unchanged). The coarsest level starts from a Telea fill of the hole — or, ``guided``, from the
    target's own hole pixels (module docstring) — and a random field. Returns the completed finest target (float32;
    known pixels exact). Deterministic for a ``seed``."""
    radius = patch // 2
    rng = np.random.default_rng(seed)
    stack = [replace(lv, target=lv.target.copy()) for lv in levels]
    coarse = stack[-1]
    if not guided:
        start = telea_fill(np.clip(np.round(coarse.target), 0, 255).astype(np.uint8), ~coarse.known)
        coarse.target[~coarse.known] = start[~coarse.known]
    coarse.ny, coarse.nx = _random_field(coarse, rng)
    solve_level(coarse, radius, EM_COARSE, PM_STEPS, max(coarse.centres.shape), rng)
    for i in range(len(stack) - 2, -1, -1):
        fine, prev = stack[i], stack[i + 1]
        h, w = fine.known.shape
        up = cv2.resize(prev.target, (w, h), interpolation=cv2.INTER_LINEAR)
        fine.target[~fine.known] = up[~fine.known]
        fine.ny, fine.nx = upsample_field(prev, fine, rng)
        # the upsampled field is already near its match: the random search looks a few patches around it
        solve_level(fine, radius, EM_FINE, 1, FINE_SEARCH * patch, rng)
    return np.clip(stack[0].target, 0, 255)


def structure_and_texture(crop: np.ndarray, hole: np.ndarray, synthesized: np.ndarray,
                          sigma: float = STRUCTURE_SIGMA, *, guided: bool = False) -> np.ndarray:
    """The hole's structure from a classical fill, its texture from the synthesis (Bertalmío, Vese, Sapiro & Osher
    2003, "Simultaneous structure and texture image inpainting", with a Gaussian split):
    ``G_σ * base + (s − G_σ * s)`` inside ``hole``, ``crop`` elsewhere, ``base`` a Telea fill of the hole — or,
    ``guided``, the crop's own hole pixels, the finer band then weighted by :data:`GUIDED_DETAIL` (module
    docstring). A synthesis from another photo carries plausible texture but not the exact low frequencies, which
    the surroundings' smooth continuation (or a blurred artifact) estimates better; the sum keeps both.
    ``sigma <= 0`` returns the synthesis itself."""
    if sigma <= 0:
        return synthesized
    if guided:
        base = np.asarray(crop, np.float32)
    else:
        base = telea_fill(np.clip(np.round(crop), 0, 255).astype(np.uint8), hole).astype(np.float32)
    syn = np.asarray(synthesized, np.float32)
    weight = GUIDED_DETAIL if guided else 1.0
    split = cv2.GaussianBlur(base, (0, 0), sigma) + weight * (syn - cv2.GaussianBlur(syn, (0, 0), sigma))
    out = np.asarray(crop, np.float32).copy()
    out[hole] = split[hole]
    return np.clip(out, 0, 255)


@dataclass(frozen=True)
class HoleProblem:
    """A hole prepared for synthesis (:func:`prepare_hole`): the image's ``crop`` over ``box`` (float32) and its
    ``hole`` there, the ``colour`` map and ``scale`` of the source, the :func:`pyramid` ``levels`` — at ``size``
    (width, height) when the hole is synthesised at a reduced scale, ``None`` at the crop's own — and the
    ``structure_sigma`` of :func:`structure_and_texture`. Solved by :func:`solve_hole`, as often as wanted."""

    crop: np.ndarray
    hole: np.ndarray
    box: tuple[int, int, int, int]
    colour: QuantileFit | ColourFit
    scale: float
    levels: tuple[Level, ...]
    size: tuple[int, int] | None
    structure_sigma: float


def prepare_hole(image: np.ndarray, hole: np.ndarray, reference: np.ndarray, region: np.ndarray, *,
                 scale: float = SCALE, structure_sigma: float = STRUCTURE_SIGMA) -> HoleProblem:
    """:func:`synthesize_hole` up to the solve: the region's colours mapped onto the image's
    (:func:`region_colour`), its patches resized by ``1 / scale`` (:func:`source_patches`) and the :func:`pyramid`
    over the hole's :func:`~refalign.transfer.register.colour_box` — at a reduced scale when the hole is longer
    than :data:`MAX_HOLE_SIDE`. Raises as :func:`synthesize_hole` does."""
    image = np.asarray(image)
    reference = np.asarray(reference)
    for name, arr in (("image", image), ("reference", reference)):
        if not np.isfinite(arr).all():
            raise ValueError(f"synthesis: the {name} holds non-finite values")
    if not hole.any() or not region.any():
        raise SynthesisError("synthesis: " + ("the hole" if not hole.any() else "the source region") + " is empty")
    colour = region_colour(image, hole, reference, region)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"synthesis: scale must be a positive number, got {scale}")
    source, allowed = source_patches(reference, region, colour, scale)
    t, l, b, r = box = colour_box(hole)
    crop, sub = image[t:b, l:r].astype(np.float32), hole[t:b, l:r]
    ht, hl, hb, hr = mask_bbox(sub)
    shrink = MAX_HOLE_SIDE / max(hb - ht, hr - hl)
    if shrink >= 1.0:
        levels = pyramid(crop, ~sub, source, allowed)
        return HoleProblem(crop, sub, box, colour, scale, levels, None, structure_sigma)
    # a large hole: synthesised at a reduced scale, its texture upsampled (the finest texture is lost)
    size = (max(1, round((r - l) * shrink)), max(1, round((b - t) * shrink)))
    small_source = (max(PATCH, round(source.shape[1] * shrink)), max(PATCH, round(source.shape[0] * shrink)))
    known = cv2.resize((~sub).astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.999
    levels = pyramid(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), known,
                     cv2.resize(source, small_source, interpolation=cv2.INTER_AREA),
                     cv2.resize(allowed.astype(np.float32), small_source, interpolation=cv2.INTER_LINEAR) >= 0.5)
    return HoleProblem(crop, sub, box, colour, scale, levels, size, structure_sigma)


def solve_hole(problem: HoleProblem, *, seed: int = 0, guided: bool = False) -> Synthesis:
    """The :class:`HoleProblem` solved (:func:`solve_pyramid`), ``guided`` by the hole's own pixels or not, with
    its band coarser than ``problem.structure_sigma`` from a Telea fill or, ``guided``, from those pixels
    (:func:`structure_and_texture`). Deterministic for a ``seed``."""
    crop, sub = problem.crop, problem.hole
    solved = solve_pyramid(problem.levels, seed=seed, guided=guided)
    if problem.size is None:
        pixels = solved
    else:
        t, l, b, r = problem.box
        pixels = crop.copy()
        pixels[sub] = cv2.resize(solved, (r - l, b - t), interpolation=cv2.INTER_CUBIC)[sub]
    return Synthesis(structure_and_texture(crop, sub, pixels, problem.structure_sigma, guided=guided), problem.box,
                     problem.colour, problem.scale, len(problem.levels), guided)


def synthesize_hole(image: np.ndarray, hole: np.ndarray, reference: np.ndarray, region: np.ndarray, *,
                    seed: int = 0, scale: float = SCALE, structure_sigma: float = STRUCTURE_SIGMA,
                    guided: bool = False) -> Synthesis:
    """Synthesise ``hole`` (``(H, W)`` bool) of ``image`` (``(H, W, 3)``) from ``region`` (``(H_r, W_r)`` bool) of
    ``reference``: the region's colours mapped onto the image's (:func:`region_colour`), resized by ``1 / scale``
    (``scale``: the reference's size relative to the image's, default :data:`SCALE`), then solved
    (:func:`solve_pyramid`) over the hole's :func:`~refalign.transfer.register.colour_box`, its band coarser than
    ``structure_sigma`` replaced by a Telea fill's (:func:`structure_and_texture`; 0: the synthesis alone).
    ``guided``: the hole's own (damaged) pixels start the synthesis and give that band instead (module docstring).
    Paste the result with :func:`~refalign.transfer.source.paste_hole` (hole pixels only). :func:`prepare_hole` and
    :func:`solve_hole` split it, so one preparation serves both a plain and a guided solve (and the guided one also
    weights the finer band by :data:`GUIDED_DETAIL`).

    Raises ``ValueError`` (nothing computed) for non-finite inputs or a bad ``scale``, and its subclass
    :class:`SynthesisError` for an empty hole or region, or a region too small to offer patches."""
    problem = prepare_hole(image, hole, reference, region, scale=scale, structure_sigma=structure_sigma)
    return solve_hole(problem, seed=seed, guided=guided)
