"""Downloads against a real local HTTP server, the GCS emulator and a moto S3 server."""

from __future__ import annotations

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
