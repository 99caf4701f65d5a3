// The result chart: uPlot (vendor/uplot, from the npm registry) over GET /api/etl/results/{id}/series.
// The server sends the visible range min-max downsampled (MinMaxLTTB); every zoom or pan asks again.
// Drag to zoom, wheel to zoom at the cursor, shift+drag or the arrows to pan, double-click to see everything.
// ResultChart.show(host, resultId, api, {onNote}) -> Promise; ResultChart.current: the state tests read.
(function (global) {
  "use strict";
  const LINE = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22"];
  const MEAN = ["#ff7f0e", "#d62728", "#e377c2", "#7f7f7f"];
  const PEAK = "#d00";

  function pointsFor(host) { return Math.max(200, Math.min(20000, Math.round(host.clientWidth * 2))); }

  function build(host, body, state) {
    // Times are drawn in UTC, never in the viewer's zone: an instant ("time") labelled UTC, a time the file gives
    // without a zone ("wall-time") as written.
    const isTime = body.x.kind === "time" || body.x.kind === "wall-time";
    const zone = body.x.kind === "time" ? " (UTC)" : body.x.kind === "wall-time" ? " (as written, no time zone)" : "";
    const columns = [], scales = {x: {time: isTime}}, axes = [{label: (body.x.name || "row") + zone}];
    const series = [{label: body.x.name || "row"}];
    let line = 0, mean = 0;
    for (const s of body.series) {
      // One y axis per input column: a column and its rolling mean share it; another column gets its own.
      const column = s.name.replace(/ rolling mean \(\d+\)$/, "");
      if (!columns.includes(column)) {
        columns.push(column);
        scales[column] = {auto: true};
        axes.push({scale: column, label: column, side: columns.length % 2 ? 3 : 1,
                   grid: {show: columns.length === 1}, stroke: LINE[(columns.length - 1) % LINE.length]});
      }
      const isMean = s.name !== column;
      series.push({label: s.name, scale: column, width: isMean ? 2 : 1, spanGaps: false,
                   stroke: isMean ? MEAN[mean++ % MEAN.length] : LINE[line++ % LINE.length], points: {show: false}});
    }
    if (state.hasPeaks) {
      // Peak markers are points of the peak column at the peak's own row: drawn on its line.
      series.push({label: "peaks", scale: columns[0], stroke: PEAK, fill: PEAK, width: 0, paths: () => null,
                   points: {show: true, size: 7, stroke: PEAK, fill: PEAK}});
    }
    const opts = {
      width: host.clientWidth, height: 340, scales, axes, series,
      tzDate: ts => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      cursor: {drag: {x: true, y: false, setScale: true}},
      legend: {live: true},
      hooks: {setScale: [(u, key) => { if (key === "x") state.request(u.scales.x.min, u.scales.x.max); }]},
    };
    return new uPlot(opts, toData(body, state), host);
  }

  function toData(body, state) {
    const xs = body.xs;
    const data = [xs, ...body.series.map(s => s.values)];
    if (state.hasPeaks) {
      const column = body.series[0].values;
      const at = new Map(xs.map((x, i) => [x, i]));
      const marks = new Array(xs.length).fill(null);
      for (const p of body.peaks) { const i = at.get(p.x); if (i !== undefined) marks[i] = column[i]; }
      data.push(marks);
    }
    return data;
  }

  function describe(body) {
    const what = body.method === "MinMaxLTTB"
      ? body.points + " of " + body.rows_in_view + " rows in view drawn (MinMaxLTTB downsampling for the chart)"
      : "every row in view drawn (" + body.points + ")";
    const peaks = body.peaks_total
      ? "; " + body.peaks_in_view + " peaks in view" + (body.peaks.length < body.peaks_in_view
        ? " (too many to mark: zoom in)" : ", marked") : "";
    return what + peaks + ". Exports hold every row.";
  }

  async function show(host, resultId, api, options) {
    options = options || {};
    host.innerHTML = "";
    // A chart shown earlier in this host may still be loading: its answer must not land on this one.
    const owner = {};
    host._chartOwner = owner;
    delete host.dataset.drawn; delete host.dataset.view;
    host.dataset.result = resultId;
    const state = {resultId, x: options.x || null, seq: 0, full: null, wanted: null, hasPeaks: false};
    const query = (min, max) => "/api/etl/results/" + resultId + "/series?points=" + pointsFor(host) +
      (state.x ? "&x=" + encodeURIComponent(state.x) : "") +
      (min != null ? "&x_min=" + min + "&x_max=" + max : "");
    let timer = null;
    const same = (a, b) => a && b && Math.abs(a[0] - b[0]) + Math.abs(a[1] - b[1]) <= 1e-9 * Math.abs(a[1] - a[0]);
    state.request = (min, max) => {
      if (same([min, max], state.wanted)) return;  // the range already shown or asked for
      state.wanted = [min, max];
      clearTimeout(timer);
      timer = setTimeout(() => load(min, max), 120);
    };
    async function load(min, max) {
      const seq = ++state.seq;
      host.dataset.loading = "1";
      const body = await api(query(min, max));
      if (seq !== state.seq || host._chartOwner !== owner) return;
      state.body = body;
      if (!state.u) {
        state.hasPeaks = body.peaks_total > 0;
        state.full = [body.xs[0], body.xs[body.xs.length - 1]];
        state.wanted = state.full;
        state.u = build(host, body, state);
      } else {
        state.u.setData(toData(body, state), false);
        // uPlot keeps the old data's visible index window until the x scale is set again.
        state.u.setScale("x", {min: state.u.scales.x.min, max: state.u.scales.x.max});
      }
      const [lo, hi] = min == null ? state.full : [min, max];
      state.view = [lo, hi];
      host.dataset.view = lo + ".." + hi;
      host.dataset.drawn = body.series.length + " series, " + body.peaks.length + " peaks, " + body.points + " points";
      delete host.dataset.loading;
      if (options.onNote) options.onNote(describe(body), body);
    }
    const zoomAt = (factor, center) => {
      const u = state.u, lo = u.scales.x.min, hi = u.scales.x.max;
      const c = center == null ? (lo + hi) / 2 : center;
      u.setScale("x", {min: c - (c - lo) * factor, max: c + (hi - c) * factor});
    };
    state.pan = fraction => {
      const u = state.u, lo = u.scales.x.min, hi = u.scales.x.max, d = (hi - lo) * fraction;
      u.setScale("x", {min: lo + d, max: hi + d});
    };
    state.zoom = factor => zoomAt(factor, null);
    state.reset = () => state.u.setScale("x", {min: state.full[0], max: state.full[1]});
    await load(null, null);
    const over = host.querySelector(".u-over");
    over.addEventListener("wheel", ev => {
      ev.preventDefault();
      const u = state.u, rect = over.getBoundingClientRect();
      zoomAt(ev.deltaY < 0 ? 0.75 : 1 / 0.75, u.posToVal(ev.clientX - rect.left, "x"));
    }, {passive: false});
    over.addEventListener("dblclick", ev => { ev.stopImmediatePropagation(); state.reset(); }, true);
    // Shift+drag pans (a plain drag selects a range to zoom into).
    over.addEventListener("mousedown", ev => {
      if (!ev.shiftKey) return;
      ev.stopImmediatePropagation(); ev.preventDefault();
      const u = state.u, start = ev.clientX, lo = u.scales.x.min, hi = u.scales.x.max;
      const perPx = (hi - lo) / over.clientWidth;
      const move = e => u.setScale("x", {min: lo - (e.clientX - start) * perPx, max: hi - (e.clientX - start) * perPx});
      const up = () => { document.removeEventListener("mousemove", move); document.removeEventListener("mouseup", up); };
      document.addEventListener("mousemove", move); document.addEventListener("mouseup", up);
    }, true);
    global.ResultChart.current = state;
    return state;
  }

  global.ResultChart = {show, current: null};
})(window);
