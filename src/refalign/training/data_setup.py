"""From :class:`DataConfig` to cached photos, the training dataset and a held-back validation set."""

from __future__ import annotations

import logging
import zlib

from refalign.data.dataset import SynthesisDataset
from refalign.data.engine_pairs import engine_pool
from refalign.data.procedural import procedural_objects
from refalign.data.readers import read_coco, read_multiview_folder
from refalign.data.samples import ObjectPhoto, SampleSpec
from refalign.pipelines.config import RefalignConfig
from refalign.training.config import DataConfig

logger = logging.getLogger(__name__)


def load_photos(data: DataConfig) -> list[ObjectPhoto]:
    """Read every source once (resized to ``max_side``, masks and detail maps cached in memory)."""
    photos: list[ObjectPhoto] = []
    for src in data.sources:
        if src.kind == "engine":
            continue  # not photos to synthesise from: engine_samples reads its folder
        if src.kind == "procedural":
            part = procedural_objects(src.count, size=src.size, views=src.views, seed=src.seed)
        elif src.kind == "multiview":
            part = read_multiview_folder(src.path, max_side=data.max_side, cache_dir=data.cache_dir)
        else:
            part = read_coco(src.path, src.images, max_side=data.max_side, min_area=src.min_area, max_objects=src.max_objects)
        logger.info("data source %s%s: %d photos of %d objects", src.kind, f" {src.path}" if src.path else "",
                    len(part), len({p.group for p in part}))
        photos.extend(part * max(1, src.repeat))
    return photos


def engine_samples(data: DataConfig, spec: SampleSpec, held: set[str], progress: bool = False) -> list[dict]:
    """The pool of every ``engine`` source (:func:`refalign.data.engine_pairs.engine_pool`), from the photos of
    objects not held back for validation."""
    pool: list[dict] = []
    for src in data.sources:
        if src.kind != "engine":
            continue
        photos = [p for p in read_multiview_folder(src.path, max_side=data.max_side, cache_dir=data.cache_dir)
                  if p.group not in held]
        part = engine_pool(photos, src.count, src.seed, spec, data.cache_dir, progress=progress)
        logger.info("data source engine %s: %d samples from %d attempts", src.path, len(part), src.count)
        pool.extend(part)
    return pool


def split_holdout(photos: list[ObjectPhoto], fraction: float) -> tuple[list[ObjectPhoto], list[ObjectPhoto]]:
    """Hold back whole objects (groups) for validation, chosen by a hash of the group name (stable across runs
    and processes); at least one group when ``fraction > 0`` and there are two or more."""
    groups = sorted({p.group for p in photos})
    if fraction <= 0 or len(groups) < 2:
        return photos, []
    ranked = sorted(groups, key=lambda g: zlib.crc32(g.encode()))
    held = set(ranked[: max(1, int(round(fraction * len(groups))))])
    return [p for p in photos if p.group not in held], [p for p in photos if p.group in held]


def sample_spec(data: DataConfig, model: RefalignConfig, reference_size: int) -> SampleSpec:
    """How samples are synthesised: the randomness from ``data``; the geometry the pipeline shares (resolution,
    contexts, ``min_window``, fill grey) from the model's ``refalign.json`` (written by training:
    :meth:`~refalign.pipelines.config.RefalignConfig.set_window_geometry`)."""
    return SampleSpec(
        resolution=model.resolution,
        reference_size=reference_size,
        align_context=model.alignment.context,
        refine_context=model.refinement.context,
        min_window=model.refinement.min_window,
        fill=model.refinement.reference_fill,
        refine_dilate_max=data.refine_dilate_max,
        masks=data.masks,
        color=data.color,
        geometry=data.geometry,
        warp_drop=data.warp_drop,
        warp_jitter=data.warp_jitter,
    )


def build_datasets(data: DataConfig, model: RefalignConfig, reference_size: int, seed: int, progress: bool = False):
    """``(train_dataset, val_dataset | None)``; validation samples are alignment mode (they carry the exact
    correspondence that the mIoU is measured against) from held-back objects. Engine sources' samples
    (harmonize and real-pair alignment) are drawn at ``data.engine_ratio``, from the training objects only."""
    photos = load_photos(data)
    train, val = split_holdout(photos, data.val_holdout)
    spec = sample_spec(data, model, reference_size)
    pool = engine_samples(data, spec, {p.group for p in val}, progress)
    train_ds = SynthesisDataset(
        train, spec, alignment_ratio=data.alignment_ratio, multiview_ratio=data.multiview_ratio, seed=seed,
        pool=pool, pool_ratio=data.engine_ratio,
    )
    val_ds = None
    if val and data.val_samples > 0:
        val_ds = SynthesisDataset(val, spec, alignment_ratio=1.0, length=data.val_samples, seed=data.val_seed)
    logger.info("training on %d photos; validating on %d held-back photos", len(train), len(val))
    return train_ds, val_ds
