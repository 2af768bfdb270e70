"""The case folder (DESIGN §4): reading, validating and writing one benchmark case.

A case folder holds ``image.png`` (RGB, with artifacts), ``mask.png`` (L, 255 = artifact), ``reference.png`` (RGB)
and optionally ``reference_mask.png`` (object mask of the reference), ``target.png`` (clean ground truth, same size
as the image), ``correspondence.png`` (L, 255 = the region of the reference that matches the artifact) and
``meta.json`` (kind, artifact kind, reference kind, caption, ...). A benchmark is a folder of case folders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from refalign.errors import InputError
from refalign.files import (
    PathLike,
    load_image,
    load_mask,
    load_object_mask,
    load_reference,
    save_image,
    write_bytes_atomic,
)

IMAGE, MASK, REFERENCE = "image.png", "mask.png", "reference.png"
REFERENCE_MASK, TARGET, CORRESPONDENCE, META = "reference_mask.png", "target.png", "correspondence.png", "meta.json"
REQUIRED = (IMAGE, MASK, REFERENCE)


@dataclass
class Case:
    """One validated case. Images are ``(H, W, 3) uint8``; masks ``(H, W) bool``."""

    name: str
    path: Path
    image: np.ndarray
    mask: np.ndarray
    reference: np.ndarray
    reference_mask: np.ndarray | None = None
    target: np.ndarray | None = None
    correspondence: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_kind(self) -> str:
        return str(self.meta.get("reference_kind", "unknown"))

    @property
    def artifact_kind(self) -> str:
        return str(self.meta.get("artifact_kind", "unknown"))

    def matching_region(self) -> tuple[np.ndarray | None, str]:
        """Where the artifact's content lies in the reference, if the case knows: ``(region, source)`` — the exact
        ``correspondence.png`` (warp cases, ``"ground truth"``), else the mask pushed through the registration
        ``make-cases`` verified the case with (``meta.json`` ``local_homography``, crossview cases, ``"estimated
        (matched features)"``), else ``(None, "none")``."""
        if self.correspondence is not None and self.correspondence.any():
            return self.correspondence, "ground truth"
        hom = self.meta.get("local_homography")
        if hom is not None:
            h, w = self.reference.shape[:2]
            moved = cv2.warpPerspective(self.mask.astype(np.uint8), np.asarray(hom, np.float64), (w, h),
                                        flags=cv2.INTER_NEAREST) > 0
            if moved.any():
                return moved, "estimated (matched features)"
        return None, "none"


def is_case(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding at least ``image.png``."""
    path = Path(path)
    return path.is_dir() and (path / IMAGE).is_file()


def list_cases(root: PathLike) -> list[Path]:
    """The case folders of a benchmark folder, sorted by name (``root`` itself if it is one case)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such cases folder; give a folder of case folders (see `refalign make-cases`)")
    if is_case(root):
        return [root]
    cases = sorted(p for p in root.iterdir() if is_case(p))
    if not cases:
        raise InputError(
            f"{root}: holds no case folders (sub-folders with {IMAGE}, {MASK}, {REFERENCE}); build some with "
            "`refalign make-cases`"
        )
    return cases


def cases_with_truth(roots: list[PathLike], limit: int = 0) -> Iterator[Case]:
    """The cases of every benchmark folder in ``roots`` that hold a ``target.png``, read in order — the first
    ``limit`` case folders only when ``limit`` is positive (folders without a truth count towards it)."""
    paths = [p for root in roots for p in list_cases(root)]
    for path in paths[:limit] if limit > 0 else paths:
        case = read_case(path)
        if case.target is not None:
            yield case


def read_case(path: PathLike) -> Case:
    """Read and validate a case folder; a missing or bad file raises :class:`InputError` naming it."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a case folder; a case is a folder with {', '.join(REQUIRED)}")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise InputError(f"{path}: case is missing {', '.join(missing)}; a case folder needs {', '.join(REQUIRED)}")
    image = load_image(path / IMAGE)
    mask = load_mask(path / MASK, image.shape[:2], image_name=str(path / IMAGE))
    ref = load_reference(path / REFERENCE)
    ref_mask = ref.object_mask
    if (path / REFERENCE_MASK).is_file():
        ref_mask = load_object_mask(path / REFERENCE_MASK, ref.image.shape[:2], image_name=str(path / REFERENCE))
    target = None
    if (path / TARGET).is_file():
        target = load_image(path / TARGET, what="target")
        if target.shape != image.shape:
            raise InputError(
                f"{path / TARGET}: is {target.shape[1]}x{target.shape[0]} but {IMAGE} is "
                f"{image.shape[1]}x{image.shape[0]}; the target must be the clean version of the same image"
            )
    corr = None
    if (path / CORRESPONDENCE).is_file():
        corr = load_object_mask(path / CORRESPONDENCE, ref.image.shape[:2], image_name=str(path / REFERENCE))
    meta: dict[str, Any] = {}
    if (path / META).is_file():
        try:
            meta = json.loads((path / META).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path / META}: not valid JSON ({exc}); fix or delete it") from None
        if not isinstance(meta, dict):
            raise InputError(f"{path / META}: must hold a JSON object ({{...}}); fix or delete it")
    return Case(path.name, path, image, mask, ref.image, ref_mask, target, corr, meta)


def write_case(
    path: PathLike,
    *,
    image: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray,
    reference_mask: np.ndarray | None = None,
    target: np.ndarray | None = None,
    correspondence: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a case folder (each file atomically); the folder is created if needed."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_image(np.asarray(image, np.uint8), path / IMAGE)
    save_image(np.asarray(mask, bool), path / MASK)
    save_image(np.asarray(reference, np.uint8), path / REFERENCE)
    if reference_mask is not None:
        save_image(np.asarray(reference_mask, bool), path / REFERENCE_MASK)
    if target is not None:
        save_image(np.asarray(target, np.uint8), path / TARGET)
    if correspondence is not None:
        save_image(np.asarray(correspondence, bool), path / CORRESPONDENCE)
    if meta is not None:
        write_bytes_atomic(path / META, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return path
