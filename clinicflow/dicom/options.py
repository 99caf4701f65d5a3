"""The options of one DICOM reports run, validated before any work: a bad value names its field.

Used by flow ``extract_dicom_reports`` at its start and by ``clinicflow dicom run`` before it starts
the flow. Block names have no default here: the blocks package owns them.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from clinicflow.core.options import OptionsError, PartitionedFanOut
from clinicflow.core.retry import RetryPolicy
from clinicflow.dicom.download import DownloadLimits
from clinicflow.dicom.pipeline import BatchSettings
from clinicflow.dicom.state import DEFAULT_STATE_SCHEMA

BucketKind = Literal["local", "gcs", "s3"]
# Fan-out (docs/scale-out.md): key ranges as child runs of deployment dicom-reports-range; never given to them.
FAN_OUT_FIELDS = frozenset(PartitionedFanOut.model_fields)

_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class DicomOptionsError(OptionsError):
    """Bad DICOM run options; ``problems`` maps each bad field to what is wrong with it."""

    def __init__(self, problems: dict[str, str], what: str = "DICOM run options") -> None:
        super().__init__(problems, what)


class DicomRunOptions(PartitionedFanOut):
    """What a DICOM reports run may be given: the parameters of flow ``extract_dicom_reports`` and the options of
    ``clinicflow dicom run`` are generated from these fields (the fan-out fields are inherited)."""

    options_name: ClassVar[str] = "DICOM run options"
    error_type: ClassVar[type[OptionsError]] = DicomOptionsError

    query: str = Field("dicom_reports", min_length=1, description="Reports SQL text or view name.")
    dataset: str = Field("dicom-reports", description="Output folder in the bucket, and the progress key.")
    reports_block: str = Field(min_length=1, description="PostgresServer block of the reports database.")
    state_block: str | None = Field(None, description="PostgresServer block for progress (default: reports db).")
    state_schema: str = Field(DEFAULT_STATE_SCHEMA, min_length=1, description="Schema of the progress tables.")
    bucket_kind: BucketKind = "local"
    bucket_block: str = Field(min_length=1, description="Bucket block name.")
    base_location: str | None = Field(None, description="Base for relative file locations (folder or URL).")
    page_size: int = Field(500, ge=1, description="Files per keyset page.")
    batch_size: int = Field(20, ge=1, description="Files per batch task.")
    max_concurrency: int = Field(4, ge=1, description="Batches in flight.")
    all_frames: bool = Field(False, description="One JPG per frame (default: first frame only).")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality 1-100.")
    failure_threshold: int = Field(0, ge=0, description="The run fails only with more failed files than this.")
    max_file_mb: float = Field(2048, gt=0, description="Largest DICOM file accepted, in MiB.")
    download_timeout_seconds: float = Field(300, gt=0, description="Time limit of one download attempt.")
    download_retries: int = Field(3, ge=0, description="Retries of transient download failures.")
    retry_backoff_seconds: float = Field(2.0, ge=0, description="First retry delay (doubles each retry, with jitter).")
    # None (a parameter's JSON default) is no root: the value is always a tuple.
    allowed_roots: tuple[str, ...] | None = Field(
        None,
        validate_default=True,
        description="Folder that absolute and file:// locations may lie in "
        "(repeatable; none: such locations are refused).",
    )
    allow_private_redirects: bool = Field(False, description="Follow HTTP redirects to private/loopback addresses.")

    @field_validator("dataset")
    @classmethod
    def _dataset_names_a_folder(cls, value: str) -> str:
        if not _DATASET.match(value):
            raise ValueError("must be 1-100 letters, digits, '.', '_' or '-' (it names the bucket folder)")
        return value

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _no_roots_is_empty(cls, value: Any) -> Any:
        return () if value is None else value

    def download_limits(self) -> DownloadLimits:
        return DownloadLimits(
            max_bytes=int(self.max_file_mb * 1024 * 1024),
            timeout_seconds=self.download_timeout_seconds,
            retry=RetryPolicy(self.download_retries, self.retry_backoff_seconds),
            allowed_roots=self.allowed_roots or (),
            allow_private_redirects=self.allow_private_redirects,
        )

    def batch_settings(self, dataset: str, run_id: str) -> BatchSettings:
        """What every batch of this run (in the pod or in a fan-out child) converts with."""
        return BatchSettings(
            dataset=dataset,
            run_id=run_id,
            base_location=self.base_location,
            all_frames=self.all_frames,
            jpeg_quality=self.jpeg_quality,
            limits=self.download_limits(),
        )

    def flow_parameters(self) -> dict[str, Any]:
        """The options as parameters of flow ``extract_dicom_reports`` (JSON-friendly: lists, None)."""
        parameters = self.model_dump()
        parameters["allowed_roots"] = list(self.allowed_roots or ()) or None
        return parameters
