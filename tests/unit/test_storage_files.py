"""The small-file helpers and the credential check behind an object-store home (no Ray, no store)."""

from __future__ import annotations

import pytest

from raymlops._internal import files
from raymlops.contracts import StorageLocations, is_remote, join, normalise_home

CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_SERVICE_ACCOUNT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    files.ENV_TRUST_INSTANCE_ROLE,
)


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws/credentials


def test_local_files_are_replaced_whole_appended_and_deleted(tmp_path):
    state = tmp_path / "monitor" / "state.json"
    assert files.read_text(state) is None
    files.replace_text(state, "one")
    files.replace_text(state, "two", durable=True)
    assert files.read_text(state) == "two" and not state.with_suffix(".tmp").exists()
    windows = tmp_path / "monitor" / "windows.jsonl"
    files.append_line(windows, '{"a": 1}')
    files.append_line(windows, '{"a": 2}\n')
    assert files.read_text(windows) == '{"a": 1}\n{"a": 2}\n'
    files.delete(state)
    files.delete(state)  # a missing file is not an error
    assert not state.exists()


@pytest.mark.parametrize(
    ("uri", "wanted"),
    [
        ("s3://bucket/home", "AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY"),
        ("gs://bucket/home", "GOOGLE_APPLICATION_CREDENTIALS"),
        ("abfss://c@a.dfs.core.windows.net/h", "AZURE_STORAGE_ACCOUNT_NAME + AZURE_STORAGE_ACCOUNT_KEY"),
    ],
)
def test_a_store_without_credentials_is_named_with_the_variables_to_set(
    no_credentials, monkeypatch, uri, wanted
):
    problem = files.credentials_problem(uri)
    assert problem is not None and uri in problem and wanted in problem
    with pytest.raises(files.StorageError, match="no credentials for"):
        files.probe(uri)  # refused before any request
    monkeypatch.setenv(files.ENV_TRUST_INSTANCE_ROLE, "1")
    assert files.credentials_problem(uri) is None


def test_any_standard_credential_source_is_enough(no_credentials, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_PROFILE", "team")
    assert files.credentials_problem("s3://b/h") is None
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")  # half a key pair is not a source
    assert files.credentials_problem("s3://b/h") is not None
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    assert files.credentials_problem("s3://b/h") is None
    assert files.credentials_problem(str(tmp_path)) is None  # a local home needs none


def test_locations_join_paths_and_uris_in_one_place(tmp_path):
    assert normalise_home("s3://bucket/a/b/") == "s3://bucket/a/b"
    assert normalise_home(f"file://{tmp_path}/h") == str(tmp_path / "h")
    assert join("s3://b/h", "/monitor/", "x.json") == "s3://b/h/monitor/x.json"
    assert join(str(tmp_path), "monitor", "x.json") == str(tmp_path / "monitor" / "x.json")
    local = StorageLocations(str(tmp_path), "churn")
    assert not local.remote and local.scratch_path == tmp_path
    assert local.journal_path == tmp_path / "serving" / "churn_journal"
    remote = StorageLocations("s3://b/h", "churn", table_override="s3://other/table")
    assert remote.table_uri == "s3://other/table" and remote.quarantine_uri == "s3://other/table_quarantine"
    assert is_remote(remote.job_uri("j")) and not is_remote(str(remote.journal_path))
    assert remote.mlflow_artifacts_uri == "s3://b/h/mlartifacts"
    assert local.mlflow_artifacts_uri == (tmp_path / "mlartifacts").as_uri()
