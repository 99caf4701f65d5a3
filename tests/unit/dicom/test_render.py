"""Conversion: every transfer syntax and photometric kind, windowing as DICOM defines it, DCMTK agreement."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from clinicflow.dicom.dataset import ConversionError, read_dataset
from clinicflow.dicom.display import Window, apply_window, display_frames, frame_window, modality_values
from clinicflow.dicom.render import render_file, render_first_frame
from tests.support.dicom_files import BAD_FILE_KINDS, sample_file

# name → (what it exercises, expected JPEG mode)
CONVERSION_CASES = {
    "CT_small.dcm": ("uncompressed, signed, rescale, no window", "L"),
    "MR_small.dcm": ("uncompressed, signed, with window", "L"),
    "693_UNCR.dcm": ("uncompressed CT with window", "L"),
    "eCT_Supplemental.dcm": ("enhanced multi-frame CT, functional groups", "L"),
    "JPGExtended.dcm": ("JPEG extended 12-bit", "L"),
    "JPEG-LL.dcm": ("JPEG lossless, signed", "L"),
    "SC_rgb_jpeg_dcmtk.dcm": ("JPEG baseline, YBR_FULL colour", "RGB"),
    "color3d_jpeg_baseline.dcm": ("JPEG baseline YBR_FULL_422, 120 frames", "RGB"),
    "MR_small_jpeg_ls_lossless.dcm": ("JPEG-LS lossless", "L"),
    "JPEGLSNearLossless_16.dcm": ("JPEG-LS near-lossless", "L"),
    "JPEG2000.dcm": ("JPEG 2000", "L"),
    "MR_small_jp2klossless.dcm": ("JPEG 2000 lossless", "L"),
    "US1_J2KR.dcm": ("JPEG 2000 YBR_RCT colour", "RGB"),
    "MR_small_RLE.dcm": ("RLE", "L"),
    "SC_rgb_rle_16bit.dcm": ("RLE 16-bit RGB", "RGB"),
    "image_dfl.dcm": ("deflated explicit VR", "L"),
    "RG1_UNCI.dcm": ("MONOCHROME1 with window", "L"),
    "emri_small.dcm": ("multi-frame MR, no window", "L"),
    "US1_UNCR.dcm": ("RGB", "RGB"),
    "SC_ybr_full_uncompressed.dcm": ("YBR_FULL uncompressed", "RGB"),
    "OBXXXX1A.dcm": ("PALETTE COLOR", "RGB"),
    "OBXXXX1A_expb.dcm": ("PALETTE COLOR, big endian", "RGB"),
    "mlut_18.dcm": ("Modality LUT Sequence", "L"),
    "vlut_04.dcm": ("VOI LUT Sequence", "L"),
    "liver_1frame.dcm": ("1-bit segmentation", "L"),
}


@pytest.mark.parametrize("name", sorted(CONVERSION_CASES))
def test_converts_to_jpeg_at_the_images_own_size(name: str, tmp_path: Path) -> None:
    path = sample_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    result = render_file(path, tmp_path, "out")
    assert len(result.jpeg_paths) == 1
    with Image.open(result.jpeg_paths[0]) as jpg:
        assert jpg.format == "JPEG"
        assert jpg.size == (int(ds.Columns), int(ds.Rows))
        assert jpg.mode == CONVERSION_CASES[name][1]
        pixels = np.asarray(jpg)
    # Not a blank image: the windowing produced a picture.
    assert pixels.std() > 1.0
    assert result.info.rows == ds.Rows
    assert result.info.columns == ds.Columns


def test_multi_frame_gives_one_jpg_per_frame_or_the_first_only(tmp_path: Path) -> None:
    path = sample_file("emri_small.dcm")  # 10 frames
    (tmp_path / "all").mkdir()
    every = render_file(path, tmp_path / "all", "mr", all_frames=True)
    assert [p.name for p in every.jpeg_paths] == [f"mr_f{i:04d}.jpg" for i in range(1, 11)]
    frames = [np.asarray(Image.open(p)) for p in every.jpeg_paths]
    assert any(np.abs(frames[0].astype(int) - f.astype(int)).mean() > 1 for f in frames[1:])
    (tmp_path / "first").mkdir()
    first = render_file(path, tmp_path / "first", "mr", all_frames=False)
    assert [p.name for p in first.jpeg_paths] == ["mr.jpg"]
    assert first.info.frames == 10


def test_window_maps_the_dicom_interval_not_the_image_min_max() -> None:
    # PS3.3 C.11.2.1.2.1: [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2] -> [0, 1].
    c, w = 40.0, 400.0
    lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    values = np.array([lo - 100, lo, (lo + hi) / 2, hi, hi + 100], dtype=np.float32)
    out = apply_window(values, Window(c, w))
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0], abs=1e-6)
    # Width 1: a threshold at c - 0.5.
    assert apply_window(np.array([39.4, 39.6], dtype=np.float32), Window(40, 1)).tolist() == [0.0, 1.0]
    # LINEAR_EXACT: [c - w/2, c + w/2].
    exact = apply_window(np.array([c - w / 2, c, c + w / 2], dtype=np.float32), Window(c, w, "LINEAR_EXACT"))
    assert exact.tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-6)
    sigmoid = apply_window(np.array([c], dtype=np.float32), Window(c, w, "SIGMOID"))
    assert sigmoid.tolist() == pytest.approx([0.5])


def test_windowed_output_ignores_the_images_own_range() -> None:
    ds = read_dataset(sample_file("693_UNCR.dcm"))
    window = frame_window(ds, 0)
    assert window is not None
    pixels = render_first_frame(sample_file("693_UNCR.dcm"))
    values = modality_values(ds, ds.pixel_array, 0)
    below = values <= window.center - 0.5 - (window.width - 1) / 2
    above = values > window.center - 0.5 + (window.width - 1) / 2
    assert below.any()
    assert above.any()
    assert (pixels[below] == 0).all()
    assert (pixels[above] == 255).all()


def test_monochrome1_is_inverted_after_voi(tmp_path: Path) -> None:
    path = sample_file("RG1_UNCI.dcm")
    inverted = render_first_frame(path)
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME2"
    plain_path = tmp_path / "as_mono2.dcm"
    ds.save_as(plain_path)
    plain = render_first_frame(plain_path)
    assert np.array_equal(inverted.astype(int), 255 - plain.astype(int))


def test_enhanced_ct_uses_functional_group_window_and_rescale(tmp_path: Path) -> None:
    path = sample_file("eCT_Supplemental.dcm")
    ds = read_dataset(path)
    assert "WindowCenter" not in ds
    assert "RescaleSlope" not in ds  # only in the functional groups
    window = frame_window(ds, 0)
    assert (window.center, window.width) == (49.0, 102.0)
    ours = render_first_frame(path)
    raw = ds.pixel_array[0].astype(np.float32) - 1024.0  # shared group: slope 1, intercept -1024
    expected = (apply_window(raw, Window(49.0, 102.0)) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(ours, expected)

    # A per-frame window overrides the shared one for that frame only.
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    voi = Dataset()
    voi.WindowCenter = "300"
    voi.WindowWidth = "2000"
    ds.PerFrameFunctionalGroupsSequence[1].FrameVOILUTSequence = Sequence([voi])
    frames = dict(display_frames(ds, all_frames=True))
    raw2 = ds.pixel_array[1].astype(np.float32) - 1024.0
    assert np.array_equal(frames[1], (apply_window(raw2, Window(300, 2000)) * 255 + 0.5).astype(np.uint8))
    assert np.array_equal(frames[0], expected)


def test_big_endian_palette_equals_little_endian() -> None:
    # pydicom's apply_color_lut reads big-endian LUT data as little endian; ours must not.
    little = render_first_frame(sample_file("OBXXXX1A.dcm"))
    big = render_first_frame(sample_file("OBXXXX1A_expb.dcm"))
    assert np.array_equal(little, big)


def test_signed_pixels_keep_their_sign() -> None:
    ds = read_dataset(sample_file("CT_small.dcm"))
    assert ds.PixelRepresentation == 1
    values = modality_values(ds, ds.pixel_array, 0)
    assert values.min() < 0  # air in HU: a signed read (unsigned would wrap to large positives)


@pytest.mark.parametrize("name", sorted(BAD_FILE_KINDS))
def test_bad_files_raise_a_reason_and_leave_no_jpg(name: str, bad_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "jpg"
    out.mkdir()
    with pytest.raises(ConversionError) as info:
        render_file(bad_files[name], out, "x", all_frames=True)
    assert (info.value.stage, info.value.kind) == BAD_FILE_KINDS[name]
    assert info.value.reason
    assert list(out.iterdir()) == []


def test_a_failing_later_frame_removes_the_earlier_jpgs(tmp_path: Path) -> None:
    # Three frames declared, pixel data for two and a half: frame 1 renders, then the length check fails.
    ds = pydicom.dcmread(sample_file("emri_small.dcm"))
    ds.NumberOfFrames = 3
    frame = int(ds.Rows) * int(ds.Columns) * 2
    ds.PixelData = ds.PixelData[: frame * 2 + frame // 2]
    path = tmp_path / "short.dcm"
    ds.save_as(path)
    out = tmp_path / "jpg"
    out.mkdir()
    with pytest.raises(ConversionError):
        render_file(path, out, "x", all_frames=True)
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- agreement with DCMTK

# Files DCMTK's dcmj2pnm (or dcml2pnm for JPEG-LS) reads, with the VOI option matching ours:
# "+Wi 1" where the file has a window, "+Wl 1" for a VOI LUT, "+Wm" where it has neither,
# an explicit "+Ww c w" for the enhanced CT (DCMTK does not pick functional-group windows).
AGREEMENT_CASES = [
    ("CT_small.dcm", ["+Wm"]),
    ("MR_small.dcm", ["+Wi", "1"]),
    ("MR_small_RLE.dcm", ["+Wi", "1"]),
    ("693_UNCI.dcm", ["+Wi", "1"]),
    ("MR2_UNCI.dcm", ["+Wi", "1"]),
    ("RG1_UNCI.dcm", ["+Wi", "1"]),
    ("RG3_UNCR.dcm", ["+Wi", "1"]),
    ("JPGExtended.dcm", ["+Wm"]),
    ("JPEG-LL.dcm", ["+Wm"]),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", ["+Wi", "1"]),
    ("MR_small_jpeg_ls_lossless.dcm", ["+Wi", "1"]),
    ("emri_small_jpeg_ls_lossless.dcm", ["+Wm"]),
    ("emri_small.dcm", ["+Wm"]),
    ("mlut_18.dcm", ["+Wm"]),
    ("vlut_04.dcm", ["+Wl", "1"]),
    ("image_dfl.dcm", ["+Wm"]),
    ("eCT_Supplemental.dcm", ["+Ww", "49", "102"]),
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", ["+Wi", "1"]),
    ("US1_UNCR.dcm", []),
    ("SC_rgb_jpeg_dcmtk.dcm", []),
    ("SC_ybr_full_uncompressed.dcm", []),
    ("examples_ybr_color.dcm", []),
    ("OBXXXX1A.dcm", []),
    ("OBXXXX1A_expb.dcm", []),
]
MAX_MEAN_ABS_DIFF = 2.0  # grey levels


@pytest.mark.skipif(shutil.which("dcmj2pnm") is None, reason="DCMTK is not installed")
@pytest.mark.parametrize(("name", "voi"), AGREEMENT_CASES, ids=[c[0] for c in AGREEMENT_CASES])
def test_agrees_with_dcmtk(name: str, voi: list[str], tmp_path: Path) -> None:
    path = sample_file(name)
    ts = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    tool = "dcml2pnm" if "JPEG-LS" in ts.name else "dcmj2pnm"
    out = tmp_path / "dcmtk.pnm"
    # -O: no overlays (DCMTK burns them in by default; we convert the image only).
    done = subprocess.run([tool, "-O", *voi, str(path), str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reference = np.asarray(Image.open(io.BytesIO(out.read_bytes())))
    ours = render_first_frame(path)
    assert ours.shape == reference.shape
    diff = np.abs(ours.astype(int) - reference.astype(int))
    assert diff.mean() <= MAX_MEAN_ABS_DIFF, f"{name}: mean |diff| {diff.mean():.2f}"


@pytest.mark.parametrize(
    "name",
    [
        "693_UNCR.dcm",
        "RG1_UNCI.dcm",
        "mlut_18.dcm",
        "vlut_04.dcm",
        "MR2_UNCI.dcm",
        "JPEG-LL.dcm",
        "liver_1frame.dcm",
        "eCT_Supplemental.dcm",
    ],
)
def test_lookup_table_path_equals_the_direct_computation(name: str) -> None:
    from clinicflow.dicom.dataset import decode_frame
    from clinicflow.dicom.display import _voi_to_uint8, monochrome_to_uint8

    ds = read_dataset(sample_file(name))
    arr = decode_frame(ds, 0)
    lo, hi = int(arr.min()), int(arr.max())
    assert (hi - lo + 1) * 4 <= arr.size  # these files take the lookup-table path
    direct = _voi_to_uint8(ds, modality_values(ds, arr, 0), 0)
    assert np.array_equal(monochrome_to_uint8(ds, arr, 0), direct)


# DCMTK (3.6.7 as packaged) cannot read JPEG 2000 and misreads 32-bit big-endian pixel data:
# those files are checked against their lossless / little-endian twins instead.
TWINS = [
    ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),
    ("US1_J2KR.dcm", "US1_UNCR.dcm"),
    ("693_J2KR.dcm", "693_UNCR.dcm"),
    ("RG3_J2KR.dcm", "RG3_UNCR.dcm"),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
    ("rtdose_expb_1frame.dcm", "rtdose_1frame.dcm"),
    ("MR_small_bigendian.dcm", "MR_small.dcm"),
]


@pytest.mark.parametrize(("encoded", "reference"), TWINS, ids=[t[0] for t in TWINS])
def test_lossless_and_big_endian_twins_render_identically(encoded: str, reference: str) -> None:
    assert np.array_equal(render_first_frame(sample_file(encoded)), render_first_frame(sample_file(reference)))


def test_an_unreadable_file_is_named_by_the_first_line_of_the_readers_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: object, **kwargs: object) -> None:
        raise ValueError("bad tag (0010,0010)\nPatientName: DOE^JANE")

    monkeypatch.setattr(pydicom, "dcmread", fail)
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\0" * 200)
    with pytest.raises(ConversionError) as caught:
        read_dataset(path)
    assert (caught.value.kind, caught.value.reason) == (
        "unreadable",
        "unreadable DICOM (ValueError: bad tag (0010,0010))",
    )


def test_an_undecodable_file_names_every_decoders_reason_in_one_line_without_tracebacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A 12-bit JPEG Extended stream with scan parameters libjpeg refuses (dcmj2pnm only warns about them).
    out = tmp_path / "jpg"
    out.mkdir()
    with caplog.at_level("DEBUG"), pytest.raises(ConversionError) as caught:
        render_file(sample_file("JPEG-lossy.dcm"), out, "x")
    reason = caught.value.reason
    assert (caught.value.stage, caught.value.kind) == ("decode", "undecodable")
    assert reason.startswith("cannot decode JPEG Extended (Process 2 and 4) pixel data (every decoder failed: ")
    assert "pylibjpeg: libjpeg error code" in reason
    assert "pillow: Pillow does not support 'JPEG Extended'" in reason
    assert "\n" not in reason
    assert [r for r in caplog.records if r.name.startswith("pydicom.pixels.decoders")] == []
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm", "rtstruct.dcm"])
def test_a_data_set_without_the_part_10_header_and_no_image_is_no_pixel_data_not_non_dicom(name: str) -> None:
    with pytest.raises(ConversionError) as caught:
        read_dataset(sample_file(name))
    assert (caught.value.kind, caught.value.reason) == (
        "no-pixel-data",
        "no pixel data (a DICOM data set without the Part 10 header)",
    )
