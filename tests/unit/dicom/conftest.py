"""The DICOM unit tests use the shared bad-files fixture."""

from tests.support.dicom_files import bad_files  # noqa: F401 - the fixture
