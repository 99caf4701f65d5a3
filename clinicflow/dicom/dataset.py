"""Reading a DICOM file for rendering: the dataset, its image description, and one decoded frame (bounded)."""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clinicflow.core.errors import ClinicflowError, one_line

# Bound on one frame's decoded size: a header claiming more is rejected before
# any allocation (a corrupt Rows/Columns must not take the pod down).
MAX_FRAME_PIXELS = 120_000_000
# pydicom logs each failing decoder plugin's traceback at ERROR; the file's failure carries every plugin's
# message instead (decode_frame), so a folder of undecodable files is one line each, not tracebacks.
logging.getLogger("pydicom.pixels.decoders.base").setLevel(logging.CRITICAL)
_DICOM_UID_ROOT = "1.2.840.10008."  # every standard SOP class lies under it
_ALL_PLUGINS_FAILED = "Unable to decode as exceptions were raised by all available plugins:"


class ConversionError(ClinicflowError):
    """A file that cannot become a JPEG.

    ``stage`` is ``read`` or ``decode``; ``kind`` is a short, stable category
    for counting (``empty-file``, ``not-dicom``, ``unreadable``, ``truncated``,
    ``no-pixel-data``, ``bad-header``, ``short-pixel-data``, ``undecodable``,
    ``unsupported``); ``reason`` is the human-readable detail.
    """

    def __init__(self, stage: str, kind: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    """What the CSV says about one converted file."""

    rows: int
    columns: int
    frames: int
    photometric: str
    transfer_syntax: str
    sop_instance_uid: str = ""


def read_dataset(path: str | os.PathLike[str]) -> Any:
    """Read a DICOM file fully, or raise :class:`ConversionError` saying why not."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConversionError("read", "unreadable", f"cannot open file ({exc.strerror})") from None
    if size == 0:
        raise ConversionError("read", "empty-file", "empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            ds = _read_legacy(path)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged files
            raise ConversionError("read", "unreadable", f"unreadable DICOM ({one_line(exc, limit=160)})") from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if _looks_like_image(ds):
            # pydicom stops quietly at a premature end of file; an image whose
            # pixel data never came is a truncated file, not a non-image object.
            raise ConversionError("read", "truncated", "file ends before the pixel data (truncated)")
        raise ConversionError("read", "no-pixel-data", "no pixel data")
    for required in ("Rows", "Columns", "BitsAllocated"):
        if ds.get(required) in (None, "", 0):
            raise ConversionError("read", "bad-header", f"missing or empty {required}")
    return ds


def _looks_like_image(ds: Any) -> bool:
    if any(k in ds for k in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")):
        return True
    meta = getattr(ds, "file_meta", None)
    sop_class = (meta.get("MediaStorageSOPClassUID") if meta is not None else None) or ds.get("SOPClassUID")
    return sop_class is not None and "Image" in str(getattr(sop_class, "name", ""))


def _read_legacy(path: Path) -> Any:
    """Files without the Part 10 preamble: accepted only if they really hold an image.

    Old ACR-NEMA style files are legitimate; anything else read with
    ``force=True`` is noise, and is reported as "not a DICOM file".
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" in ds and ds.get("Rows") and ds.get("Columns") and ds.get("BitsAllocated"):
            if "TransferSyntaxUID" not in ds.file_meta:
                ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
            return ds
        standard_class = str(ds.get("SOPClassUID", "")).startswith(_DICOM_UID_ROOT)
    except Exception:  # noqa: BLE001 - garbage read with force: it is simply not DICOM
        standard_class = False
    if standard_class and "PixelData" not in ds:
        # A real object without the Part 10 header (an RT plan, a report): say what it lacks.
        raise ConversionError("read", "no-pixel-data", "no pixel data (a DICOM data set without the Part 10 header)")
    raise ConversionError("read", "not-dicom", "not a DICOM file")


def image_info(ds: Any) -> ImageInfo:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    return ImageInfo(
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        frames=_number_of_frames(ds),
        photometric=str(ds.get("PhotometricInterpretation", "")),
        transfer_syntax=str(getattr(ts, "name", ts) or ""),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
    )


def _number_of_frames(ds: Any) -> int:
    raw = ds.get("NumberOfFrames", 1)
    try:
        frames = int(raw) if raw not in (None, "") else 1
    except (TypeError, ValueError):
        raise ConversionError("read", "bad-header", f"invalid NumberOfFrames {str(raw)[:20]!r}") from None
    if frames < 1:
        raise ConversionError("read", "bad-header", f"invalid NumberOfFrames {frames}")
    return frames


def check_pixel_length(ds: Any) -> None:
    """Native (uncompressed) pixel data must be as long as the header says."""
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is None or ts.is_compressed or "PixelData" not in ds:
        return
    rows, cols = int(ds.Rows), int(ds.Columns)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    frames = _number_of_frames(ds)
    if rows * cols * spp > MAX_FRAME_PIXELS:
        raise ConversionError("read", "bad-header", f"frame of {rows}x{cols}x{spp} samples exceeds the limit")
    pixels = rows * cols * spp * frames
    expected = math.ceil(pixels / 8) if bits == 1 else pixels * (bits // 8)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric.startswith("YBR_FULL_422"):
        expected = expected // 3 * 2
    actual = len(ds.PixelData)
    if actual < expected:
        raise ConversionError(
            "decode", "short-pixel-data", f"pixel data shorter than the header says ({actual} of {expected} bytes)"
        )


def decode_frame(ds: Any, index: int) -> np.ndarray:
    """Frame ``index`` as pydicom decodes it (YBR converted to RGB)."""
    from pydicom.pixels.utils import pixel_array

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pixel_array(ds, index=index)
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise RuntimeError/ValueError/...
        ts = ds.file_meta.get("TransferSyntaxUID")
        name = getattr(ts, "name", "unknown transfer syntax")
        raise ConversionError(
            "decode", "undecodable", f"cannot decode {name} pixel data ({_decoder_reason(exc)})"
        ) from None


def _decoder_reason(exc: Exception) -> str:
    """One line: each decoder plugin's own message when all of them failed (about the codestream, never a value)."""
    text = str(exc).strip()
    if not text.startswith(_ALL_PLUGINS_FAILED):
        return one_line(exc, limit=160)
    plugins = [line.strip() for line in text[len(_ALL_PLUGINS_FAILED) :].splitlines() if line.strip()]
    reasons = "; ".join(p if len(p) <= 160 else p[:159] + "…" for p in plugins)
    return f"every decoder failed: {reasons}" if reasons else "every decoder failed"


def _functional_item(ds: Any, index: int, sequence: str) -> Any | None:
    """The first item of ``sequence`` for frame ``index``: per-frame groups first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and index < len(per_frame):
        seq = per_frame[index].get(sequence)
        if seq:
            return seq[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(sequence)
        if seq:
            return seq[0]
    return None


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None
