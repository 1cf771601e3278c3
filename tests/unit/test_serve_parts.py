"""Serving parts that need no Ray cluster: request models, canary buckets, the Serve config file."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from raymlops.serve import serve_config
from raymlops.serve._requests import feedback_model, problems, request_model
from tests.helpers.records import GOOD


def _problems(model, body):
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return {p["field"]: p["reason"] for p in problems(info.value)}


def test_request_model_follows_the_schema(make_config):
    model = request_model(make_config().data.schema)
    assert model.model_validate({"records": [GOOD]}).records[0].age == 40.0
    assert model.model_validate({"records": [{**GOOD, "customer_id": "c1"}]})  # the id column is allowed
    found = _problems(model, {"records": [{**GOOD, "age": "40", "plan": "gold", "x": 1}]})
    assert set(found) == {"records[0].age", "records[0].plan", "records[0].x"}
    assert "'basic', 'standard' or 'premium'" in found["records[0].plan"]
    assert "unknown field" in found["records[0].x"]
    assert "not nullable" in _problems(model, {"records": [{**GOOD, "age": None}]})["records[0].age"]
    assert "finite" in _problems(model, {"records": [{**GOOD, "age": float("inf")}]})["records[0].age"]
    assert "at least one" in _problems(model, {"records": []})["records"]


def test_unknown_categories_can_be_allowed(make_config):
    model = request_model(make_config().data.schema, unknown_category="allow")
    assert model.model_validate({"records": [{**GOOD, "plan": "gold"}]})


def test_feedback_labels_follow_the_label_classes(make_config):
    model = feedback_model(make_config().data.schema)
    assert model.model_validate({"request_id": "r", "labels": [0, 1]})
    assert set(_problems(model, {"request_id": "r", "labels": [2, "x"]})) == {"labels[0]", "labels[1]"}


def test_canary_bucket_is_stable_and_uniform():
    from raymlops.serve._predict import canary_bucket

    buckets = [canary_bucket(f"req-{i}") for i in range(20_000)]
    assert canary_bucket("req-7") == buckets[7]
    assert 0.29 < sum(b < 0.3 for b in buckets) / len(buckets) < 0.31


def test_serve_build_output_passes_rays_own_schema(make_config, tmp_path):
    from ray.serve.schema import ServeDeploySchema

    cfg = make_config(serving={"num_replicas": "auto", "min_replicas": 1, "max_replicas": 3, "port": 8123})
    built = serve_config(cfg, "configs/demo.yaml")
    parsed = ServeDeploySchema.model_validate(yaml.safe_load(yaml.safe_dump(built)))
    app = parsed.applications[0]
    assert app.import_path == "raymlops.serve:build_app" and app.args == {"config": "configs/demo.yaml"}
    deployment = app.deployments[0]
    assert deployment.autoscaling_config["max_replicas"] == 3
    assert deployment.max_ongoing_requests == cfg.serving.max_ongoing_requests
    assert parsed.http_options.host == "127.0.0.1" and parsed.http_options.port == 8123
    fixed = serve_config(make_config(serving={"num_replicas": 2}), "c.yaml")
    assert fixed["applications"][0]["deployments"][0]["num_replicas"] == 2


_SETTLE = """
import gc, weakref
from raymlops.serve._models import settle_heap as _settle_heap

class Node:
    pass

model = Node()
model.other = Node()
model.other.other = model      # a cycle: only the collector frees it
old_model = weakref.ref(model)
_settle_heap()                 # the first model is loaded ...
frozen = gc.get_freeze_count()
assert frozen > 0
del model                      # ... and swapped out
gc.collect()
assert old_model() is not None, "a frozen cycle is skipped by ordinary collections"
_settle_heap()                 # ... the next swap collects it
assert old_model() is None
assert gc.get_threshold()[0] == 10_000
print("ok", frozen)
"""


def test_a_model_swap_collects_the_old_heap_and_freezes_the_new_one():
    # in its own interpreter: freezing the test process's heap would outlive the test
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _SETTLE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


def test_the_haproxy_template_binds_stats_and_metrics_on_the_serving_host():
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    from raymlops._internal.ingress import template_for

    bound = template_for(HAPROXY_CONFIG_TEMPLATE, "127.0.0.1")
    # Ray's own template binds both on every interface; a changed template must fail here, not silently
    assert "bind *:{{ config.stats_port }}" in HAPROXY_CONFIG_TEMPLATE
    assert "bind :{{ config.metrics_port }}" in HAPROXY_CONFIG_TEMPLATE
    assert "bind 127.0.0.1:{{ config.stats_port }}" in bound
    assert "bind 127.0.0.1:{{ config.metrics_port }}" in bound
    assert "bind *:" not in bound and "bind :" not in bound
    assert "bind [::1]:{{ config.stats_port }}" in template_for(HAPROXY_CONFIG_TEMPLATE, "::1")
