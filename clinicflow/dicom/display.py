"""DICOM's grayscale pipeline (Modality LUT, VOI window or LUT, MONOCHROME1) and colour to 8-bit display pixels."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from clinicflow.core.errors import one_line
from clinicflow.dicom.dataset import (
    ConversionError,
    _first,
    _functional_item,
    _number_of_frames,
    check_pixel_length,
    decode_frame,
)


def modality_values(ds: Any, arr: np.ndarray, index: int) -> np.ndarray:
    """Stored values → modality values (float32) for frame ``index``."""
    transform = _functional_item(ds, index, "PixelValueTransformationSequence")
    if transform is not None:
        slope = _first(transform.get("RescaleSlope"))
        intercept = _first(transform.get("RescaleIntercept"))
        return _rescale(arr, slope, intercept)
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels.processing import apply_modality_lut

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
        sigmoid: np.ndarray = (1.0 / (1.0 + np.exp(-4.0 * (values - np.float32(c)) / np.float32(w)))).astype(np.float32)
        return sigmoid
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
    scaled: np.ndarray = lut[idx] / np.float32(top)
    return scaled


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
        from pydicom.pixels.processing import apply_color_lut

        try:
            rgb = apply_color_lut(arr, ds)
        except Exception as exc:  # noqa: BLE001 - malformed palette
            raise ConversionError(
                "decode", "bad-header", f"cannot apply the colour palette ({one_line(exc, limit=160)})"
            ) from None
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
            raise ConversionError(
                "decode", "bad-header", f"{colour} palette has {lut.size} entries, descriptor says {entries}"
            )
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
    clipped: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
    return clipped


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
    raise ConversionError(
        "decode", "unsupported", f"unsupported photometric interpretation {photometric!r} with {spp} samples"
    )


def display_frames(ds: Any, *, all_frames: bool) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, 8-bit pixels)`` for the first frame, or every frame, one at a time."""
    check_pixel_length(ds)
    count = _number_of_frames(ds) if all_frames else 1
    rows, cols = int(ds.Rows), int(ds.Columns)
    for index in range(count):
        arr = decode_frame(ds, index)
        pixels = display_frame(ds, arr, index)
        if pixels.shape[:2] != (rows, cols):
            raise ConversionError(
                "decode", "undecodable", f"frame {index + 1} decoded to {pixels.shape[:2]}, header says {(rows, cols)}"
            )
        yield index, pixels
