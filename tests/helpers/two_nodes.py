"""A real two-node Ray cluster on one machine, a real S3 API and a real MLflow server, stopped by pid.

- ``moto_server`` on loopback is the object store (a bucket per cluster).
- ``mlflow server`` on loopback keeps runs in SQLite and proxies artifacts to
  ``s3://BUCKET/mlartifacts`` (``--artifacts-destination``).
- ``ray start --head`` and a second ``ray start --address`` node, each with its
  own ``--temp-dir``, ports and custom resource (``head`` / ``node2``). Node 2
  runs in its own mount namespace (``unshare -m``, root) where
  - ``local_home`` is an empty folder of its own (a bind mount): a file the
    head writes there is invisible to node 2, as on two machines;
  - ``/etc/hosts`` is a file of the test's: node 2 reaches the S3 API as
    ``s3.node2`` and ``cut_node2_from_s3`` points that name at a closed port,
    a network partition of node 2 alone.
Every process is stopped by its id (a process group, or a temp dir in its command line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers.head import _start_head, client_env, free_port, stop_by_marker, wait_for_job_agent
from tests.helpers.servers import start_mlflow_server, stop_group, wait_http

S3_NAME = "s3.node2"


@dataclasses.dataclass
class TwoNodes:
    gcs_address: str
    dashboard_url: str
    bucket: str
    s3_env: dict[str, str]  # what a process on the head (or the test) needs to reach the bucket
    mlflow_uri: str
    local_home: Path  # the same path on both nodes, a different folder on each
    node2_view: Path  # what node 2 sees at local_home (the bind mount's source)
    caches: dict[str, Path]  # node-local scratch (XDG_CACHE_HOME) of head, node2 and the test's driver
    hosts_file: Path  # node 2's /etc/hosts
    moto_port: int
    folder: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a driver on the head attached to this cluster."""
        env = {**client_env(), **self.s3_env, "RAY_ADDRESS": self.gcs_address, **extra}
        env["XDG_CACHE_HOME"] = str(self.caches["driver"])
        return env

    def cut_node2_from_s3(self) -> None:
        _write_in_place(self.hosts_file, f"127.0.0.1 localhost\n127.0.0.2 {S3_NAME}\n")

    def heal_node2(self) -> None:
        _write_in_place(self.hosts_file, f"127.0.0.1 localhost\n127.0.0.1 {S3_NAME}\n")

    def node_ids(self) -> dict[str, str]:
        """``{"head": id, "node2": id}``, by each node's custom resource."""
        ids: dict[str, str] = _probe(self.gcs_address)["ids"]
        return ids

    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", **_boto_args(self.s3_env))

    def bucket_keys(self) -> list[str]:
        s3 = self.s3()
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys


def _write_in_place(path: Path, text: str) -> None:
    """Rewrite a bind-mounted file through its inode (a rename would leave the mount on the old one)."""
    with open(path, "r+") as f:
        f.seek(0)
        f.write(text)
        f.truncate()


def _boto_args(env: dict[str, str]) -> dict[str, str]:
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_REGION"],
    }


_PROBE = (
    "import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
    "nodes = [n for n in ray.nodes() if n['Alive']]; "
    "print(json.dumps({'alive': len(nodes), "
    "'ids': {r: n['NodeID'] for n in nodes for r in ('head', 'node2') if r in n['Resources']}}))"
)


def _probe(gcs_address: str) -> dict[str, Any]:
    """The cluster's alive nodes, asked by a short-lived driver (this process may hold another Ray)."""
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, gcs_address],
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        return {"alive": 0, "ids": {}, "error": run.stderr[-2000:]}
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


@contextlib.contextmanager
def two_node_cluster(num_cpus_per_node: int = 4) -> Iterator[TwoNodes]:
    """Start S3, MLflow and the two nodes; stop every process it started on exit."""
    folder = Path(tempfile.mkdtemp(prefix="rmo-2n-", dir="/tmp"))  # short: Ray's socket paths are limited
    processes: list[subprocess.Popen[bytes]] = []
    markers = [str(folder)]  # every Ray process of both nodes names a folder under it
    logs = folder / "logs"
    logs.mkdir()
    try:
        moto_port = free_port()
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            # node 2 calls it s3.node2: path-style buckets, not a bucket named "s3" from the host name
            env={**os.environ, "S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true"},
            stdout=open(logs / "moto.log", "wb"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(moto)
        wait_http(f"http://127.0.0.1:{moto_port}/moto-api/", 60, "moto_server", moto)
        s3_env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            "AWS_ACCESS_KEY_ID": "raymlops-test",
            "AWS_SECRET_ACCESS_KEY": "raymlops-test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",  # deltalake's object store refuses plain HTTP otherwise
        }
        bucket = "raymlops-cluster"
        import boto3

        boto3.client("s3", **_boto_args(s3_env)).create_bucket(Bucket=bucket)

        mlflow_port = free_port()
        processes.append(start_mlflow_server(folder, mlflow_port, f"s3://{bucket}/mlartifacts", s3_env))

        local_home = folder / "home"
        node2_view = folder / "node2-home"
        local_home.mkdir()
        node2_view.mkdir()
        caches = {name: folder / f"cache-{name}" for name in ("head", "node2", "driver")}
        for path in caches.values():
            path.mkdir()
        hosts_file = folder / "node2-hosts"
        hosts_file.write_text(f"127.0.0.1 localhost\n127.0.0.1 {S3_NAME}\n")

        dashboard_port = free_port()
        _, gcs_port = _start_head(
            "h",
            f"--num-cpus={num_cpus_per_node}",
            '--resources={"head": 1}',
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            "--include-dashboard=true",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            extra_env={**s3_env, "XDG_CACHE_HOME": str(caches["head"])},
            parent=str(folder),
        )
        gcs_address = f"127.0.0.1:{gcs_port}"

        node2_dir = folder / "n2"
        # below Linux's ephemeral range (32768+), where free_port() picks every other port
        worker_low = 20000 + int.from_bytes(os.urandom(2), "big") % 9000
        ray_start = " ".join(
            [
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                f"--address={gcs_address}",
                f"--temp-dir={node2_dir}",
                f"--num-cpus={num_cpus_per_node}",
                "--resources='{\"node2\": 1}'",
                f"--node-manager-port={free_port()}",
                f"--object-manager-port={free_port()}",
                f"--metrics-export-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}",
                f"--min-worker-port={worker_low}",
                f"--max-worker-port={worker_low + 200}",
                "--disable-usage-stats",
                "--block",
            ]
        )
        node2_env = {
            **client_env(),
            **s3_env,
            "AWS_ENDPOINT_URL": f"http://{S3_NAME}:{moto_port}",
            "XDG_CACHE_HOME": str(caches["node2"]),
        }
        node2 = subprocess.Popen(
            [
                "unshare",
                "-m",
                "bash",
                "-c",
                f"mount --bind {node2_view} {local_home} && mount --bind {hosts_file} /etc/hosts "
                f"&& exec {ray_start}",
            ],
            env=node2_env,
            stdout=open(logs / "node2.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(node2)
        deadline = time.monotonic() + 180
        while _probe(gcs_address)["alive"] < 2:
            if node2.poll() is not None:
                raise AssertionError(f"node 2 exited: {(logs / 'node2.log').read_text()[-3000:]}")
            assert time.monotonic() < deadline, "node 2 never joined the head"
            time.sleep(2)
        dashboard_url = f"http://127.0.0.1:{dashboard_port}"
        wait_for_job_agent(dashboard_url)
        yield TwoNodes(
            gcs_address=gcs_address,
            dashboard_url=dashboard_url,
            bucket=bucket,
            s3_env=s3_env,
            mlflow_uri=f"http://127.0.0.1:{mlflow_port}",
            local_home=local_home,
            node2_view=node2_view,
            caches=caches,
            hosts_file=hosts_file,
            moto_port=moto_port,
            folder=folder,
        )
    finally:
        for marker in reversed(markers):
            stop_by_marker(marker)
        for process in reversed(processes):
            stop_group(process)
        if os.environ.get("RAYMLOPS_KEEP_CLUSTER_LOGS"):
            print(json.dumps({"logs": str(logs)}))
        else:
            shutil.rmtree(folder, ignore_errors=True)
