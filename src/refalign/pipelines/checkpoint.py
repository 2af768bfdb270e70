"""Checking a checkpoint folder before loading it, so a bad folder fails with a message naming the bad file.

A refalign checkpoint is a ``DiffusionPipeline.save_pretrained`` folder (``model_index.json`` and one sub-folder
per component, weights as safetensors) plus ``refalign.json``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from refalign.errors import CheckpointError

CONFIG_NAMES = ("config.json", "scheduler_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the checkpoint is corrupt, save it again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object; the checkpoint is corrupt, save it again")
    return data


def check_safetensors(path: Path) -> None:
    """Verify a safetensors file's header and that its size matches the tensors it declares."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("file shorter than its header")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError("header length past end of file")
            header = json.loads(fh.read(n))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt weights file ({exc}); save or copy the checkpoint again") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise CheckpointError(
            f"{path}: weights file is {size} bytes but declares {8 + n + end}; it is truncated or corrupt, copy it again"
        )


def check_checkpoint(folder: str | Path) -> dict:
    """Validate a local checkpoint folder; return its ``model_index.json``. Raises :class:`CheckpointError`."""
    folder = Path(folder)
    if not folder.exists():
        raise CheckpointError(f"{folder}: no such model folder; check --model")
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: is a file; --model takes a checkpoint folder")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise CheckpointError(f"{index_path}: missing; {folder} is not a saved pipeline")
    index = _read_json(index_path)
    if not (folder / "refalign.json").is_file():
        raise CheckpointError(f"{folder / 'refalign.json'}: missing; {folder} is not a refalign checkpoint")
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        sub = folder / name
        if not sub.is_dir():
            raise CheckpointError(f"{sub}: component folder missing; the checkpoint is incomplete")
        configs = [sub / c for c in CONFIG_NAMES if (sub / c).is_file()]
        if not configs:
            raise CheckpointError(f"{sub / 'config.json'}: missing; the checkpoint is incomplete")
        for cfg in configs:
            _read_json(cfg)
        if configs[0].name == "scheduler_config.json":
            continue
        weights = [p for p in sub.iterdir() if p.suffix in WEIGHT_SUFFIXES]
        indexes = list(sub.glob("*.index.json"))
        for idx in indexes:
            for shard in set(_read_json(idx).get("weight_map", {}).values()):
                if not (sub / shard).is_file():
                    raise CheckpointError(f"{sub / shard}: weight shard missing; the checkpoint is incomplete")
        if not weights and not indexes:
            raise CheckpointError(f"{sub}: no weights file (*.safetensors); the checkpoint is incomplete")
        for w in weights:
            if w.suffix == ".safetensors":
                check_safetensors(w)
    return index

