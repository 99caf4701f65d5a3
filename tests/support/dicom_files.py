"""DICOM test files shared by the unit and integration tests: pydicom's own set, pydicom-data, and bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PYDICOM_DATA = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


def _pydicom_data_root() -> Path | None:
    try:
        import data_store  # pydicom-data's package

        root = Path(data_store.__file__).parent / "data"
        return root if root.is_dir() else None
    except ImportError:
        return None


PYDICOM_DATA_EXTRA = _pydicom_data_root()


def sample_file(name: str) -> Path:
    """A DICOM test file by name, from pydicom's own set or pydicom-data (both offline)."""
    for root in (PYDICOM_DATA, PYDICOM_DATA_EXTRA):
        if root is not None and (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"test file {name} is in neither pydicom's test files nor pydicom-data")


# --------------------------------------------------------------------------- bad files


def make_bad_files(directory: Path) -> dict[str, Path]:
    """Bad inputs of every kind the flow must survive, generated from real test files."""
    import pydicom

    directory.mkdir(parents=True, exist_ok=True)
    ct = sample_file("CT_small.dcm").read_bytes()
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = directory / name
        files[name].write_bytes(data)

    put("empty.dcm", b"")
    put("not_dicom.dcm", b"%PDF-1.4 this is a scanned report, not an image\n" * 20)
    put("truncated_header.dcm", ct[:1200])  # cut before the pixel data
    put("truncated_pixels.dcm", ct[: len(ct) - 5000])  # cut inside the pixel data
    shutil.copyfile(sample_file("rtplan.dcm"), directory / "no_pixel_data.dcm")
    files["no_pixel_data.dcm"] = directory / "no_pixel_data.dcm"

    # Pixel data shorter than Rows x Columns x BitsAllocated says, in a well-formed file.
    ds = pydicom.dcmread(sample_file("MR_small.dcm"))
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(directory / "short_pixel_data.dcm")
    files["short_pixel_data.dcm"] = directory / "short_pixel_data.dcm"

    # A JPEG 2000 file whose codestream is garbage: well-formed DICOM, undecodable pixels.
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(sample_file("MR_small_jp2klossless.dcm"))
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(2000)])
    ds.save_as(directory / "undecodable.dcm")
    files["undecodable.dcm"] = directory / "undecodable.dcm"
    return files


# Expected (stage, kind) per bad file.
BAD_FILE_KINDS = {
    "empty.dcm": ("read", "empty-file"),
    "not_dicom.dcm": ("read", "not-dicom"),
    "truncated_header.dcm": ("read", "truncated"),
    "truncated_pixels.dcm": ("decode", "short-pixel-data"),
    "no_pixel_data.dcm": ("read", "no-pixel-data"),
    "short_pixel_data.dcm": ("decode", "short-pixel-data"),
    "undecodable.dcm": ("decode", "undecodable"),
}


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    return make_bad_files(tmp_path / "bad")
