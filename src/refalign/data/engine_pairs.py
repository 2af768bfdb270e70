"""Training samples sourced by the transfer engine (issue 15 part 5): the refiner as the harmonizer of the
reference's own pixels, and real-photo correspondences for the auxiliary eq. 5 loss.

One *attempt* takes a photo of an object, a random artifact mask ``G`` (§3.4) and a reference: another photo of the
same object (a real viewpoint change) or the photo itself under a random perspective and colour change (the
benchmark's warp kind, :func:`perspective_pair`). The engine registers the artifact's neighbourhood exactly as the
refine path does (:func:`refalign.transfer.register.register_hole`); when it accepts a model, the attempt gives

* a **harmonize** sample (refinement mode): the zoom-in window whose hole holds the engine's transferred pixels
  (:func:`refalign.transfer.source.registered_source`: as the refine path pastes them, dense flow included) as
  ``source`` — what the model's masked-image input becomes
  with ``refinement.harmonize`` — with the engine's real errors (registration, colour map, resampling), the region
  crop of the reference as the encoder's input, the guidance warped through the registered matrix, and the clean
  window as the target;
* an **alignment** sample: the whole reference object, with the hole pushed through the registered matrix as the
  correspondence — the eq. 5 target measured on real photo pairs instead of synthesised.

The engine registers the photo with the hole's content removed (a Telea fill), as an artifact would leave it —
registration accepts a model only where the hole differs from the warped reference clearly more than the ring does
(:data:`refalign.transfer.register.MIN_DAMAGE_RATIO`), which an undamaged hole never does. The transfer and the
target are the clean photo's. Attempts whose registration fails give nothing (as at inference, where such windows
go to the refiner alone).
The pool is computed once per ``(photos, count, seed, spec)`` and cached as ``.npz`` (an attempt costs 0.1–3 s).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from refalign.data.masks import sample_artifact_mask
from refalign.data.perturb import perspective_copy, project_mask, random_homography
from refalign.data.samples import MODES, ObjectPhoto, SampleSpec, guidance_through, make_reference, window_sample
from refalign.fill import telea_fill
from refalign.guidance import empty_guidance
from refalign.mask_ops import dilate
from refalign.transfer.register import WarpScore, register_hole
from refalign.transfer.source import paste_hole, registered_source
from refalign.windows import crop, mask_bbox, resize_image, resize_mask, window_to_source

logger = logging.getLogger(__name__)

#: Part of the pool's cache key: raised whenever the attempts would give other samples (2: the hole Telea-filled
#: before registration; 3: the registration's direct-search fallback; 4: the transferred pixels moved by the dense
#: flow where it shifts them, as the refine path does; 5: the best models refined by ECC, the ring's colour residual
#: capped; 6: the paste's colour map corrected on shift-tolerant pairs; 7: the accepted model polished by ECC at full
#: resolution), so a stale cache is never read.
POOL_VERSION = 7

def perspective_pair(image: np.ndarray, obj: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(reference, reference_object_mask)``: the photo under a random perspective and a mild colour change
    (:func:`~refalign.data.perturb.random_homography`, :func:`~refalign.data.perturb.perspective_copy`) — the
    benchmark's warp kind applied to a training photo (white outside the frame)."""
    ref, ref_obj, _ = perspective_copy(image, obj, random_homography(*image.shape[:2], rng), rng)
    return ref, ref_obj


def _no_source(resolution: int) -> dict:
    return {"source": np.zeros((resolution, resolution, 3), np.uint8),
            "source_valid": np.zeros((resolution, resolution), bool)}


def harmonize_sample(photo: ObjectPhoto, hole: np.ndarray, reference: np.ndarray, matrix: np.ndarray,
                     score: WarpScore, rng: np.random.Generator, spec: SampleSpec) -> dict | None:
    """The refinement-mode sample of one accepted registration (module docstring; ``score`` its ring score: the
    colour map and the correlation the flow correction reads); ``None`` when the transfer covers none of the hole."""
    pixels, valid, box, _ = registered_source(photo.image, hole, reference, matrix, score)
    sourced = photo.image.copy()
    pasted = paste_hole(sourced, pixels, hole, box, valid)
    if not pasted.any():
        return None
    projected = project_mask(hole, matrix, reference.shape[:2])
    if not projected.any():
        return None
    image, mask, win = window_sample(photo, hole, spec.refine_context, spec)
    t, l, b, r = mask_bbox(hole)
    region = dilate(projected, int(round(rng.uniform(0, spec.refine_dilate_max) * max(b - t, r - l))))
    ref, (corr, keep), to_crop = make_reference(reference, region, [projected, region], spec.reference_size, None,
                                                spec)
    return {"image": image, "mask": mask, "reference": ref, "correspondence": corr, "mode": MODES["refinement"],
            **guidance_through(ref, keep, to_crop @ matrix @ window_to_source(win, spec.resolution), spec),
            "source": resize_image(crop(sourced, win), spec.resolution),
            "source_valid": resize_mask(crop(pasted, win), spec.resolution, conservative=True)}


def alignment_pair_sample(photo: ObjectPhoto, hole: np.ndarray, reference: np.ndarray, ref_obj: np.ndarray,
                          matrix: np.ndarray, rng: np.random.Generator, spec: SampleSpec) -> dict | None:
    """The alignment-mode sample of one accepted registration: the whole reference object and the engine's
    correspondence (the hole pushed through ``matrix``) as the eq. 5 target; ``None`` when it misses the object."""
    projected = project_mask(hole, matrix, reference.shape[:2]) & ref_obj
    if not projected.any():
        return None
    ref, (corr, keep), to_crop = make_reference(reference, ref_obj, [projected, ref_obj], spec.reference_size, None,
                                                spec)
    if not corr.any():
        return None
    image, mask, win = window_sample(photo, hole, spec.align_context, spec)
    if rng.random() < spec.warp_drop:
        guidance = dict(zip(("warped", "warp_valid"), empty_guidance(spec.resolution, spec.fill)))
    else:
        guidance = guidance_through(ref, keep, to_crop @ matrix @ window_to_source(win, spec.resolution), spec)
    return {"image": image, "mask": mask, "reference": ref, "correspondence": corr, "mode": MODES["alignment"],
            **guidance, **_no_source(spec.resolution)}


def engine_attempt(photos: list[ObjectPhoto], groups: list[list[int]], index: int, seed: int,
                   spec: SampleSpec, other_view_share: float = 0.5) -> list[dict]:
    """Attempt ``index`` (seeded by ``(seed, index)``): a photo, an artifact mask, a reference (another photo of
    the object with probability ``other_view_share`` when the object has one, else :func:`perspective_pair`), the
    engine's registration, and the samples of an accepted one (none otherwise)."""
    rng = np.random.default_rng((seed, index))
    group = groups[int(rng.integers(len(groups)))]
    pick = [int(i) for i in rng.permutation(group)]
    photo = photos[pick[0]]
    if len(pick) > 1 and rng.random() < other_view_share:
        other = photos[pick[1]]
        reference, ref_obj = other.image, other.mask
    else:
        reference, ref_obj = perspective_pair(photo.image, photo.mask, rng)
    hole = sample_artifact_mask(photo.mask, rng, spec.masks, photo.detail)
    # the engine sees the hole as an artifact leaves it, its content gone (Telea): registration accepts a model only
    # where the hole differs from the reference more than the ring does, which the clean photo's hole never does
    reg = register_hole(telea_fill(photo.image, hole), hole, reference)
    if not reg.ok:
        return []
    made = [harmonize_sample(photo, hole, reference, reg.matrix, reg.best.score, rng, spec),
            alignment_pair_sample(photo, hole, reference, ref_obj, reg.matrix, rng, spec)]
    return [m for m in made if m is not None]


def _cache_key(photos: list[ObjectPhoto], attempts: int, seed: int, spec: SampleSpec) -> str:
    h = hashlib.sha1()
    key = {"version": POOL_VERSION, "attempts": attempts, "seed": seed, "spec": asdict(spec)}
    h.update(json.dumps(key, sort_keys=True, default=str).encode())
    for p in photos:
        h.update(p.name.encode())
        h.update(np.ascontiguousarray(p.image[::7, ::7]).tobytes())
    return h.hexdigest()[:16]


def _save_pool(path: Path, pool: list[dict]) -> None:
    arrays = {f"{i}/{k}": np.asarray(v) for i, s in enumerate(pool) for k, v in s.items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, count=np.int64(len(pool)), **arrays)
    tmp.replace(path)


def _load_pool(path: Path) -> list[dict]:
    with np.load(path) as data:
        pool: list[dict] = [{} for _ in range(int(data["count"]))]
        for key in data.files:
            if key != "count":
                i, name = key.split("/", 1)
                value = data[key]
                pool[int(i)][name] = int(value) if name == "mode" else value
    return pool


def engine_pool(photos: list[ObjectPhoto], attempts: int, seed: int, spec: SampleSpec,
                cache_dir: str | Path | None = None, progress: bool = False) -> list[dict]:
    """The samples of ``attempts`` engine attempts over ``photos`` (objects with at least one photo; other views
    come from photos sharing a ``group``), cached in ``cache_dir`` when given."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(photos):
        groups.setdefault(p.group, []).append(i)
    if not groups or attempts <= 0:
        return []
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"engine-pool-{_cache_key(photos, attempts, seed, spec)}.npz"
        if path.is_file():
            pool = _load_pool(path)
            logger.info("engine pool: %d samples from %s", len(pool), path)
            return pool
    pool: list[dict] = []
    order = list(groups.values())
    for i in tqdm(range(attempts), desc="engine pairs", disable=not progress):
        pool.extend(engine_attempt(photos, order, i, seed, spec))
    logger.info("engine pool: %d samples from %d attempts", len(pool), attempts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_pool(path, pool)
    return pool
