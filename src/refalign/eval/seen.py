"""Which benchmark objects trained a model (DESIGN §7: report objects the model never saw apart from the others).

A checkpoint's ``refalign.json`` records the training config that produced it, with its data sources
(``training.data.sources``) and the share of objects held back for validation (``training.data.val_holdout``).
A case's object was *seen* when the case's photo folder is a ``multiview`` training source — matched by the
folder's base name, since recorded paths may be relative to another working folder or reduced to names — and the
object was not among the held-back groups, which are recomputed with the trainer's own rule
(:func:`refalign.training.data_setup.split_holdout`: whole objects ranked by a CRC32 of their name over *all*
sources' groups). Procedural objects are named ``proc00000…`` (:func:`refalign.data.procedural.procedural_objects`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

logger = logging.getLogger(__name__)


@dataclass
class TrainingObjects:
    """The objects (by photo folder base name → object names) a model trained on, and those it held back."""

    folders: dict[str, set[str]] = field(default_factory=dict)
    held_out: set[str] = field(default_factory=set)

    def seen(self, folder: str, obj: str) -> bool:
        """Whether object ``obj`` of photo folder ``folder`` (base name) trained the model."""
        return obj in self.folders.get(folder, set()) and obj not in self.held_out


def case_photo_folder(meta: dict[str, Any]) -> tuple[str, str] | None:
    """``(photo folder base name, object)`` of a case made by ``refalign make-cases`` (``meta.json``'s ``photos``,
    or for older cases derived from ``source_photo``: ``<folder>/<object>/<photo>`` or ``<folder>/<photo>``)."""
    obj = meta.get("object")
    if not obj:
        return None
    if meta.get("photos"):
        return Path(str(meta["photos"])).name, str(obj)
    src = meta.get("source_photo")
    if not src:
        return None
    parent = Path(str(src)).parent
    return (parent.parent.name if parent.name == obj else parent.name), str(obj)


def _object_folders(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")}


def training_objects(data: dict[str, Any], *, case_objects: dict[str, set[str]] | None = None,
                     folders: dict[str, Path] | None = None) -> TrainingObjects:
    """The :class:`TrainingObjects` of a recorded training data config (``training.data`` of ``refalign.json``).

    A ``multiview`` source's objects are its sub-folders when its folder can be found (its recorded path, or the
    photo folder of that base name the cases were made from, ``folders``); otherwise the objects the cases show for a folder of that base name (``case_objects``), logged, since the
    held-back split then covers only those."""
    from refalign.training.data_setup import split_holdout

    out = TrainingObjects()
    groups: set[str] = set()
    for src in data.get("sources") or []:
        kind = src.get("kind")
        if kind == "procedural":
            groups |= {f"proc{i:05d}" for i in range(int(src.get("count") or 0))}
        elif kind == "multiview" and src.get("path"):
            name = Path(str(src["path"])).name
            candidates = (Path(str(src["path"])), (folders or {}).get(name))
            found = next((p for p in candidates if p is not None and p.is_dir()), None)
            if found is not None:
                objs = _object_folders(found)
            else:
                objs = set((case_objects or {}).get(name, set()))
                logger.info("training source %s not found here; its objects are taken from the cases", src["path"])
            out.folders.setdefault(name, set()).update(objs)
            groups |= objs
        elif kind:
            logger.info("training source of kind %s: its objects cannot be matched to cases (counted as unseen)", kind)
    _, held = split_holdout([SimpleNamespace(group=g) for g in sorted(groups)], float(data.get("val_holdout") or 0))
    out.held_out = {p.group for p in held}
    return out


def model_training_objects(model: str | Path, cases_meta: Iterable[dict[str, Any]] = ()) -> TrainingObjects | None:
    """The :class:`TrainingObjects` of a checkpoint folder (``None`` when it records no training data)."""
    path = Path(model) / "refalign.json"
    try:
        data = json.loads(path.read_text()).get("training", {}).get("data")
    except (OSError, ValueError, AttributeError):
        data = None
    if not isinstance(data, dict):
        logger.info("%s records no training data: the seen/unseen split is left out", path)
        return None
    case_objects: dict[str, set[str]] = {}
    folders: dict[str, Path] = {}
    for meta in cases_meta:
        fo = case_photo_folder(meta)
        if fo:
            case_objects.setdefault(fo[0], set()).add(fo[1])
            if meta.get("source_photo"):
                photo = Path(str(meta["source_photo"]))
                folders[fo[0]] = photo.parent.parent if photo.parent.name == fo[1] else photo.parent
    return training_objects(data, case_objects=case_objects, folders=folders)
