"""The one object store (local folder here; GCS emulator and moto S3 in tests/integration/dicom/test_storage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks.buckets import LocalFolderBucket, resolve_bucket
from clinicflow.connectors.objectstore.stores import LocalStore, TooLarge


def _exercise(writer, tmp_path: Path) -> None:
    source = tmp_path / "payload.bin"
    source.write_bytes(b"\x00DICM" * 1000)
    writer.write("ds/dicom/a/b/c_1.dcm", source)
    writer.write("ds/jpg/a/b/c_1.jpg", source)
    assert writer.exists("ds/dicom/a/b/c_1.dcm")
    assert not writer.exists("ds/dicom/a/b/missing.dcm")
    writer.download("ds/dicom/a/b/c_1.dcm", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert writer.read("ds/dicom/a/b/c_1.dcm", 10_000) == source.read_bytes()
    with pytest.raises(TooLarge):
        writer.read("ds/dicom/a/b/c_1.dcm", 100)
    with pytest.raises(TooLarge):
        writer.download("ds/dicom/a/b/c_1.dcm", tmp_path / "big.bin", max_bytes=100)
    listed = list(writer.list("ds/dicom/"))
    assert [(i.key, i.size, i.uri) for i in listed] == [
        ("ds/dicom/a/b/c_1.dcm", 5000, writer.uri("ds/dicom/a/b/c_1.dcm"))
    ]
    assert listed[0].version
    assert [info.key for info in writer.list("ds/")] == ["ds/dicom/a/b/c_1.dcm", "ds/jpg/a/b/c_1.jpg"]
    writer.delete("ds/jpg/a/b/c_1.jpg")
    writer.delete("ds/jpg/a/b/c_1.jpg")  # deleting twice is fine
    assert [info.key for info in writer.list("ds/")] == ["ds/dicom/a/b/c_1.dcm"]
    for bad in ("../escape.dcm", "/abs.dcm", "ds/./x", ""):
        with pytest.raises(ValueError, match="invalid object name"):
            writer.write(bad, source)


def test_local_store_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    writer = LocalStore(root)
    _exercise(writer, tmp_path)
    assert [p.name for p in root.rglob("*") if p.is_file()] == ["c_1.dcm"]
    assert writer.describe() == f"folder {root.resolve()}"
    assert writer.uri("ds/x.csv") == root.resolve().as_uri() + "/ds/x.csv"


def test_local_bucket_from_env_defaults_to_out_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    block = resolve_bucket("local", "some-local-bucket")
    assert isinstance(block, LocalFolderBucket)
    assert block.path == "./out/bucket"
    monkeypatch.setenv("CLINICFLOW_SOME_LOCAL_BUCKET_PATH", str(tmp_path))
    assert resolve_bucket("local", "some-local-bucket").path == str(tmp_path)
    with pytest.raises(ValueError, match="bucket_kind"):
        resolve_bucket("azure", "x")
