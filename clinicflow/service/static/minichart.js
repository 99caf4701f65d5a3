// minichart: a line chart with point markers on a <canvas>, no dependencies (about 100 lines).
// MiniChart.draw(canvas, {x: [...], series: [{name, values, color}], markers: [{x, y, color}]})
(function (global) {
  "use strict";
  function finite(v) { return typeof v === "number" && isFinite(v); }
  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (finite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
    if (lo === Infinity) return [0, 1];
    if (lo === hi) return [lo - 1, hi + 1];
    return [lo, hi];
  }
  function ticks(lo, hi, count) {
    const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count)));
    const nice = [1, 2, 5, 10].map(m => m * step).find(s => (hi - lo) / s <= count) || step * 10;
    const out = [];
    for (let t = Math.ceil(lo / nice) * nice; t <= hi + 1e-9; t += nice) out.push(+t.toPrecision(12));
    return out;
  }
  function draw(canvas, spec) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = {l: 60, r: 15, t: 15, b: 30};
    ctx.clearRect(0, 0, w, h);
    const xs = spec.x || [];
    const ys = [];
    for (const s of spec.series || []) ys.push(...s.values);
    for (const m of spec.markers || []) ys.push(m.y);
    const [x0, x1] = extent(xs.concat((spec.markers || []).map(m => m.x)));
    const [ylo, yhi] = extent(ys);
    const y0 = ylo - (yhi - ylo) * 0.05, y1 = yhi + (yhi - ylo) * 0.1;  // room for the peak markers
    const px = x => pad.l + (x - x0) / (x1 - x0) * (w - pad.l - pad.r);
    const py = y => h - pad.b - (y - y0) / (y1 - y0) * (h - pad.t - pad.b);
    ctx.font = "11px sans-serif"; ctx.fillStyle = "#444"; ctx.strokeStyle = "#eee"; ctx.lineWidth = 1;
    for (const t of ticks(y0, y1, 6)) {
      ctx.beginPath(); ctx.moveTo(pad.l, py(t)); ctx.lineTo(w - pad.r, py(t)); ctx.stroke();
      ctx.textAlign = "right"; ctx.fillText(String(t), pad.l - 5, py(t) + 4);
    }
    for (const t of ticks(x0, x1, 8)) {
      ctx.textAlign = "center"; ctx.fillText(String(t), px(t), h - pad.b + 15);
    }
    ctx.strokeStyle = "#888"; ctx.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
    for (const s of spec.series || []) {
      ctx.strokeStyle = s.color || "#36c"; ctx.lineWidth = s.width || 1.2; ctx.beginPath();
      let pen = false;
      for (let i = 0; i < xs.length; i++) {
        const v = s.values[i];
        if (!finite(v)) { pen = false; continue; }
        if (pen) ctx.lineTo(px(xs[i]), py(v)); else { ctx.moveTo(px(xs[i]), py(v)); pen = true; }
      }
      ctx.stroke();
    }
    for (const m of spec.markers || []) {
      if (!finite(m.x) || !finite(m.y)) continue;
      ctx.fillStyle = m.color || "#c00"; ctx.beginPath();
      ctx.moveTo(px(m.x), py(m.y) - 7); ctx.lineTo(px(m.x) - 4, py(m.y) - 13); ctx.lineTo(px(m.x) + 4, py(m.y) - 13);
      ctx.closePath(); ctx.fill();
    }
    canvas.dataset.drawn = String((spec.series || []).length) + " series, " + String((spec.markers || []).length) + " markers";
  }
  global.MiniChart = {draw: draw};
})(window);
