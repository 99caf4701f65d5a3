"""The results chart in Debian's headless Chromium (Playwright) on a 68k-row PPG-shaped signal and a 10M-row series.

The page opens from the demo's link (token in the fragment), the x axis is the time column, a drag zooms and
the server answers the new range (min-max downsampled), peak markers sit on the line at the signal's value,
and the CSV export holds every row. Screenshots go to out/test-artifacts/processing/.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.integration.processing.service_support import TOKEN, Service
from tests.integration.processing.test_api import submit, upload
from tests.integration.processing.test_browser import ARTIFACTS, CHROMIUM

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.xdist_group("processing-service"),
    pytest.mark.timeout(900),
]

PPG_ROWS = 68_476
PPG_HZ = 66.0
BIG_ROWS = 10_000_000
SPIKE_ROW, SPIKE = 7_654_321, 50.0


def ppg_frame() -> pd.DataFrame:
    """A PPG-shaped recording: a systolic peak and a dicrotic wave per beat (~72 bpm), baseline wander,
    noise, and sensor saturation clipping the tallest beats into plateaus; ISO-8601 timestamps at ~66 Hz."""
    rng = np.random.default_rng(26)
    t = np.arange(PPG_ROWS) / PPG_HZ
    phase = (t * 1.2 + 0.02 * np.sin(2 * np.pi * 0.05 * t)) % 1.0
    wave = 600 * np.exp(-(((phase - 0.2) / 0.06) ** 2)) + 220 * np.exp(-(((phase - 0.5) / 0.08) ** 2))
    signal = np.minimum(wave + 40 * np.sin(2 * np.pi * 0.2 * t) + rng.normal(0, 4, PPG_ROWS), 630.0)
    stamps = pd.Timestamp("2026-03-01T08:00:00") + pd.to_timedelta(t, unit="s")
    return pd.DataFrame({"time": stamps.strftime("%Y-%m-%dT%H:%M:%S.%f"), "ppg": np.round(signal, 3)})


@pytest.fixture(scope="session")
def big_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10M rows at 1 kHz (a datetime column) with one single-row spike: written once per test session."""
    path = tmp_path_factory.mktemp("big-series") / "series-10m.parquet"
    rng = np.random.default_rng(10)
    values = np.sin(np.arange(BIG_ROWS) / 1000.0) + rng.normal(0, 0.05, BIG_ROWS)
    values[SPIKE_ROW] = SPIKE
    stamps = pd.date_range("2026-03-01", periods=BIG_ROWS, freq="1ms")
    pd.DataFrame({"time": stamps, "value": values}).to_parquet(path, row_group_size=1_000_000)
    return path


def completed(service: Service, file_id: int, kind: str, parameters: dict[str, Any]) -> int:
    job = submit(service, file_id, kind, parameters)
    row = service.wait_for(job["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=600)
    assert row["status"] == "COMPLETED", row
    return int(job["id"])


@pytest.fixture
def browser_page(service: Service) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap.sh installs it as root)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-extensions"],
        )
        try:
            # A viewer far from UTC: a file's times are drawn as the file gives them, never moved into this zone.
            page = browser.new_page(
                viewport={"width": 1200, "height": 1100}, accept_downloads=True, timezone_id="America/New_York"
            )
            # The demo's link: the token in the fragment, nothing pasted.
            page.goto(service.url + f"/ui/#token={TOKEN}")
            expect(page.locator("#live")).to_have_text("live: on", timeout=30_000)
            yield page
        finally:
            browser.close()


def open_result(page: Any, result_id: int) -> dict[str, Any]:
    """Click the result in the list; wait until its chart is drawn; the chart's state."""
    from playwright.sync_api import expect

    page.locator("#filter-status").select_option("")
    row = page.locator(f'#results tbody tr[data-id="{result_id}"]')
    expect(row).to_be_visible(timeout=30_000)
    row.click()
    expect(page.locator("#detail-title")).to_contain_text(f"Result {result_id}:", timeout=30_000)
    expect(page.locator("#chart")).to_have_attribute("data-drawn", re.compile(r"\d+ series"), timeout=300_000)
    page.wait_for_function(
        f"window.ResultChart.current && window.ResultChart.current.resultId === {result_id}"
        " && !document.querySelector('#chart').dataset.loading",
        timeout=60_000,
    )
    return chart_state(page)


def chart_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("""() => {
      const s = window.ResultChart.current, u = s.u, d = u.data, b = s.body;
      const markers = [];
      if (s.hasPeaks) {
        const last = d.length - 1;
        for (let i = 0; i < d[0].length; i++) if (d[last][i] != null) markers.push(
          {x: d[0][i], y: d[last][i], line: d[1][i], px: u.valToPos(d[last][i], u.series[last].scale),
           linePx: u.valToPos(d[1][i], u.series[1].scale)});
      }
      return {view: s.view, scale: [u.scales.x.min, u.scales.x.max], x: b.x, rows: b.rows, start: b.start,
              end: b.end, points: b.points, method: b.method, peaks: b.peaks, peaks_in_view: b.peaks_in_view,
              labels: u.series.slice(1).map(x => x.label), markers, axisLabel: u.axes[0].label,
              firstX: typeof u.series[0].value === "function" ? u.series[0].value(u, d[0][0], 0, 0) : null,
              drawnRows: u.series[1].idxs[1] - u.series[1].idxs[0] + 1,
              max: Math.max(...b.series[0].values.filter(v => v != null))};
    }""")
    return state


def drag_zoom(page: Any, from_fraction: float, to_fraction: float) -> None:
    """A mouse drag across the plot: uPlot zooms the x axis into the selection."""
    plot = page.locator("#chart .u-over")
    # Mouse coordinates are the viewport's: with a long results list (the session's service) the chart is below it.
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * from_fraction, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (from_fraction + to_fraction) / 2, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * to_fraction, y, steps=5)
    page.mouse.up()


def wait_for_view_change(page: Any, before: str) -> dict[str, Any]:
    page.wait_for_function(
        f"document.querySelector('#chart').dataset.view !== {before!r}"
        " && !document.querySelector('#chart').dataset.loading",
        timeout=120_000,
    )
    page.wait_for_timeout(300)  # a debounced follow-up request, if any, lands
    page.wait_for_function("!document.querySelector('#chart').dataset.loading", timeout=120_000)
    return chart_state(page)


def assert_markers_on_line(state: dict[str, Any], values: np.ndarray, x_of_row: Any) -> None:
    assert state["markers"], "no peak marker drawn"
    assert len(state["markers"]) == len(state["peaks"])
    by_x = {m["x"]: m for m in state["markers"]}
    for peak in state["peaks"]:
        marker = by_x[peak["x"]]
        # The marker is the signal's own value at the peak's row, and a vertex of the drawn line.
        assert marker["y"] == pytest.approx(values[peak["index"]], abs=1e-9)
        assert marker["line"] == marker["y"]
        assert marker["px"] == marker["linePx"]
        assert peak["x"] == pytest.approx(x_of_row(peak["index"]), abs=1e-6)


def test_ppg_recording_chart_zoom_peaks_and_full_csv(service: Service, browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    frame = ppg_frame()
    frame.to_csv(tmp_path / "ppg.csv", index=False)
    data_file = upload(service, tmp_path / "ppg.csv")
    assert data_file["row_count"] == PPG_ROWS
    peaks_id = completed(
        service, data_file["id"], "peak_detection", {"column": "ppg", "prominence": 150, "distance": 30}
    )
    mean_id = completed(service, data_file["id"], "rolling_mean", {"window": 33, "columns": ["ppg"]})
    page.reload()  # the list now holds both results
    seconds = ((pd.to_datetime(frame["time"]) - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)).to_numpy()

    state = open_result(page, peaks_id)
    # The file's times have no zone: drawn as written (08:00 in a New York browser too), and the axis says so.
    assert state["x"] == {"name": "time", "kind": "wall-time"}, state["x"]
    assert state["axisLabel"] == "time (as written, no time zone)"
    assert str(state["firstX"]).startswith("2026-03-01 8:00"), state["firstX"]
    assert state["labels"] == ["ppg", "peaks"]
    assert state["method"] == "MinMaxLTTB"
    assert state["rows"] == PPG_ROWS
    assert state["peaks_in_view"] > 1000
    assert_markers_on_line(state, frame["ppg"].to_numpy(), lambda i: seconds[i])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chart-ppg-peaks-full.png"), full_page=True)

    before = page.locator("#chart").get_attribute("data-view")
    drag_zoom(page, 0.40, 0.42)
    zoomed = wait_for_view_change(page, before)
    full_span = state["view"][1] - state["view"][0]
    span = zoomed["view"][1] - zoomed["view"][0]
    assert 0 < span < full_span * 0.05, (state["view"], zoomed["view"])
    assert state["view"][0] < zoomed["view"][0] < zoomed["view"][1] < state["view"][1]
    # The server answered the new range: every row in view, at full resolution, a few beats with their peaks.
    assert zoomed["method"] == "none (every row)"
    assert zoomed["end"] - zoomed["start"] == zoomed["points"]
    assert zoomed["drawnRows"] >= zoomed["points"] - 2, "the line is drawn from the new rows, not the old ones"
    assert 0 < zoomed["peaks_in_view"] < 100
    assert_markers_on_line(zoomed, frame["ppg"].to_numpy(), lambda i: seconds[i])
    page.screenshot(path=str(ARTIFACTS / "chart-ppg-peaks-zoomed.png"), full_page=True)
    # Pan keeps the span and moves the range.
    before = page.locator("#chart").get_attribute("data-view")
    page.click("#pan-right")
    panned = wait_for_view_change(page, before)
    assert panned["view"][0] > zoomed["view"][0]
    assert panned["view"][1] - panned["view"][0] == pytest.approx(span, rel=1e-6)

    state = open_result(page, mean_id)
    assert state["labels"] == ["ppg", "ppg rolling mean (33)"]
    page.screenshot(path=str(ARTIFACTS / "chart-ppg-rolling-mean.png"), full_page=True)
    with page.expect_download(timeout=120_000) as download:
        page.click("#export-csv")
    exported = pd.read_csv(download.value.path())
    assert len(exported) == PPG_ROWS
    # The file's time beside the row numbers: the export lines up with the recording (it had row numbers only).
    assert list(exported.columns) == ["row", "time", "ppg", "ppg_rolling_mean"]
    assert exported["row"].tolist() == list(range(PPG_ROWS))
    assert (pd.to_datetime(exported["time"]) == pd.to_datetime(frame["time"])).all()
    np.testing.assert_allclose(exported["ppg"], frame["ppg"])
    np.testing.assert_allclose(exported["ppg_rolling_mean"], frame["ppg"].rolling(33).mean(), equal_nan=True)


def test_ten_million_rows_chart_keeps_the_spike_zooms_and_exports_every_row(
    service: Service, browser_page: Any, big_series: Path
) -> None:
    page = browser_page
    target = service.bucket_dir / "big" / big_series.name
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(big_series.read_bytes())
    with service.client() as client:
        response = client.post("/api/etl/files", data={"uri": target.as_uri()}, timeout=600)
    assert response.status_code == 201, response.text
    data_file = response.json()
    assert data_file["row_count"] == BIG_ROWS
    mean_id = completed(service, data_file["id"], "rolling_mean", {"window": 101, "columns": ["value"]})
    peaks_id = completed(
        service, data_file["id"], "peak_detection", {"column": "value", "prominence": 1.0, "distance": 1000}
    )
    page.reload()

    state = open_result(page, peaks_id)
    assert state["x"] == {"name": "time", "kind": "wall-time"}  # a Parquet timestamp without a zone
    assert state["rows"] == BIG_ROWS
    # Min-max downsampling keeps a one-row spike in a 10M-row view of a few thousand points.
    assert state["max"] == SPIKE
    assert state["points"] < 20_000
    start = pd.Timestamp("2026-03-01").value / 1e9
    values = pd.read_parquet(big_series, columns=["value"])["value"].to_numpy()
    assert_markers_on_line(state, values, lambda i: start + i / 1000.0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chart-10m-peaks-full.png"), full_page=True)
    before = page.locator("#chart").get_attribute("data-view")
    drag_zoom(page, 0.70, 0.80)
    zoomed = wait_for_view_change(page, before)
    assert zoomed["view"][1] - zoomed["view"][0] < (state["view"][1] - state["view"][0]) * 0.2
    assert zoomed["end"] - zoomed["start"] < BIG_ROWS * 0.2
    assert zoomed["start"] > BIG_ROWS * 0.6
    assert zoomed["max"] == SPIKE, "the spike at 76.5% is in the zoomed range and survives"
    assert zoomed["drawnRows"] >= zoomed["points"] - 2, "the line is drawn from the new rows, not the old ones"
    assert_markers_on_line(zoomed, values, lambda i: start + i / 1000.0)
    page.screenshot(path=str(ARTIFACTS / "chart-10m-peaks-zoomed.png"), full_page=True)

    state = open_result(page, mean_id)
    assert state["labels"] == ["value", "value rolling mean (101)"]
    page.screenshot(path=str(ARTIFACTS / "chart-10m-rolling-mean.png"), full_page=True)
    # The CSV export streams every row (counted here rather than held by the browser).
    lines = 0
    last = b""
    with (
        service.client() as client,
        client.stream("GET", f"/api/etl/results/{mean_id}/export", params={"format": "csv"}, timeout=900) as response,
    ):
        assert response.status_code == 200
        for block in response.iter_bytes():
            lines += block.count(b"\n")
            last = (last + block)[-200:]
    assert lines == BIG_ROWS + 1
    row, at, value, mean = io.BytesIO(last).read().decode().strip().splitlines()[-1].split(",")
    assert int(row) == BIG_ROWS - 1
    assert pd.Timestamp(at) == pd.Timestamp("2026-03-01") + pd.Timedelta(milliseconds=BIG_ROWS - 1)
    assert float(value) == values[-1]
    assert float(mean) == pytest.approx(values[-101:].mean(), rel=1e-9)
