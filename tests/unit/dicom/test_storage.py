"""Bucket writers against a local folder, the GCS emulator and moto's S3 server; bucket env builders."""
from __future__ import annotations

from pathlib import Path

import pytest

from blocks.buckets import LocalFolderBucket, resolve_bucket
from clinicflow.connectors.objectstore.buckets import LocalFolderWriter


def _exercise(writer, tmp_path: Path) -> None:
    source = tmp_path / "payload.bin"
    source.write_bytes(b"\x00DICM" * 1000)
    writer.upload_file(source, "ds/dicom/a/b/c_1.dcm")
    writer.upload_file(source, "ds/jpg/a/b/c_1.jpg")
    assert writer.exists("ds/dicom/a/b/c_1.dcm")
    assert not writer.exists("ds/dicom/a/b/missing.dcm")
    writer.download_file("ds/dicom/a/b/c_1.dcm", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert sorted(writer.list_names("ds/")) == ["ds/dicom/a/b/c_1.dcm", "ds/jpg/a/b/c_1.jpg"]
    writer.delete("ds/jpg/a/b/c_1.jpg")
    writer.delete("ds/jpg/a/b/c_1.jpg")  # deleting twice is fine
    assert sorted(writer.list_names("ds/")) == ["ds/dicom/a/b/c_1.dcm"]
    for bad in ("../escape.dcm", "/abs.dcm", "ds/./x", ""):
        with pytest.raises(ValueError, match="invalid object name"):
            writer.upload_file(source, bad)


def test_local_folder_writer_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    writer = LocalFolderWriter(root)
    _exercise(writer, tmp_path)
    assert [p.name for p in root.rglob("*") if p.is_file()] == ["c_1.dcm"]
    assert writer.describe() == f"folder {root.resolve()}"


def test_local_bucket_from_env_defaults_to_out_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    block = resolve_bucket("local", "some-local-bucket")
    assert isinstance(block, LocalFolderBucket)
    assert block.path == "./out/bucket"
    monkeypatch.setenv("CLINICFLOW_SOME_LOCAL_BUCKET_PATH", str(tmp_path))
    assert resolve_bucket("local", "some-local-bucket").path == str(tmp_path)
    with pytest.raises(ValueError, match="bucket_kind"):
        resolve_bucket("azure", "x")
