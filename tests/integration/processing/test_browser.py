"""The results page in a real headless Chromium (Debian's, driven by Playwright): submit, live status, chart."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.integration.processing.service_support import TOKEN, Service
from tests.integration.processing.test_api import signal_csv

# One xdist group with the other users of the session-scoped processing service: it starts once.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.xdist_group("processing-service"),
    pytest.mark.timeout(600),
]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Screenshots kept after the run (CI uploads out/ as artifacts).
ARTIFACTS = Path(__file__).resolve().parents[3] / "out" / "test-artifacts" / "processing"


def ward_workbook(path: Path) -> Path:
    """A ward's observations as a nurse keeps them in Excel (a date-time column, a gap, an error cell)."""
    from datetime import datetime, timedelta

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Obs"
    sheet.append(["Date/Time", "Heart rate (bpm)", "SpO2"])
    for i in range(30):
        sheet.append([datetime(2024, 11, 3, 6, 0) + timedelta(minutes=15 * i), None if i == 7 else 70.5 + i % 5, 97])
    sheet["C12"] = "#N/A"
    book.save(path)
    return path


def test_submit_on_the_results_page_and_watch_it_complete_live(service: Service, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap.sh installs it as root)")
    from playwright.sync_api import expect, sync_playwright

    signal_csv(tmp_path / "ecg.csv", rows=1500)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-extensions"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
            # The demo's link: the token in the fragment, nothing pasted.
            page.goto(service.url + f"/ui/#token={TOKEN}")
            expect(page.locator("#live")).to_have_text("live: on", timeout=30_000)
            assert "token" not in page.url, "the fragment is cleared once read"
            page.set_input_files("#file-input", str(tmp_path / "ecg.csv"))
            page.click("#upload")
            expect(page.locator("#upload-status")).to_contain_text("uploaded as file", timeout=30_000)
            # The preview: rows, columns with their stats, the first rows.
            expect(page.locator("#preview-summary")).to_contain_text("ecg.csv: 1500 rows, 2 columns", timeout=30_000)
            expect(page.locator("#preview-stats tbody tr")).to_have_count(2)
            expect(page.locator("#preview-head tbody tr")).to_have_count(10)
            # The parameter form comes from the processor's JSON schema and fills the JSON.
            page.select_option("#type", "rolling_mean")
            window = page.locator('#param-fields input[data-name="window"]')
            window.fill("31")
            window.press("Tab")
            assert json.loads(page.input_value("#params"))["window"] == 31
            expect(page.locator('#param-fields input[data-name="center"]')).to_have_attribute("type", "checkbox")
            # A marker that a reload would wipe: the status must change without one.
            page.evaluate("window.__noReload = true")
            for kind, parameters in (
                ("rolling_mean", {"window": 31, "columns": ["voltage"]}),
                ("peak_detection", {"column": "voltage", "prominence": 1.0, "distance": 40}),
            ):
                page.select_option("#type", kind)
                page.fill("#params", json.dumps(parameters))
                page.click("#submit")
                expect(page.locator("#submit-status")).to_contain_text("submitted as result", timeout=30_000)
                result_id = page.locator("#submit-status").inner_text().rsplit(" ", 1)[-1]
                status = page.locator(f'#results tbody tr[data-id="{result_id}"] .status')
                expect(status).to_have_text("COMPLETED", timeout=180_000)
                assert page.evaluate("window.__noReload") is True, "the page was reloaded"
                # The detail view redraws itself when the live update says the run ended.
                expect(page.locator("#detail-title")).to_contain_text(
                    f"Result {result_id}: {kind} - COMPLETED", timeout=30_000
                )
                chart = page.locator("#chart")
                expect(chart).to_be_visible()
                # The chart of this result, not the one drawn before it in the same place.
                expect(chart).to_have_attribute("data-result", result_id, timeout=30_000)
                expect(chart).to_have_attribute("data-drawn", re.compile(r"\d+ series"), timeout=60_000)
                drawn = chart.get_attribute("data-drawn") or ""
                if kind == "rolling_mean":
                    assert drawn.startswith("2 series"), drawn  # the series and its rolling mean
                else:
                    assert int(drawn.split(", ")[1].split()[0]) > 0, drawn  # peaks marked
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"results-page-{kind}.png"), full_page=True)
            # An Excel workbook uploads as its first sheet; data quality lists the columns in the file's order.
            workbook = ward_workbook(tmp_path / "ward3.xlsx")
            # Registered from the bucket by its URI, as by upload: the sheet's CSV is what jobs read.
            in_bucket = service.bucket_dir / "sheets" / "ward3.xlsx"
            in_bucket.parent.mkdir(exist_ok=True)
            in_bucket.write_bytes(workbook.read_bytes())
            with service.client() as client:
                registered = client.post("/api/etl/files", data={"uri": in_bucket.as_uri()})
            assert registered.status_code == 201, registered.text
            assert [registered.json()[k] for k in ("name", "format", "row_count")] == ["ward3-Obs.csv", "csv", 30]
            page.set_input_files("#file-input", str(workbook))
            page.click("#upload")
            expect(page.locator("#preview-summary")).to_contain_text(
                "ward3-Obs.csv: 30 rows, 3 columns", timeout=30_000
            )
            page.select_option("#type", "data_quality")
            page.fill("#params", "{}")
            page.click("#submit")
            expect(page.locator("#submit-status")).to_contain_text("submitted as result", timeout=30_000)
            result_id = page.locator("#submit-status").inner_text().rsplit(" ", 1)[-1]
            expect(page.locator(f'#results tbody tr[data-id="{result_id}"] .status')).to_have_text(
                "COMPLETED", timeout=180_000
            )
            expect(page.locator("#detail-title")).to_contain_text(f"Result {result_id}: data_quality", timeout=30_000)
            expect(page.locator("#quality tbody tr td:first-child")).to_have_text(
                ["Date/Time", "Heart rate (bpm)", "SpO2"], timeout=30_000
            )
            # Delete asks first; accepted, the row leaves the list.
            rows = page.locator("#results tbody tr")
            before = rows.count()
            rows.first.locator("button.delete").click()
            expect(rows).to_have_count(before - 1, timeout=30_000)
        finally:
            browser.close()
    assert (ARTIFACTS / "results-page-peak_detection.png").stat().st_size > 10_000
