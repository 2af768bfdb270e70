"""Dataset readers producing :class:`~refalign.data.samples.ObjectPhoto` lists, pre-loaded and resized once so
per-sample synthesis stays cheap.

* :func:`read_multiview_folder` — ``<root>/<object>/<photo>.jpg`` with optional ``<photo>.mask.png`` (stand-in
  for MVObj; ``shared/data/dreambooth-dev`` has this shape). Missing masks are derived by GrabCut from a centred
  box, and the reader logs which photos got one.
* :func:`read_coco` — COCO instance (polygons or RLE) or panoptic (PNG + ``segments_info``) annotations with
  their images (the public stand-in for the paper's Pixabay panoptic set).
* :func:`procedural_objects` (in :mod:`refalign.data.procedural`) — textured objects for tests and pre-training.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from refalign.data.masks import detail_map
from refalign.data.samples import ObjectPhoto
from refalign.errors import InputError
from refalign.files import load_image, load_object_mask
from refalign.mask_ops import grabcut_foreground
from refalign.windows import resize_image, resize_mask

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MASK_SUFFIX = ".mask.png"


def _load_rgb(path: Path, max_side: int) -> np.ndarray:

    image = load_image(path)
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = resize_image(image, (max(1, round(h * scale)), max(1, round(w * scale))))
    return image


def grabcut_mask(image: np.ndarray, margin: float = 0.08, iterations: int = 4, work_side: int = 160) -> np.ndarray:
    """A classical object mask: GrabCut initialised with a centred box (``margin`` of each side is background),
    run at ``work_side`` px for speed, largest connected component kept, resized back. Falls back to the box when
    GrabCut finds nothing."""
    full_hw = image.shape[:2]
    if max(full_hw) > work_side:
        s = work_side / max(full_hw)
        image = resize_image(image, (max(1, round(full_hw[0] * s)), max(1, round(full_hw[1] * s))))
    h, w = image.shape[:2]
    mask, rect = grabcut_foreground(image, margin=margin, iterations=iterations, seed=0)
    if mask.sum() < 0.02 * h * w:
        mask = np.zeros((h, w), bool)
        mask[rect[1] : rect[1] + rect[3], rect[0] : rect[0] + rect[2]] = True
    return resize_mask(mask, full_hw, conservative=False)


def _cache_path(cache_dir: Path | None, path: Path, max_side: int) -> Path | None:
    if cache_dir is None:
        return None
    st = path.stat()
    key = f"{path.parent.name}-{path.stem}-{max_side}-gc160-{st.st_size}-{int(st.st_mtime)}"
    return Path(cache_dir) / f"{key}.grabcut.png"


def read_multiview_folder(
    root: str | Path, *, max_side: int = 384, cache_dir: str | Path | None = None, with_detail: bool = True
) -> list[ObjectPhoto]:
    """Read ``<root>/<object>/<photo>.<ext>`` (+ optional ``<photo>.mask.png``, 255 = object). Photos are resized
    so their long side is at most ``max_side``. GrabCut masks are cached as PNGs in ``cache_dir`` when given."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder; expected <object>/<photo>.jpg sub-folders")
    photos: list[ObjectPhoto] = []
    derived: list[str] = []
    for obj_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(obj_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.endswith(MASK_SUFFIX):
                continue
            image = _load_rgb(path, max_side)
            mask_path = path.with_name(path.stem + MASK_SUFFIX)
            if mask_path.is_file():

                full = load_object_mask(mask_path, Image.open(path).size[::-1], image_name=str(path))
                mask, source = resize_mask(full, image.shape[:2], conservative=False), "file"
            else:
                cached = _cache_path(Path(cache_dir) if cache_dir else None, path, max_side)
                if cached is not None and cached.is_file():
                    mask = np.asarray(Image.open(cached)) > 127
                else:
                    mask = grabcut_mask(image)
                    if cached is not None:  # atomic: several training processes may share the cache
                        cached.parent.mkdir(parents=True, exist_ok=True)
                        tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.png")
                        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp)
                        os.replace(tmp, cached)
                source = "grabcut"
                derived.append(f"{obj_dir.name}/{path.name}")
            if not mask.any():
                logger.warning("%s: empty object mask, photo skipped", path)
                continue
            detail = detail_map(image) if with_detail else None
            photos.append(ObjectPhoto(image, mask, obj_dir.name, f"{obj_dir.name}/{path.stem}", source, detail))
    if not photos:
        raise InputError(f"{root}: no photos found; expected <object>/<photo>.jpg sub-folders")
    if derived:
        logger.info(
            "%s: %d of %d photos have no <photo>%s; their object masks were derived by GrabCut from a centred box",
            root, len(derived), len(photos), MASK_SUFFIX,
        )
    return photos


# ---------------------------------------------------------------------------------------------------------- COCO
def rle_decode(rle: dict) -> np.ndarray:
    """Decode a COCO RLE (``{"size": [h, w], "counts": list | str}``; column-major runs starting with zeros)."""
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = _rle_string_to_counts(counts.encode() if isinstance(counts, str) else counts)
    flat = np.zeros(h * w, bool)
    pos, val = 0, False
    for c in counts:
        if val:
            flat[pos : pos + c] = True
        pos += c
        val = not val
    return flat.reshape(w, h).T


def _rle_string_to_counts(s: bytes) -> list[int]:
    """COCO's compressed counts (pycocotools ``rleFrString``): 5-bit groups, continuation bit 0x20, sign bit 0x10,
    each count after the second stored as a difference to the count two before."""
    counts: list[int] = []
    i = 0
    while i < len(s):
        x, k, more = 0, 0, True
        while more:
            c = s[i] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _instance_mask(segm, h: int, w: int) -> np.ndarray:
    if isinstance(segm, list):
        mask = np.zeros((h, w), np.uint8)
        polys = [np.asarray(p, np.float64).reshape(-1, 2).round().astype(np.int32) for p in segm if len(p) >= 6]
        if polys:
            cv2.fillPoly(mask, polys, 1)
        return mask.astype(bool)
    return rle_decode(segm)


def read_coco(
    annotations: str | Path,
    image_dir: str | Path,
    *,
    max_side: int = 384,
    min_area: float = 0.02,
    max_objects: int | None = None,
    panoptic_dir: str | Path | None = None,
    with_detail: bool = True,
) -> list[ObjectPhoto]:
    """Objects of a COCO instance or panoptic annotation file whose mask covers at least ``min_area`` of the
    image (crowd regions skipped). Panoptic files (annotations with ``segments_info``) read their PNGs from
    ``panoptic_dir`` (default: the json's stem beside it), ids encoded as ``R + 256·G + 256²·B``."""
    annotations = Path(annotations)
    try:
        data = json.loads(annotations.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{annotations}: cannot read COCO annotations ({exc}); give a COCO json file") from None
    images = {im["id"]: im for im in data.get("images", [])}
    anns = data.get("annotations", [])
    panoptic = bool(anns) and "segments_info" in anns[0]
    by_image: dict[int, list] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    photos: list[ObjectPhoto] = []
    for image_id, items in by_image.items():
        info = images.get(image_id)
        if info is None:
            continue
        path = Path(image_dir) / info["file_name"]
        if not path.is_file():
            logger.warning("%s: image listed in %s is missing, skipped", path, annotations.name)
            continue
        h, w = info["height"], info["width"]
        if panoptic:
            seg_dir = Path(panoptic_dir) if panoptic_dir else annotations.with_suffix("")
            png = np.asarray(Image.open(seg_dir / items[0]["file_name"]).convert("RGB")).astype(np.int64)
            ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
            masks = [(ids == s["id"], s) for s in items[0]["segments_info"] if not s.get("iscrowd", 0)]
        else:
            masks = [(_instance_mask(a["segmentation"], h, w), a) for a in items if not a.get("iscrowd", 0)]
        masks = [(m, a) for m, a in masks if m.mean() >= min_area]
        if not masks:
            continue
        image = _load_rgb(path, max_side)
        detail = detail_map(image) if with_detail else None
        for m, a in masks:
            small = resize_mask(m, image.shape[:2], conservative=False)
            if small.any():
                name = f"{info['file_name']}#{a.get('id', len(photos))}"
                photos.append(ObjectPhoto(image, small, name, name, "annotation", detail))
        if max_objects is not None and len(photos) >= max_objects:
            break
    if not photos:
        raise InputError(f"{annotations}: no usable objects (area >= {min_area:.0%} of the image) with images in {image_dir}")
    return photos[:max_objects] if max_objects else photos
