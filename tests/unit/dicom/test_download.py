"""Downloads against a real local HTTP server, the GCS emulator and a moto S3 server."""

from __future__ import annotations

import pytest

from clinicflow.connectors.http import redact
from clinicflow.core.retry import RetryPolicy
from clinicflow.dicom.download import DownloadLimits, stored_location

FAST = DownloadLimits(retry=RetryPolicy(2, 0.01), timeout_seconds=1.0, connect_timeout_seconds=1.0)


def test_errors_never_show_credentials_in_urls() -> None:
    assert redact("https://user:secret@host:8443/path/x.dcm?token=abc#f") == "https://host:8443/path/x.dcm"


def test_stored_locations_keep_no_secrets_and_stay_distinct() -> None:
    plain = "http://host/a/x.dcm"
    assert stored_location(plain) == plain
    signed_1 = stored_location("https://u:pw@host/x.dcm?X-Amz-Signature=abc")
    signed_2 = stored_location("https://u:pw@host/x.dcm?X-Amz-Signature=def")
    for stored in (signed_1, signed_2):
        assert stored.startswith("https://host/x.dcm#sha256=")
        visible = stored.split("#")[0]
        assert "pw" not in visible
        assert "Signature" not in visible
        assert "u:" not in visible
    assert signed_1 != signed_2


def test_a_one_part_multipart_body_is_cut_to_its_part_wherever_the_blocks_end(tmp_path) -> None:
    from clinicflow.dicom.download import CHUNK_BYTES, DownloadError, multipart_boundary, single_part_body

    assert multipart_boundary('multipart/related; type="application/dicom"; boundary="b-1"') == "b-1"
    assert multipart_boundary("application/dicom") is None
    head = b"--b-1\r\nContent-Type: application/dicom\r\n\r\n"
    for size in (0, 1, CHUNK_BYTES - len(head) - 3, CHUNK_BYTES - len(head), CHUNK_BYTES + 5):
        payload = bytes(i % 251 for i in range(size))
        path = tmp_path / "body"
        path.write_bytes(head + payload + b"\r\n--b-1--\r\n")
        single_part_body(path, "b-1", "http://pacs/x")
        assert path.read_bytes() == payload, size
    path.write_bytes(head + b"DICM no end")
    with pytest.raises(DownloadError, match="never ends"):
        single_part_body(path, "b-1", "http://pacs/x")
