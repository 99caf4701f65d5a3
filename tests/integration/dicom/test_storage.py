"""The one object store against the GCS emulator and moto's S3 server, below a bucket folder; env builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks.buckets import resolve_bucket
from clinicflow.connectors.objectstore.clients import store_for_block
from clinicflow.connectors.objectstore.stores import GcsStore, S3Store
from tests.unit.dicom.test_storage import _exercise


def test_gcs_store_against_the_emulator(gcs_emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = gcs_emulator.new_bucket()
    monkeypatch.setenv("CLINICFLOW_OUT_BUCKET_BUCKET", bucket)
    monkeypatch.setenv("CLINICFLOW_OUT_BUCKET_FOLDER", "exports")
    block = resolve_bucket("gcs", "out-bucket")  # no Google credentials on this machine: anonymous under the emulator
    writer = store_for_block(block)
    assert isinstance(writer, GcsStore)
    _exercise(writer, tmp_path)
    assert sorted(gcs_emulator.objects(bucket)) == ["exports/ds/dicom/a/b/c_1.dcm"]
    assert writer.describe() == f"gs://{bucket}/exports/"
    blob = gcs_emulator.objects(bucket)["exports/ds/dicom/a/b/c_1.dcm"]
    assert blob.content_type == "application/dicom"


def test_s3_store_against_moto(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3_server.new_bucket()
    for key, value in {
        "BUCKET": bucket,
        "FOLDER": "exports",
        "ENDPOINT_URL": s3_server.endpoint,
        "ACCESS_KEY_ID": "test",
        "SECRET_ACCESS_KEY": "fake-sentinel-not-a-credential-5",
        "REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(f"CLINICFLOW_OUT_S3_{key}", value)
    block = resolve_bucket("s3", "out-s3")
    writer = store_for_block(block)
    assert isinstance(writer, S3Store)
    _exercise(writer, tmp_path)
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["exports/ds/dicom/a/b/c_1.dcm"]
    assert writer.describe() == f"s3://{bucket}/exports/"
    assert "fake-sentinel-not-a-credential-5" not in repr(block)  # the secret key is a SecretStr


def test_gcs_bucket_from_env_requires_a_bucket_name(gcs_emulator) -> None:
    from blocks.resolve import BlockResolutionError

    with pytest.raises(BlockResolutionError, match="CLINICFLOW_NO_NAME_BUCKET is required"):
        resolve_bucket("gcs", "no-name")
