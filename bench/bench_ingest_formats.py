"""Bench: reading documents of each format (text, PDF page, OCR page, HL7, FHIR, e-mail) into Medical fields, and OCR.

Per format, in a child process of its own (so its peak RSS is its own): the documents of the corpus
(tests/corpus/ingest) of that format, repeated, go through what a run does to them before the database:
``build_document`` (encoding, MIME, text layer / OCR) and the rules extractor. Prints documents/s (pages/s for
PDF and OCR) and the child's peak RSS.

Anchor for OCR: the plain ``tesseract`` CLI (``tesseract IMAGE stdout --psm 4``, one process per page, as a
shell loop over a folder of scans would run it) on the same page images, in the same bench run; prints pages/s
of each and the ratio ours / CLI (ours also returns word confidences and runs the extractor).

    uv run --frozen python -m bench.bench_ingest_formats [--repeat 40] [--ocr-pages 6]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).parents[1]
FORMATS = {
    "text": (
        "discharge-summary-cardiology.txt",
        "lab-bmp.txt",
        "referral-oral-surgery.txt",
        "ed-discharge.html",
        "operative-note.rtf",
        "consult-note-latin1.txt",
    ),
    "hl7": ("adt-a01-escapes.hl7", "oru-r01-lab.hl7", "rde-o11-pharmacy.hl7"),
    "fhir": ("fhir-bundle-visit.json", "fhir-bundle-dental.json"),
    "pdf": ("discharge-summary-text-layer.pdf", "lab-report-text-layer.pdf"),
    "email": ("referral-email.eml", "lab-result-hl7.eml", "referral-latin1.eml"),
    "ocr": ("fax-referral.png",),
}


def _documents(kind: str) -> list[tuple[str, bytes]]:
    sys.path.insert(0, str(REPO))
    from tests.support.corpus import CORPUS, render

    out = []
    for name in FORMATS[kind]:
        source = CORPUS / "docs" / name
        data = (
            source.read_bytes()
            if source.exists()
            else render(name, (CORPUS / "render" / f"{name}.txt").read_text(encoding="utf-8"))
        )
        out.append((name, data))
    return out


def _child(kind: str, repeat: int) -> None:
    from clinicflow.connectors.objectstore.stores import ObjectInfo
    from clinicflow.ingest.extractors import DocumentText, RulesExtractor
    from clinicflow.ingest.pipeline import IngestSettings, build_document

    documents = _documents(kind)
    settings = IngestSettings(run_id="bench")
    extractor = RulesExtractor()
    extractor.extract_one(DocumentText("warm", "warm", "MRN: 1\nDiagnosis: E11.9"))  # code set loaded once
    pages = extracted = 0
    started = time.perf_counter()
    for n in range(repeat):
        for name, data in documents:
            staged = build_document(ObjectInfo(f"file:///bench/{n}/{name}", name, len(data), "v"), data, settings)
            pages += staged.page_count or 1
            if (
                staged.text is not None
                and extractor.extract_one(DocumentText(staged.id, staged.sha256, staged.text)).ok
            ):
                extracted += 1
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "documents": repeat * len(documents),
                "pages": pages,
                "extracted": extracted,
                "seconds": seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def _ocr_pages(count: int, folder: Path) -> list[Path]:
    sys.path.insert(0, str(REPO))
    from tests.support.corpus import CORPUS, render_page

    texts = [p.read_text(encoding="utf-8") for p in sorted((CORPUS / "render").glob("*.txt"))]
    paths = []
    for n in range(count):
        path = folder / f"page{n}.png"
        render_page(texts[n % len(texts)].split("\f")[0]).save(path)
        paths.append(path)
    return paths


def _ocr_ours(paths: list[Path]) -> float:
    from PIL import Image

    from clinicflow.ingest.text import ocr_image

    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            ocr_image(image)
    return len(paths) / (time.perf_counter() - started)


def _ocr_cli(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        subprocess.run(["tesseract", str(path), "stdout", "--psm", "4", "-l", "eng"], check=True, capture_output=True)
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--ocr-pages", type=int, default=6)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.repeat)
        return
    print(f"per format, rules extractor, one process each (repeat {args.repeat}; OCR: 2 rounds):")
    rows: dict[str, Any] = {}
    for kind in FORMATS:
        repeat = 2 if kind == "ocr" else args.repeat
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_ingest_formats", "--child", kind, "--repeat", str(repeat)],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows[kind] = row
        unit = "pages" if kind in ("pdf", "ocr") else "documents"
        rate = row[unit] / row["seconds"]
        print(
            f"  {kind:<5} {rate:8.1f} {unit}/s   ({row['documents']} documents, {row['extracted']} extracted, "
            f"peak RSS {row['peak_rss_mb']:.0f} MB)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        paths = _ocr_pages(args.ocr_pages, Path(tmp))
        cli = _ocr_cli(paths)
        ours = _ocr_ours(paths)
    print(
        f"OCR of {len(paths)} page images: tesseract CLI {cli:.2f} pages/s, clinicflow (pytesseract, with word "
        f"confidences) {ours:.2f} pages/s, ratio {ours / cli:.2f}x"
    )


if __name__ == "__main__":
    main()
