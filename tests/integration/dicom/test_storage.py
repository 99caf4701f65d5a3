"""Bucket writers against a local folder, the GCS emulator and moto's S3 server; bucket env builders."""
from __future__ import annotations

from pathlib import Path

import pytest

from blocks.buckets import LocalFolderBucket, resolve_bucket
from clinicflow.connectors.objectstore.buckets import GcsWriter, LocalFolderWriter, S3Writer, writer_for


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
        with pytest.raises(ValueError):
            writer.upload_file(source, bad)


def test_local_folder_writer_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    writer = LocalFolderWriter(root)
    _exercise(writer, tmp_path)
    assert [p.name for p in root.rglob("*") if p.is_file()] == ["c_1.dcm"]
    assert writer.describe() == f"folder {root.resolve()}"


def test_gcs_writer_against_the_emulator(gcs_emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = gcs_emulator.new_bucket()
    monkeypatch.setenv("CLINICFLOW_OUT_BUCKET_BUCKET", bucket)
    monkeypatch.setenv("CLINICFLOW_OUT_BUCKET_FOLDER", "exports")
    block = resolve_bucket("gcs", "out-bucket")  # no Google credentials on this machine: anonymous under the emulator
    writer = writer_for(block)
    assert isinstance(writer, GcsWriter)
    _exercise(writer, tmp_path)
    assert sorted(gcs_emulator.objects(bucket)) == ["exports/ds/dicom/a/b/c_1.dcm"]
    blob = gcs_emulator.objects(bucket)["exports/ds/dicom/a/b/c_1.dcm"]
    assert blob.content_type == "application/dicom"


def test_s3_writer_against_moto(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3_server.new_bucket()
    for key, value in {"BUCKET": bucket, "FOLDER": "exports", "ENDPOINT_URL": s3_server.endpoint,
                       "ACCESS_KEY_ID": "test", "SECRET_ACCESS_KEY": "fake-sentinel-not-a-credential-5", "REGION": "us-east-1"}.items():
        monkeypatch.setenv(f"CLINICFLOW_OUT_S3_{key}", value)
    block = resolve_bucket("s3", "out-s3")
    writer = writer_for(block)
    assert isinstance(writer, S3Writer)
    _exercise(writer, tmp_path)
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["exports/ds/dicom/a/b/c_1.dcm"]
    assert "fake-sentinel-not-a-credential-5" not in repr(block)  # the secret key is a SecretStr


def test_local_bucket_from_env_defaults_to_out_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    block = resolve_bucket("local", "some-local-bucket")
    assert isinstance(block, LocalFolderBucket) and block.path == "./out/bucket"
    monkeypatch.setenv("CLINICFLOW_SOME_LOCAL_BUCKET_PATH", str(tmp_path))
    assert resolve_bucket("local", "some-local-bucket").path == str(tmp_path)
    with pytest.raises(ValueError, match="bucket_kind"):
        resolve_bucket("azure", "x")


def test_gcs_bucket_from_env_requires_a_bucket_name(gcs_emulator) -> None:
    from blocks.resolve import BlockResolutionError

    with pytest.raises(BlockResolutionError, match="CLINICFLOW_NO_NAME_BUCKET is required"):
        resolve_bucket("gcs", "no-name")
