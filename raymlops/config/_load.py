"""Reading a config: YAML or a mapping → ``ProjectConfig``, or a ``ConfigError`` naming every bad key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from raymlops.config._base import FieldProblem, suggest
from raymlops.config._project import ProjectConfig
from raymlops.contracts import is_remote
from raymlops.errors import ConfigError


def parse_config(raw: Any, source: str | None = None) -> ProjectConfig:
    """Validate an already-parsed mapping (e.g. from YAML or a test).

    Raises:
        ConfigError: listing every problem with its dotted path, value and what is allowed.
    """
    if not isinstance(raw, dict):
        raise ConfigError(
            [("", f"the top level must be a mapping of keys to values, got {type(raw).__name__}")], source
        )
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_problems(e, raw), source) from None


def load_config(path: str | os.PathLike[str]) -> ProjectConfig:
    """Read and validate one YAML config file, a local path or a URI under the storage home.

    A retrain job reads the config its monitor left under an object-store
    home (``<home>/monitor/<name>/config.json``), on whichever node it runs.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or has a bad key or value.
    """
    import yaml

    source = str(path)
    try:
        if is_remote(source):
            from raymlops._internal.files import read_text

            remote = read_text(source)
            if remote is None:
                raise FileNotFoundError(source)
            text = remote
        else:
            text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError([("", f"file not found: {source}; pass --config PATH")], source) from None
    except OSError as e:  # StorageError too: an unreachable store
        raise ConfigError([("", f"cannot read {source}: {e.strerror or e}")], source) from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            [("", f"not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r}); save it as UTF-8")],
            source,
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([("", f"not valid YAML{where}: {problem}")], source) from None
    return parse_config(raw, source)


def _problems(error: ValidationError, raw: Any) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors(include_url=False):
        parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in item["loc"]]
        # Union members show up in loc (e.g. 'int', "literal['auto']"); keep the real keys only.
        loc = [p for p in parts if p.isidentifier() or p.startswith("[")]
        if item["type"] == "extra_forbidden" and parts and loc[-1:] != parts[-1:]:
            loc.append(parts[-1])  # an unknown key is named as written, identifier or not (e.g. ':')
        inner = item.get("ctx", {}).get("error")
        if isinstance(inner, FieldProblem):
            loc = loc + inner.field.split(".")
            problems.append((_dotted(loc), _with_value(str(inner), raw, loc)))
            continue
        path = _dotted(loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            problems.append((path, _unknown_key_message(loc)))
        elif kind == "missing":
            keys = _allowed_keys(loc)
            expects = f" (a mapping with keys: {', '.join(sorted(keys))})" if keys else ""
            problems.append((path, f"required key is missing{expects}"))
        else:
            problems.append((path, f"got {item.get('input')!r}; {_reason(item)}"))
    return _merge_union_branches(problems)


def _merge_union_branches(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A value that fails every branch of ``int | 'auto'`` yields one error per branch; join them."""
    merged: dict[str, str] = {}
    for path, msg in problems:
        if path in merged and msg.startswith("got ") and merged[path].startswith("got "):
            merged[path] += " or " + msg.split("; ", 1)[1]
        else:
            merged[path] = msg if path not in merged else merged[path] + "; " + msg
    return list(merged.items())


def _dotted(loc: list[str]) -> str:
    out = ""
    for part in loc:
        out += part if part.startswith("[") or not out else f".{part}"
    return out


def _reason(item: Any) -> str:
    msg: str = item["msg"]
    msg = msg.replace("Input should be", "must be").replace("Value error, ", "")
    return msg


def _with_value(message: str, raw: Any, loc: list[str]) -> str:
    value = _lookup(raw, loc)
    if value is _MISSING or isinstance(value, (dict, list)):
        return message
    return f"got {value!r}; {message}"


_MISSING = object()


def _lookup(raw: Any, loc: list[str]) -> Any:
    node = raw
    for part in loc:
        if part.startswith("[") and isinstance(node, list):
            idx = int(part[1:-1])
            node = node[idx] if idx < len(node) else _MISSING
        elif isinstance(node, dict):
            node = node.get("schema" if part == "schema_" else part, _MISSING)
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _unknown_key_message(loc: list[str]) -> str:
    allowed = _allowed_keys(loc[:-1])
    key = loc[-1]
    hint = suggest(key, allowed)
    return f"unknown key {key!r}{hint}; allowed keys here: {', '.join(sorted(allowed))}"


def _allowed_keys(loc: list[str]) -> list[str]:
    model: Any = ProjectConfig
    for part in loc:
        if part.startswith("["):
            continue
        field = model.model_fields.get(part) or model.model_fields.get(f"{part}_")
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> Any:
    """Find the pydantic model class inside an annotation like ``tuple[FeatureSpec, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    for meta in getattr(annotation, "__metadata__", ()) or ():
        found = _model_in(meta)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _model_in(origin) if origin is not None and origin is not annotation else None
