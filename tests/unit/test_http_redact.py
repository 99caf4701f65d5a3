"""URL redaction: what may be logged, stored or raised of a URL never holds its credentials or query secrets."""

from __future__ import annotations

import pytest

from clinicflow.connectors.http import HttpFetchError, redact


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://user:secret@host:8443/path/x.dcm?token=abc#f", "https://host:8443/path/x.dcm"),
        ("http://host/a?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA", "http://host/a"),
        ("https://:only-password@host/p", "https://host/p"),
        ("s3://bucket/key.dcm?versionId=1", "s3://bucket/key.dcm"),
        ("http://[::1]:8080/x?api_key=k", "http://[::1]:8080/x"),
        ("relative/path.dcm", "relative/path.dcm"),
    ],
)
def test_redact_drops_user_info_query_and_fragment(url: str, safe: str) -> None:
    assert redact(url) == safe
    for secret in ("secret", "abc", "deadbeef", "AKIA", "only-password", "api_key"):
        assert secret not in redact(url)


def test_redact_is_idempotent() -> None:
    once = redact("https://u:p@h/x?q=1")
    assert redact(once) == once


def test_fetch_errors_carry_the_status_and_attempts() -> None:
    error = HttpFetchError("HTTP 503 from https://h/x", status=503, attempts=4)
    assert (error.status, error.attempts, str(error)) == (503, 4, "HTTP 503 from https://h/x")
