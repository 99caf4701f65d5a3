"""Wildcard listing and staging on a local folder, moto's S3 server (custom endpoint) and the GCS emulator."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from clinicflow.connectors.objectstore.patterns import parse_location
from clinicflow.connectors.objectstore.stores import GcsStore, LocalStore, ObjectStore, S3Store, matching_objects
from clinicflow.ingest.pipeline import IngestSettings, process_file_batch, run_batches
from tests.integration.ingest.conftest import PNG, pg_rows, referral, write_tree

TREE = {
    "in/a.txt": b"alpha",
    "in/b.csv": b"x,y,z\n1,2,3\n",
    "in/sub/c.txt": b"gamma",
    "in/sub/deep/d.txt": b"delta",
    "in/file1.txt": b"one",
    "in/file12.txt": b"twelve",
    "in/scan.txt": PNG,  # binary content under a text name
    "other/e.txt": b"elsewhere",
}

CASES = [
    ("in/*.txt", {"in/a.txt", "in/file1.txt", "in/file12.txt", "in/scan.txt"}),
    ("in/**/*.txt", {"in/a.txt", "in/file1.txt", "in/file12.txt", "in/scan.txt", "in/sub/c.txt", "in/sub/deep/d.txt"}),
    ("in/file?.txt", {"in/file1.txt"}),
    ("in/sub/**", {"in/sub/c.txt", "in/sub/deep/d.txt"}),
    ("in/*/c.txt", {"in/sub/c.txt"}),
    ("in/nothing-*.pdf", set()),
    ("**/e.txt", {"other/e.txt"}),
]


def _s3_store(s3_server: Any, files: dict[str, bytes]) -> tuple[S3Store, str]:
    client = s3_server.client()
    bucket = s3_server.new_bucket()
    for name, data in files.items():
        client.put_object(Bucket=bucket, Key=name, Body=data)
    return S3Store(client, bucket), f"s3://{bucket}"


def _gcs_store(gcs_emulator: Any, files: dict[str, bytes]) -> tuple[GcsStore, str]:
    client = gcs_emulator.client()
    bucket = gcs_emulator.new_bucket()
    for name, data in files.items():
        client.bucket(bucket).blob(name).upload_from_string(data)
    return GcsStore(client, bucket), f"gs://{bucket}"


def _local_store(tmp_path: Path, files: dict[str, bytes]) -> tuple[LocalStore, str]:
    write_tree(tmp_path / "root", files)
    return LocalStore(tmp_path / "root"), str(tmp_path / "root")


@pytest.fixture(params=["local", "s3", "gcs"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    kind = request.param

    def make(files: dict[str, bytes]) -> tuple[ObjectStore, str]:
        if kind == "local":
            return _local_store(tmp_path, files)
        if kind == "s3":
            return _s3_store(request.getfixturevalue("s3_server"), files)
        return _gcs_store(request.getfixturevalue("gcs_emulator"), files)

    return make


def _location(base: str, glob: str) -> Any:
    return parse_location(base.rstrip("/") + "/" + glob)


def test_wildcards_list_and_match(store_factory: Any) -> None:
    store, base = store_factory(TREE)
    for glob, expected in CASES:
        location = _location(base, glob)
        found = {_rel(base, location, info.key) for info in matching_objects(_store_for(store, location), location)}
        assert found == expected, glob


def _store_for(store: ObjectStore, location: Any) -> ObjectStore:
    # A local pattern is rooted at its deepest literal folder; buckets are listed as they are.
    return LocalStore(location.bucket) if isinstance(store, LocalStore) else store


def _rel(base: str, location: Any, key: str) -> str:
    if location.scheme == "file":
        return (Path(location.bucket) / key).relative_to(base).as_posix()
    return key


def test_listing_uses_only_the_literal_prefix(store_factory: Any) -> None:
    store, base = store_factory(TREE)
    location = _location(base, "in/sub/**/*.txt")
    listed = [info.key for info in _store_for(store, location).list(location.prefix)]
    assert all("other/" not in k and "in/a.txt" not in k for k in listed)


def test_a_thousand_objects_match(store_factory: Any) -> None:
    files = {f"bulk/{i // 100:02d}/r{i:04d}.txt": b"x" for i in range(1000)}
    files.update({f"bulk/{i:02d}/skip.csv": b"y" for i in range(10)})
    store, base = store_factory(files)
    location = _location(base, "bulk/**/r*.txt")
    keys = [info.key for info in matching_objects(_store_for(store, location), location)]
    assert len(keys) == len(set(keys)) == 1000


def test_staging_is_incremental_by_content(store_factory: Any, ingest_db: Any) -> None:
    files = {
        "docs/letter1.txt": referral(1),
        "docs/letter2.txt": referral(2),
        "docs/scan.txt": PNG,
        "docs/big.bin": bytes(range(256)) * 64,
    }
    store, base = store_factory(files)
    location = _location(base, "docs/*")
    store = _store_for(store, location)
    settings = IngestSettings(run_id="r1", inline_binary_bytes=2048)

    def run(run_settings: IngestSettings) -> Any:
        return run_batches(
            matching_objects(store, location),
            3,
            lambda batch, before: process_file_batch(ingest_db, store, batch, run_settings, None, before),
        )

    first = run(settings)
    assert (first.listed, first.new, first.staged, first.skipped, first.failures) == (4, 4, 4, 0, 0)
    rows = {
        Path(r[0]).name: r[1:]
        for r in pg_rows(
            ingest_db,
            "SELECT uri, sha256, size_bytes, mime_sniffed, mime_by_extension, is_binary, text_content, "
            "content_base64, content_pointer FROM ingest.documents",
        )
    }
    sha, size, sniffed, by_ext, binary, text, b64, pointer = rows["letter1.txt"]
    assert (sha, size, sniffed, by_ext, binary) == (
        hashlib.sha256(referral(1)).hexdigest(),
        len(referral(1)),
        "text/plain",
        "text/plain",
        False,
    )
    assert text == referral(1).decode()
    assert b64 is None
    assert pointer is None
    # MIME by content, whatever the name says; small binary inline as base64
    _, _, sniffed, by_ext, binary, text, b64, pointer = rows["scan.txt"]
    assert (sniffed, by_ext, binary, text, pointer) == ("image/png", "text/plain", True, None, None)
    assert base64.b64decode(b64) == PNG
    # binary above the inline cap: a pointer to the object
    _, _, sniffed, _, binary, text, b64, pointer = rows["big.bin"]
    assert (sniffed, binary, text, b64) == ("application/octet-stream", True, None, None)
    assert pointer.endswith("docs/big.bin")

    second = run(IngestSettings(run_id="r2", inline_binary_bytes=2048))
    assert (second.listed, second.new, second.staged, second.skipped) == (4, 0, 0, 4)

    (key,) = [o.key for o in matching_objects(store, location) if o.key.endswith("letter2.txt")]
    _rewrite(store, key, referral(2) + b"\nAddendum: X-ray normal.\n")
    third = run(IngestSettings(run_id="r3", inline_binary_bytes=2048))
    assert (third.new, third.staged, third.skipped) == (1, 1, 3)
    versions = pg_rows(
        ingest_db, "SELECT count(*), count(DISTINCT sha256) FROM ingest.documents WHERE uri LIKE '%%letter2.txt'"
    )
    assert versions == [(2, 2)]  # both content versions kept, each once
    assert pg_rows(ingest_db, "SELECT count(*) FROM ingest.documents") == [(5,)]


def _rewrite(store: ObjectStore, name: str, data: bytes) -> None:
    if isinstance(store, LocalStore):
        write_tree(store.root, {name: data})
    elif isinstance(store, S3Store):
        store.client.put_object(Bucket=store.bucket, Key=name, Body=data)
    else:
        store.bucket.blob(name).upload_from_string(data)


def test_too_large_and_unreadable_files_are_dead_lettered(tmp_path: Path, ingest_db: Any) -> None:
    write_tree(tmp_path, {"a.txt": b"small", "huge.txt": b"x" * 5000})
    store = LocalStore(tmp_path)
    location = parse_location(str(tmp_path / "*.txt"))
    settings = IngestSettings(run_id="r1", max_file_bytes=1000)
    counts = process_file_batch(ingest_db, store, list(matching_objects(store, location)), settings, None)
    assert (counts.staged, dict(counts.dead_lettered)) == (1, {"read/too-large": 1})
    letters = pg_rows(ingest_db, "SELECT stage, reason, source_uri, status, attempts FROM ingest.dead_letters")
    assert letters == [("read", "too-large", (tmp_path / "huge.txt").as_uri(), "open", 1)]
    # The same failure again bumps attempts on the one open letter.
    process_file_batch(ingest_db, store, list(matching_objects(store, location)), settings, None)
    assert pg_rows(ingest_db, "SELECT count(*), max(attempts) FROM ingest.dead_letters") == [(1, 2)]


def test_an_object_gone_since_listing_is_dead_lettered_not_found(store_factory: Any, ingest_db: Any) -> None:
    store, base = store_factory({"gone/a.txt": b"a", "gone/b.txt": b"b"})
    location = _location(base, "gone/*.txt")
    store = _store_for(store, location)
    listed = list(matching_objects(store, location))
    (key,) = [o.key for o in listed if o.key.endswith("b.txt")]
    if isinstance(store, LocalStore):
        (store.root / key).unlink()
    elif isinstance(store, S3Store):
        store.client.delete_object(Bucket=store.bucket, Key=key)
    else:
        store.bucket.blob(key).delete()
    counts = process_file_batch(ingest_db, store, listed, IngestSettings(run_id="r"), None)
    assert (counts.staged, dict(counts.dead_lettered)) == (1, {"read/not-found": 1})
