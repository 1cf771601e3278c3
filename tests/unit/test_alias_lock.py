"""The alias lock is a Delta-commit lease: exclusive, released on exit, taken over once expired."""

from __future__ import annotations

import threading
import time

import pytest

from raymlops import registry
from raymlops.config import parse_config
from raymlops.errors import PromotionError
from raymlops.registry import _lock
from tests.conftest import demo_raw_config


@pytest.fixture
def config(tmp_path):
    return parse_config(demo_raw_config(tmp_path / "home"))


def _owner(config) -> dict:
    from deltalake import DeltaTable

    (row,) = DeltaTable(config.locations.alias_lock_uri("churn")).to_pyarrow_table().to_pylist()
    return row


def test_the_lock_is_exclusive_and_freed_on_exit(config):
    order: list[str] = []

    def second() -> None:
        with registry.alias_lock(config, "churn"):
            order.append("second")

    with registry.alias_lock(config, "churn"):
        assert _owner(config)["owner"]  # held, with an expiry
        waiting = threading.Thread(target=second)
        waiting.start()
        time.sleep(0.5)
        order.append("first done")
    waiting.join(timeout=30)
    assert order == ["first done", "second"]
    assert _owner(config)["owner"] == ""  # free again


def test_a_lease_left_by_a_dead_holder_is_taken_over_once_expired(config, monkeypatch):
    from deltalake import write_deltalake

    uri = config.locations.alias_lock_uri("churn")
    write_deltalake(uri, _lock._lease_row("dead@host/1", time.time() - 1), mode="overwrite")
    with registry.alias_lock(config, "churn"):
        assert _owner(config)["owner"] != "dead@host/1"
    write_deltalake(uri, _lock._lease_row("alive@host/2", time.time() + 60), mode="overwrite")
    monkeypatch.setattr(_lock, "ALIAS_LOCK_WAIT_S", 0.5)
    with pytest.raises(PromotionError, match="stayed held"), registry.alias_lock(config, "churn"):
        pass
