"""Malformed configs, generated: every one is a ``ConfigError`` naming the key, never another exception."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from raymlops.config import load_config
from raymlops.errors import ConfigError
from tests.conftest import demo_raw_config
from tests.helpers.fuzz import fuzz_settings

SETTINGS = fuzz_settings(200)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(node, dict):
        return [prefix]
    found = [prefix] if prefix else []
    for key, value in node.items():
        found.extend(_paths(value, (*prefix, str(key))))
    return found


BASE = demo_raw_config(Path("/tmp/raymlops-fuzz-home"), training={"epochs": 3}, serving={"port": 8000})
PATHS = _paths(BASE)


def _load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "raymlops.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as e:
        assert str(e).strip(), "a ConfigError must say what is wrong"
        assert "Traceback" not in str(e)


@given(text=st.text(max_size=300))
@example(text="::")  # an unknown key that is not an identifier once broke the error message
@example(text="data: {'a b': 1}")
@SETTINGS
def test_any_text_loads_or_is_a_config_error(tmp_path_factory, text):
    _load(tmp_path_factory.mktemp("text"), text)


@given(path=st.sampled_from(PATHS), value=VALUES, delete=st.booleans())
@SETTINGS
def test_a_valid_config_with_one_value_replaced_loads_or_names_the_key(tmp_path_factory, path, value, delete):
    import copy

    raw = copy.deepcopy(BASE)
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    folder = tmp_path_factory.mktemp("mutated")
    file = folder / "raymlops.yaml"
    file.write_text(yaml.safe_dump(raw))
    try:
        load_config(file)
    except ConfigError as e:
        # the message names where the problem is: the replaced key or one of its parents
        assert any(part in str(e) for part in path) or "top level" in str(e), (path, str(e))


@given(blob=st.binary(max_size=200))
@SETTINGS
def test_binary_garbage_is_a_config_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("binary") / "raymlops.yaml"
    path.write_bytes(blob)
    with contextlib.suppress(ConfigError):
        load_config(path)
