"""DICOM image → 8-bit display pixels → JPEG, as DICOM's grayscale pipeline defines it.

Monochrome images go through the Modality LUT stage (Rescale Slope/Intercept
or a Modality LUT Sequence), then the VOI stage (a window, a VOI LUT, or the
frame's own minimum-maximum when the file has neither, as DCMTK's
``dcmj2pnm +Wm`` does), then MONOCHROME1 is inverted, and the result is
scaled to 0..255. Enhanced multi-frame files (Enhanced CT/MR, ...) keep their
rescale and window in the per-frame or shared functional groups; pydicom's
``apply_modality_lut``/``apply_voi_lut`` read only the top-level attributes, so
those are looked up here frame by frame.

Windowing is DICOM's (PS3.3 C.11.2.1.2): LINEAR maps
``[c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2]`` onto the output range;
LINEAR_EXACT and SIGMOID are supported too. It is never "stretch each image's
own minimum and maximum" unless the file has no window and no VOI LUT.

Colour images (RGB, YBR_*, PALETTE COLOR) become RGB; pydicom decodes every
compressed transfer syntax it has a plugin for (JPEG baseline/extended/
lossless via pylibjpeg-libjpeg, JPEG-LS, JPEG 2000 via pylibjpeg-openjpeg,
RLE, deflate).

Bad files raise :class:`ConversionError` with a stage (``read`` or
``decode``) and a short reason; no JPEG is written for them.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# Bound on one frame's decoded size: a header claiming more is rejected before
# any allocation (a corrupt Rows/Columns must not take the pod down).
MAX_FRAME_PIXELS = 120_000_000

DEFAULT_JPEG_QUALITY = 90


class ConversionError(Exception):
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


@dataclass
class RenderResult:
    info: ImageInfo
    jpeg_paths: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


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
        except Exception as exc:  # pydicom raises many types on damaged files
            raise ConversionError("read", "unreadable", f"unreadable DICOM ({_short(exc)})") from None
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
    except Exception:  # noqa: BLE001 - garbage read with force: it is simply not DICOM
        pass
    raise ConversionError("read", "not-dicom", "not a DICOM file")


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        raise ConversionError("decode", "short-pixel-data", f"pixel data shorter than the header says ({actual} of {expected} bytes)")


# --------------------------------------------------------------------------- pixel pipeline


def decode_frame(ds: Any, index: int) -> np.ndarray:
    """Frame ``index`` as pydicom decodes it (YBR converted to RGB)."""
    from pydicom.pixels import pixel_array

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pixel_array(ds, index=index)
    except ConversionError:
        raise
    except Exception as exc:  # decoder plugins raise RuntimeError/ValueError/...
        ts = ds.file_meta.get("TransferSyntaxUID")
        name = getattr(ts, "name", "unknown transfer syntax")
        raise ConversionError("decode", "undecodable", f"cannot decode {name} pixel data ({_short(exc)})") from None


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


def modality_values(ds: Any, arr: np.ndarray, index: int) -> np.ndarray:
    """Stored values → modality values (float32) for frame ``index``."""
    transform = _functional_item(ds, index, "PixelValueTransformationSequence")
    if transform is not None:
        slope = _first(transform.get("RescaleSlope"))
        intercept = _first(transform.get("RescaleIntercept"))
        return _rescale(arr, slope, intercept)
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    return _rescale(arr, _first(ds.get("RescaleSlope")), _first(ds.get("RescaleIntercept")))


def _rescale(arr: np.ndarray, slope: float | None, intercept: float | None) -> np.ndarray:
    out = arr.astype(np.float32)
    if slope is not None and slope != 1.0:
        out *= np.float32(slope)
    if intercept:
        out += np.float32(intercept)
    return out


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"


def frame_window(ds: Any, index: int) -> Window | None:
    """The first window for frame ``index`` (functional groups, then top level), or None."""
    item = _functional_item(ds, index, "FrameVOILUTSequence")
    source = item if item is not None and "WindowCenter" in item else ds
    center = _first(source.get("WindowCenter"))
    width = _first(source.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    function = str(source.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return Window(center, width, function)


def minmax_window(values: np.ndarray) -> Window:
    """DCMTK's ``+Wm``: the window whose LINEAR bounds are exactly the frame's min and max."""
    lo = float(values.min())
    hi = float(values.max())
    return Window((lo + hi + 1) / 2, hi - lo + 1, "LINEAR")


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """DICOM windowing to [0, 1] (float32), PS3.3 C.11.2.1.2 / C.11.2.1.3.

    LINEAR: below ``c - 0.5 - (w-1)/2`` → 0, above ``c - 0.5 + (w-1)/2`` → 1,
    linear in between; the clip gives exactly those bounds.
    """
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (values - np.float32(c)) / np.float32(w)))).astype(np.float32)
    if window.function == "LINEAR_EXACT":
        out = (values - np.float32(c)) / np.float32(w) + np.float32(0.5)
        return np.clip(out, 0.0, 1.0, out=out)
    if w <= 1:
        # Width 1 is a threshold at c - 0.5.
        return (values > np.float32(c - 0.5)).astype(np.float32)
    out = (values - np.float32(c - 0.5)) / np.float32(w - 1) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def apply_voi_lut_sequence(ds: Any, values: np.ndarray) -> np.ndarray:
    """A VOI LUT Sequence's first LUT, scaled to [0, 1] by the LUT's output bit depth."""
    item = ds.VOILUTSequence[0]
    descriptor = [int(v) for v in item.LUTDescriptor]
    entries = descriptor[0] or 65536
    first_mapped = descriptor[1]
    bits = descriptor[2]
    lut = np.asarray(item.LUTData, dtype=np.float32).ravel()
    if lut.size != entries:
        raise ConversionError("decode", "bad-header", f"VOI LUT has {lut.size} entries, descriptor says {entries}")
    # Signed first-mapped values are stored as US: reinterpret if the image is signed.
    if first_mapped > 32767 and int(ds.get("PixelRepresentation", 0)) == 1:
        first_mapped -= 65536
    idx = np.clip(np.rint(values - first_mapped), 0, entries - 1).astype(np.intp)
    top = float(2**bits - 1)
    actual_max = float(lut.max()) if lut.size else top
    if actual_max > top:  # descriptor understates the depth (seen in the wild)
        top = float(2 ** math.ceil(math.log2(actual_max + 1)) - 1)
    return lut[idx] / np.float32(top)


def _voi_to_uint8(ds: Any, values: np.ndarray, index: int, minmax_from: np.ndarray | None = None) -> np.ndarray:
    """Modality values → VOI → 8 bits → MONOCHROME1 inversion."""
    window = frame_window(ds, index)
    if window is not None:
        unit = apply_window(values, window)
    elif "VOILUTSequence" in ds:
        unit = apply_voi_lut_sequence(ds, values)
    else:
        unit = apply_window(values, minmax_window(values if minmax_from is None else minmax_from))
    out = unit * np.float32(255.0)
    out += np.float32(0.5)
    display = out.astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        np.subtract(255, display, out=display)
    return display


def monochrome_to_uint8(ds: Any, arr: np.ndarray, index: int) -> np.ndarray:
    """Stored values → 8-bit display values for one monochrome frame.

    For integer images larger than their value range (the usual case: 12-16
    bit CT/MR/CR), the whole pipeline is evaluated once per distinct stored
    value into a lookup table and applied with one gather; the arithmetic per
    value is the same as the direct path, so the output is identical.
    """
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2 and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if (hi - lo + 1) * 4 <= arr.size:
            stored = np.arange(lo, hi + 1, dtype=np.int32).astype(arr.dtype.newbyteorder("="))
            values = modality_values(ds, stored, index)
            minmax_from = None
            if frame_window(ds, index) is None and "VOILUTSequence" not in ds and "ModalityLUTSequence" in ds:
                # A Modality LUT need not be monotonic: min-max must come from the values really present.
                present = values[arr.astype(np.intp) - lo]
                minmax_from = np.array([present.min(), present.max()], dtype=np.float32)
            elif "ModalityLUTSequence" not in ds:
                minmax_from = values[[0, -1]]  # rescale is linear: the extremes are at lo and hi
            table = _voi_to_uint8(ds, values, index, minmax_from)
            offsets = arr.astype(np.intp)
            if lo:
                offsets -= lo
            return table[offsets]
    return _voi_to_uint8(ds, modality_values(ds, arr, index), index)


def color_to_uint8(ds: Any, arr: np.ndarray) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        return palette_to_uint8(ds, arr)
    bits = int(ds.get("BitsStored", ds.BitsAllocated) or 8)
    return _scale_to_uint8(arr, bits)


def palette_to_uint8(ds: Any, arr: np.ndarray) -> np.ndarray:
    """PALETTE COLOR indices → 8-bit RGB.

    pydicom's ``apply_color_lut`` reads 16-bit LUT data as little endian even
    in big-endian files, so plain LUTs are applied here with the file's byte
    order; segmented LUTs (rare) are left to pydicom.
    """
    if any(f"{c}PaletteColorLookupTableData" not in ds for c in ("Red", "Green", "Blue")):
        from pydicom.pixels import apply_color_lut

        try:
            rgb = apply_color_lut(arr, ds)
        except Exception as exc:  # noqa: BLE001 - malformed palette
            raise ConversionError("decode", "bad-header", f"cannot apply the colour palette ({_short(exc)})") from None
        return _scale_to_uint8(rgb, 16 if rgb.dtype.itemsize > 1 else 8)
    little = ds.original_encoding[1] if ds.original_encoding[1] is not None else ds.is_little_endian
    luts = []
    bits = 8
    first_mapped = 0
    entries = 0
    for colour in ("Red", "Green", "Blue"):
        entries, first_mapped, bits = (int(v) for v in ds[f"{colour}PaletteColorLookupTableDescriptor"].value)
        entries = entries or 65536
        raw = bytes(ds[f"{colour}PaletteColorLookupTableData"].value)
        if bits == 8 and len(raw) in (entries, entries + 1):
            lut = np.frombuffer(raw[:entries], dtype=np.uint8)
        else:
            lut = np.frombuffer(raw[: 2 * entries], dtype="<u2" if little else ">u2")
        if lut.size != entries:
            raise ConversionError("decode", "bad-header", f"{colour} palette has {lut.size} entries, descriptor says {entries}")
        luts.append(lut.astype(np.uint16))
    # One (entries, 3) table, scaled to 8 bits once, gathered once.
    table = _scale_to_uint8(np.stack(luts, axis=-1), bits)
    index = arr.astype(np.intp)
    if first_mapped:
        index -= first_mapped
    np.clip(index, 0, entries - 1, out=index)
    return table[index]


def _scale_to_uint8(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8 and bits <= 8:
        return arr if bits == 8 else (arr.astype(np.float32) * (255.0 / (2**bits - 1)) + 0.5).astype(np.uint8)
    scale = np.float32(255.0 / (2.0**bits - 1))
    out = arr.astype(np.float32) * scale
    out += np.float32(0.5)
    return np.clip(out, 0, 255).astype(np.uint8)


def display_frame(ds: Any, arr: np.ndarray, index: int) -> np.ndarray:
    """One decoded frame → 8-bit display pixels: (rows, cols) grey or (rows, cols, 3) RGB."""
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if spp == 1 and photometric in ("MONOCHROME1", "MONOCHROME2", ""):
        if arr.ndim != 2:
            raise ConversionError("decode", "undecodable", f"unexpected frame shape {arr.shape} for a monochrome image")
        return monochrome_to_uint8(ds, arr, index)
    if spp == 1 and photometric == "PALETTE COLOR":
        return color_to_uint8(ds, arr)
    if spp == 3:
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ConversionError("decode", "undecodable", f"unexpected frame shape {arr.shape} for a colour image")
        return color_to_uint8(ds, arr)
    raise ConversionError("decode", "unsupported", f"unsupported photometric interpretation {photometric!r} with {spp} samples")


def display_frames(ds: Any, *, all_frames: bool) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, 8-bit pixels)`` for the first frame, or every frame, one at a time."""
    check_pixel_length(ds)
    count = _number_of_frames(ds) if all_frames else 1
    rows, cols = int(ds.Rows), int(ds.Columns)
    for index in range(count):
        arr = decode_frame(ds, index)
        pixels = display_frame(ds, arr, index)
        if pixels.shape[:2] != (rows, cols):
            raise ConversionError("decode", "undecodable", f"frame {index + 1} decoded to {pixels.shape[:2]}, header says {(rows, cols)}")
        yield index, pixels


# --------------------------------------------------------------------------- JPEG


def render_jpeg(pixels: np.ndarray, *, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """8-bit grey or RGB pixels → JPEG bytes at the image's own size."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(pixels), mode=None)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def jpeg_names(stem: str, frames: int, *, all_frames: bool) -> list[str]:
    """Deterministic JPEG file names for one DICOM file: ``stem.jpg`` or ``stem_f0001.jpg``..."""
    if not all_frames or frames == 1:
        return [f"{stem}.jpg"]
    return [f"{stem}_f{i + 1:04d}.jpg" for i in range(frames)]


def render_file(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    stem: str,
    *,
    all_frames: bool = False,
    quality: int = DEFAULT_JPEG_QUALITY,
) -> RenderResult:
    """Convert one DICOM file into JPEG file(s) in ``out_dir``; raises :class:`ConversionError`.

    Frames are decoded and written one at a time (memory: one frame plus the
    file). On error, JPEGs already written for this file are removed, so a
    bad file never leaves a partial set behind.
    """
    ds = read_dataset(path)
    info = image_info(ds)
    out = Path(out_dir)
    names = jpeg_names(stem, info.frames, all_frames=all_frames)
    written: list[Path] = []
    try:
        for index, pixels in display_frames(ds, all_frames=all_frames):
            target = out / names[index]
            target.write_bytes(render_jpeg(pixels, quality=quality))
            written.append(target)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return RenderResult(info=info, jpeg_paths=written)


def render_first_frame(path: str | os.PathLike[str]) -> np.ndarray:
    """The first frame's 8-bit display pixels (for agreement tests and the bench)."""
    ds = read_dataset(path)
    for _, pixels in display_frames(ds, all_frames=False):
        return pixels
    raise ConversionError("decode", "undecodable", "no frames")  # pragma: no cover - frames >= 1
