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
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clinicflow.dicom.dataset import ConversionError, ImageInfo, image_info, read_dataset
from clinicflow.dicom.display import display_frames

DEFAULT_JPEG_QUALITY = 90


@dataclass
class RenderResult:
    info: ImageInfo
    jpeg_paths: list[Path] = field(default_factory=list)


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
