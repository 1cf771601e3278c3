"""Package surface: sorted __all__, no side effects on import, a fast CLI, picklable errors."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

import raymlops
from raymlops import errors


def test_all_is_sorted_and_resolves():
    assert list(raymlops.__all__) == sorted(raymlops.__all__)
    for name in raymlops.__all__:
        assert getattr(raymlops, name) is not None


def test_data_all_is_sorted():
    from raymlops import data

    assert list(data.__all__) == sorted(data.__all__)


def test_import_has_no_side_effects(tmp_path):
    code = (
        "import sys, raymlops, raymlops.config, raymlops.cli, raymlops.runtime, raymlops.pipeline;"
        "import os; ray = sys.modules.get('ray');"
        "print(os.path.exists('.raymlops'), bool(ray and ray.is_initialized()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_help_imports_no_heavy_module():
    code = (
        "import sys; from raymlops.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('ray', 'torch', 'mlflow', 'pandas', 'deltalake') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "error",
    [
        errors.ConfigError([("a.b", "bad")], "x.yaml"),
        errors.DataSourceError("missing"),
        errors.DataIntegrityError("changed"),
        errors.VersionNotFoundError("no v9"),
        errors.RuntimeStartError("no ray"),
        errors.StorageError("read-only"),
    ],
)
def test_errors_pickle_and_specialise_builtins(error):
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error) and str(clone) == str(error)
    assert isinstance(error, errors.RayMLOpsError)


def test_validation_error_pickles_with_its_report():
    from raymlops.data import RuleViolation, ValidationReport

    report = ValidationReport("f.csv", 10, 1, (RuleViolation("range", "age", 1, ('{"age": -1}',)),))
    err = errors.DataValidationError(report)
    clone = pickle.loads(pickle.dumps(err))
    assert clone.report == report and "[range] column 'age': 1 row(s)" in str(clone)
    assert isinstance(err, ValueError)


def test_builtin_bases():
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.StorageError, OSError)
    assert issubclass(errors.VersionNotFoundError, LookupError)
    assert issubclass(errors.RuntimeStartError, RuntimeError)


@pytest.mark.parametrize(
    ("argv", "handler"),
    [
        (["demo"], "_cmd_demo"),
        (["data", "ingest", "f.csv"], "_cmd_data_ingest"),
        (["data", "versions"], "_cmd_data_versions"),
        (["data", "show", "1"], "_cmd_data_show"),
        (["data", "profile"], "_cmd_data_profile"),
        (["data", "generate", "o.csv"], "_cmd_data_generate"),
        (["train"], "_cmd_train"),
        (["tune"], "_cmd_tune"),
        (["models", "list"], "_cmd_models_list"),
        (["models", "show", "churn/1"], "_cmd_models_show"),
    ],
)
def test_every_command_is_wired_to_its_handler(argv, handler):
    from raymlops.cli import _parser

    assert _parser().parse_args(argv).handler.__name__ == handler
