"""Files outside the package that users and CI rely on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from raymlops.config import RuntimeConfig

REPO = Path(__file__).resolve().parents[2]


def test_readme_has_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    assert "pip install torch==2.13.0 -e . && raymlops demo" in readme
    block = re.search(r"<!-- ci:test -->\n```bash\n(.+?)\n```\n<!-- /ci:test -->", readme, re.S)
    assert block is not None and block.group(1) == 'pip install torch==2.13.0 -e ".[dev]" && python -m pytest'
    extracted = subprocess.run(
        [
            "bash",
            "-c",
            "sed -n '/<!-- ci:test -->/,/<!-- \\/ci:test -->/p' README.md "
            "| sed -n '/^```/,/^```/p' | sed '1d;$d'",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert extracted == block.group(1)
    assert "ci:test" in (REPO / ".ci" / "run").read_text()


def test_readme_documents_every_command():
    from raymlops.cli import _parser

    readme = (REPO / "README.md").read_text()
    parser = _parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        assert f"### `raymlops {name}" in readme or name == "data"
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        for child in nested[0].choices if nested else ():
            assert f"### `raymlops {name} {child}" in readme
    for documented in re.findall(r"^### `raymlops ([a-z]+)", readme, re.M):
        assert documented in commands, f"README documents `raymlops {documented}`, which does not exist"


def test_prometheus_scrapes_the_pinned_metrics_port():
    config = yaml.safe_load((REPO / "cluster" / "prometheus.yml").read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"127.0.0.1:{RuntimeConfig().metrics_export_port}"]


def test_pyproject_pins_ray_and_keeps_torch_installable_on_cpu():
    text = (REPO / "pyproject.toml").read_text()
    assert '"ray[default,serve,tune,train,data]==2.60.*"' in text
    assert re.search(r'"torch>=2\.\d+"', text)  # the README installs torch==2.13.0 (CPU) first
