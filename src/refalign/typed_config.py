"""Typed configs from plain data: the one loader and the one override mechanism of the project's configs
(the training config, ``refalign.json``). Dataclasses are the configs; YAML and JSON only their serialised form.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml

from refalign.errors import InputError


def build_typed(cls, data: Any, where: str = "", source: str = "config"):
    """The dataclass ``cls`` from a plain mapping (parsed YAML or JSON), nested dataclasses included, every value
    checked against its field's annotation (an int is taken for a float, a number written as a string too);
    an unknown key or a wrong value raises one :class:`~refalign.errors.InputError` line naming it."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: {where or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{source}: unknown key {where + '.' if where else ''}{unknown[0]}; valid keys: {', '.join(sorted(names))}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k, source) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: {where or 'config'}: {exc}") from None


def _convert(hint, value, where: str, source: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build_typed(hint, value, where, source)
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where, source) if len(inner) == 1 else value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{source}: {where} must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float and not isinstance(value, bool):
        try:  # PyYAML reads 1e-4 (no dot) as a string
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"{source}: {where} must be a number, got {value!r}") from None
    if hint in (int, str, bool) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise InputError(f"{source}: {where} must be {hint.__name__}, got {value!r}")
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{source}: {where} must be a mapping, got {value!r}")
    return value


def set_dotted(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a config's plain dict, in place; building the
    config with :func:`build_typed` then checks every value."""
    for item in overrides:
        if "=" not in item:
            raise InputError(f"{source} {item!r}: expected key=value, e.g. optim.lr_unet=1e-4")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InputError(f"{source} {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return data
