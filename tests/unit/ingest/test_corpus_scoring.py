"""The clinical inbox corpus read by the offline extractor, scored field by field against its truth files.

In-process: each document goes through the staging code's text step (``build_document``: encodings, HTML,
RTF, DOCX, PDF text layer, OCR) and the rules extractor, exactly as a run does, without a database.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from clinicflow.connectors.objectstore.stores import ObjectInfo
from clinicflow.ingest.extractors import DocumentText, RulesExtractor
from clinicflow.ingest.pipeline import IngestSettings, build_document
from tests.support.corpus import Score, build_corpus, score_one


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, object]]]:
    if shutil.which("tesseract") is None:
        pytest.fail("tesseract is not installed: scripts/bootstrap.sh installs tesseract-ocr and tesseract-ocr-eng")
    if shutil.which("jbig2dec") is None:
        pytest.fail("jbig2dec is not installed (the corpus's JBIG2 scan): scripts/bootstrap.sh installs it")
    folder = tmp_path_factory.mktemp("corpus")
    return folder, build_corpus(folder)


def test_the_corpus_covers_every_format_and_case(corpus: tuple[Path, dict[str, dict[str, object]]]) -> None:
    folder, truths = corpus
    assert len(truths) >= 40
    suffixes = Counter(Path(name).suffix for name in truths)
    for suffix in (
        ".txt",
        ".md",
        ".rtf",
        ".html",
        ".hl7",
        ".json",
        ".xml",
        ".csv",
        ".pdf",
        ".png",
        ".tiff",
        ".jpg",
        ".docx",
        ".eml",
        ".heic",
        ".ndjson",
    ):
        assert suffixes[suffix], suffix
    expects = Counter(str(t["expect"]) for t in truths.values())
    assert expects["not-clinical"] >= 3
    assert expects["ambiguous-field"] >= 2
    assert expects["missing-field"] >= 2
    assert (folder / "nursing-note-utf16.txt").read_bytes().startswith(b"\xff\xfe")


def test_scores_per_field(
    corpus: tuple[Path, dict[str, dict[str, object]]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, truths = corpus
    extractor = RulesExtractor()
    scores = {kind: Score() for kind in ("text", "structured", "ocr", "decoy")}
    methods: Counter[str] = Counter()
    for name, truth in truths.items():
        data = (folder / name).read_bytes()
        staged = build_document(
            ObjectInfo(f"file:///corpus/{name}", name, len(data), "v1"), data, IngestSettings(run_id="score")
        )
        methods[str(staged.text_method)] += 1
        assert staged.text is not None, f"{name}: no text ({staged.text_error})"
        outcome = extractor.extract_one(DocumentText(staged.id, staged.sha256, staged.text))
        score_one(scores[str(truth["kind"])], name, truth, outcome.medical, outcome.reason)
        if outcome.reason == "ambiguous-field":  # the field and a count (or FHIR references: keys), never a value
            assert outcome.message.startswith(f"{truth['ambiguous']}: ")
            assert "candidates" in outcome.message or "patients (Patient/" in outcome.message
    with capsys.disabled():
        for kind, score in scores.items():
            print(f"\n[{kind}] field recall {score.recall():.3f}\n{score.table()}")
    wrong = [w for s in scores.values() for w in s.wrong]
    assert wrong == [], f"wrong identity values: {wrong}"
    assert scores["decoy"].outcomes == [], scores["decoy"].outcomes  # no Medical row for a decoy
    assert methods["ocr"] >= 4
    for kind, floor in (("text", 0.9), ("structured", 0.9), ("ocr", 0.8)):
        assert scores[kind].recall() >= floor, (kind, scores[kind].outcomes)
    assert [o for s in scores.values() for o in s.outcomes] == []
