"""Reading files that come from strangers: bundles, checkpoints, recipes, devices files.

Every reader of such a file goes through here, so the rules hold on every path (load, inspect, validate, profile,
export) and every failure is a typed `MegrezError` that names the file, the field and the fix:

* a file name read from a file is a plain name inside its directory: no separator, no `..`, no absolute path, no
  symbolic link pointing elsewhere -- checked before anything is opened;
* JSON and YAML are size- and depth-limited, YAML anchors/aliases are refused before expansion (alias bombs),
  NaN/Infinity and non-UTF-8 text are refused;
* typed dataclasses are built field by field from their annotations, with bounds from the field metadata
  (`bounded(lo, hi)`), so a wrong type or an absurd size never reaches code that divides, allocates or loops by it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import MegrezError

# Manifests, configs, indexes, recipes and devices files are a few kB to a few MB (the official index is ~100 kB).
MAX_DOCUMENT_BYTES = 64 << 20
# Deeper than any real config (the official ones are 3 levels); far below Python's recursion limit.
MAX_DEPTH = 32
# An int field without explicit bounds: a count or a size, never negative, never beyond int32.
DEFAULT_INT_RANGE = (0, 2**31 - 1)

ErrorType = type[MegrezError]


# --- file names read from files -----------------------------------------------------------------------------------

def plain_name(name: Any, where: str, error: ErrorType) -> str:
    """`name` if it is a plain file name (what a manifest or an index may name), else `error`."""
    if not isinstance(name, str):
        raise error(f"{where} must be a file name (a string), got {_show(name)}")
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or ":" in name
           or name != name.strip() or os.path.isabs(name))
    if bad:
        raise error(f"{where} is {name!r}, which is not a plain file name inside its directory; a bundle or "
                    "checkpoint only names its own files (no folders, no '..', no absolute paths). "
                    "Do not use files from this source; re-export or re-download it.")
    return name


def member(directory: Path, name: Any, where: str, error: ErrorType) -> Path:
    """The path of file `name` inside `directory`: a plain name, and not a link that leads outside."""
    path = Path(directory) / plain_name(name, where, error)
    if path.is_symlink():
        target = os.path.realpath(path)
        if os.path.dirname(target) != os.path.realpath(directory):
            raise error(f"{where}: {path} is a symbolic link to {target}, outside {directory}; "
                        "copy the real file into the directory instead")
    return path


# --- JSON and YAML ------------------------------------------------------------------------------------------------

def read_text(path: Path, error: ErrorType, fix: str) -> str:
    """The UTF-8 text of a small file; too large, unreadable or not UTF-8 is `error`."""
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise error(f"{path} is {size:,} bytes, more than the {MAX_DOCUMENT_BYTES:,} any such file needs; {fix}")
        with open(path, "rb") as f:
            data = f.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as e:
        raise error(f"{path} cannot be read ({e.strerror or e}); {fix}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path} is not UTF-8 text (byte {e.start}); {fix}") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str, source: str, error: ErrorType, fix: str) -> Any:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise error(f"{source} is nested too deeply to be a real file; {fix}") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, integers with thousands of digits
        raise error(f"{source} is not valid JSON ({e}); {fix}") from None
    check_depth(value, source, error)
    return value


def read_json(path: Path, error: ErrorType, fix: str) -> Any:
    return parse_json(read_text(path, error, fix), str(path), error, fix)


def read_yaml(path: Path, error: ErrorType, fix: str) -> Any:
    """Safe YAML without anchors or aliases (refused before any expansion: no alias bombs), depth-limited."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
                mark = self.peek_event().start_mark
                raise error(f"{path}, line {mark.line + 1}: YAML anchors and aliases (&name, *name) are not "
                            f"allowed here; write the values out. {fix}")
            return super().compose_node(parent, index)

    text = read_text(path, error, fix)
    try:
        value = yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise error(f"{path} is nested too deeply to be a real file; {fix}") from None
    except yaml.YAMLError as e:
        raise error(f"{path} is not valid YAML: {' '.join(str(e).split())}. {fix}") from None
    check_depth(value, str(path), error)
    return value


def check_depth(value: Any, source: str, error: ErrorType, limit: int = MAX_DEPTH) -> None:
    """Refuse documents nested deeper than `limit` (iteratively: the check itself cannot overflow the stack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise error(f"{source} is nested more than {limit} levels deep; no real file is")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


# --- typed fields -------------------------------------------------------------------------------------------------

def bounded(lo: float | None = None, hi: float | None = None, **kwargs) -> Any:
    """A dataclass field whose (int or float) value must lie in [lo, hi]."""
    return dataclasses.field(metadata={"range": (lo, hi)}, **kwargs)


def checked_value(value: Any, hint: Any, where: str, error: ErrorType, bounds: tuple | None = None) -> Any:
    """`value` if it is of type `hint` (int, float, bool, str, X | None, list[X], tuple[X, ...]) within `bounds`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        problems = []
        for option in options:
            try:
                return checked_value(value, option, where, error, bounds)
            except MegrezError as e:
                problems.append(str(e))
        raise error(problems[0] if len(problems) == 1 else
                    f"{where} must be one of {' or '.join(_type_name(o) for o in options)}, got {_show(value)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise error(f"{where} must be a list, got {_show(value)}")
        item = args[0] if args else Any
        return origin(checked_value(v, item, f"{where}[{i}]", error, bounds) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise error(f"{where} must be a mapping, got {_show(value)}")
        key_hint, item = args if args else (Any, Any)
        return {checked_value(k, key_hint, f"{where} key", error): checked_value(v, item, f"{where}[{k!r}]", error)
                for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise error(f"{where} must be true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{where} must be an integer, got {_show(value)}")
        return _in_range(value, bounds or DEFAULT_INT_RANGE, where, error)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise error(f"{where} must be a finite number, got {_show(value)}")
        return _in_range(float(value), bounds, where, error)
    if hint is str:
        if not isinstance(value, str):
            raise error(f"{where} must be a string, got {_show(value)}")
        if not is_unicode_text(value):
            raise error(f"{where} is not valid Unicode text (it holds an unpaired surrogate, e.g. a \\udcxx escape)")
        return value
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise error(f"{where} must be {_type_name(hint)}, got {_show(value)}")


def typed_fields(cls: type, raw: Any, where: str, error: ErrorType, *, unknown: str = "ignore",
                 only: tuple[str, ...] | None = None, fix: str = "") -> dict[str, Any]:
    """The keyword arguments of dataclass `cls`, checked against its annotations and `bounded` metadata.

    Missing required fields are listed together; `unknown="error"` refuses keys `cls` does not have; `only` limits
    the fields read (for a class whose other fields are built separately); `fix` ends every message.
    """
    try:
        return _typed_fields(cls, raw, where, error, unknown, only)
    except MegrezError as e:
        if not fix:
            raise
        raise error(f"{e}. {fix}") from None


def _typed_fields(cls: type, raw: Any, where: str, error: ErrorType, unknown: str, only) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise error(f"{where} must be a mapping (JSON object / YAML mapping), got {_show(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and (only is None or f.name in only)}
    if unknown == "error":
        extra = sorted(map(str, set(raw) - set(fields)))
        if extra:
            raise error(f"{where}: unknown key(s) {extra}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs, missing = {}, []
    for name, f in fields.items():
        if name in raw and raw[name] is not None:
            kwargs[name] = checked_value(raw[name], hints[name], f"{where}: {name}", error, f.metadata.get("range"))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            missing.append(name)
    if missing:
        raise error(f"{where} lacks required field(s): {', '.join(missing)}")
    return kwargs


def is_unicode_text(text: str) -> bool:
    """False for strings holding lone surrogates: what undecodable bytes become (os.fsdecode, surrogateescape) and
    what JSON's \\udcxx escapes can spell; they cannot be encoded as UTF-8 for any tokenizer or file."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _in_range(value, bounds, where: str, error: ErrorType):
    lo, hi = bounds if bounds else (None, None)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise error(f"{where} is {value!r}, outside {span}")
    return value


def _type_name(hint: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
