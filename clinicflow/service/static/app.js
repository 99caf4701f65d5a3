// Results page: talks to /api/etl/* with the bearer token, live status from /ws.
(function () {
  "use strict";
  const $ = id => document.getElementById(id);
  const DEFAULT_PARAMS = {
    rolling_mean: {window: 5}, peak_detection: {prominence: 1.0},
    data_quality: {}, custom: {script: "my_script", params: {}, timeout_seconds: 60},
  };
  let token = localStorage.getItem("clinicflow-token") || "";
  // A link like /ui/#token=... (printed by the demo) opens ready: the fragment never reaches a server log.
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    token = fromLink;
    localStorage.setItem("clinicflow-token", token);
    history.replaceState(null, "", location.pathname + location.search);
  }
  let socket = null, shown = null, shownRow = null, files = {}, offset = 0;
  const PAGE = 50;

  async function api(path, options) {
    options = options || {};
    options.headers = Object.assign({Authorization: "Bearer " + token}, options.headers || {});
    const response = await fetch(path, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = body.detail;
      const message = Array.isArray(detail) ? detail.map(d => (d.loc || []).join(".") + ": " + d.msg).join("; ")
        : (detail || response.statusText);
      throw new Error(response.status + " " + message);
    }
    return body;
  }

  function text(tag, value, cls) {
    const el = document.createElement(tag); el.textContent = value == null ? "" : String(value);
    if (cls) el.className = cls; return el;
  }

  async function loadFiles() {
    const page = await api("/api/etl/files?limit=200");
    const select = $("file-select"); select.innerHTML = "";
    files = {};
    for (const f of page.items) {
      files[f.id] = f;
      const option = text("option", f.id + ": " + f.name + " (" + f.row_count + " rows)");
      option.value = f.id; select.appendChild(option);
    }
  }

  function setRowStatus(tr, status, progress) {
    const cell = tr.querySelector(".status");
    cell.textContent = status; cell.className = "status status-" + status;
    tr.dataset.status = status;
    if (progress != null) tr.querySelector(".progress").textContent = Math.round(progress * 100) + "%";
  }

  async function loadResults() {
    const status = $("filter-status").value;
    const page = await api("/api/etl/results?limit=" + PAGE + "&offset=" + offset + (status ? "&status=" + status : ""));
    if (page.items.length === 0 && offset > 0) { offset = Math.max(0, offset - PAGE); return loadResults(); }
    $("page-info").textContent = page.total ? (offset + 1) + "-" + (offset + page.items.length) + " of " + page.total : "none";
    $("page-prev").disabled = offset === 0;
    $("page-next").disabled = offset + page.items.length >= page.total;
    const body = $("results").querySelector("tbody"); body.innerHTML = "";
    for (const r of page.items) {
      const tr = document.createElement("tr"); tr.dataset.id = r.id; tr.className = "clickable";
      tr.append(text("td", r.id), text("td", r.processing_type),
                text("td", files[r.data_file_id] ? files[r.data_file_id].name : r.data_file_id),
                text("td", "", "status"), text("td", "", "progress"), text("td", (r.created_at || "").slice(0, 19)));
      const del = text("button", "delete"); del.className = "delete";
      del.onclick = async ev => {
        ev.stopPropagation();
        if (!confirm("Delete result " + r.id + " (" + r.processing_type + ")? A run in flight is cancelled.")) return;
        await api("/api/etl/results/" + r.id, {method: "DELETE"});
      };
      const cell = document.createElement("td"); cell.appendChild(del); tr.appendChild(cell);
      tr.onclick = () => showDetail(r.id);
      setRowStatus(tr, r.status, r.progress);
      body.appendChild(tr);
    }
  }

  function connect() {
    if (socket) socket.close();
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    // The token goes in the first message, never in the URL (URLs end up in access logs).
    socket = new WebSocket(scheme + location.host + "/ws");
    socket.onopen = () => {
      socket.send(JSON.stringify({type: "auth", token: token}));
      $("live").textContent = "live: on"; $("live").className = "badge on";
    };
    socket.onclose = () => {
      $("live").textContent = "live: off"; $("live").className = "badge off";
      setTimeout(() => { if (token) connect(); }, 3000);
    };
    socket.onmessage = event => {
      const update = JSON.parse(event.data);
      const tr = document.querySelector('#results tbody tr[data-id="' + update.id + '"]');
      if (update.status === "DELETED") { if (tr) tr.remove(); return; }
      if (tr) setRowStatus(tr, update.status, update.progress); else if (offset === 0) loadResults();
      if (shown !== update.id) return;
      // The detail shows the same status as the list, from the same message.
      if (["COMPLETED", "FAILED", "CRASHED", "CANCELLED"].includes(update.status)) showDetail(update.id);
      else $("detail-title").textContent = detailTitle(shownRow, update.status, update.progress);
    };
  }

  async function drawChart(r) {
    const host = $("chart"); host.hidden = false; $("chart-tools").hidden = false;
    const select = $("x-column");
    const chosen = select.dataset.result === String(r.id) ? select.value : null;
    const state = await ResultChart.show(host, r.id, api, {x: chosen, onNote: note => { $("legend").textContent = note; }});
    if (select.dataset.result !== String(r.id)) {
      select.dataset.result = String(r.id); select.innerHTML = "";
      for (const name of ["row", ...state.body.x_columns]) {
        const option = text("option", name === "row" ? "row index" : name); option.value = name; select.appendChild(option);
      }
      select.value = state.body.x.name || "row";
    }
    select.onchange = () => drawChart(r);
  }

  function qualityTable(data) {
    const table = $("quality"); table.hidden = false;
    const body = table.querySelector("tbody"); body.innerHTML = "";
    for (const name of data.column_order || Object.keys(data.columns)) {
      const s = data.columns[name], tr = document.createElement("tr");
      tr.append(text("td", name), text("td", s.dtype), text("td", s.nulls),
                text("td", (s.null_fraction * 100).toFixed(1) + "%"), text("td", s.min), text("td", s.max));
      body.appendChild(tr);
    }
    const schema = data.schema;
    $("schema-failures").textContent = data.rows + " rows, " + data.duplicate_rows + " duplicate rows" +
      (schema.checked ? "; schema " + (schema.passed ? "passed" : "failed: " +
        schema.failures.map(f => f.column + " " + f.check + " x" + f.count).join(", ")) : "");
  }

  function detailTitle(r, status, progress) {
    return "Result " + r.id + ": " + r.processing_type + " - " + status +
      (status === "PROCESSING" && progress != null ? " " + Math.round(progress * 100) + "%" : "");
  }

  async function showPreview(fileId) {
    const p = await api("/api/etl/files/" + fileId + "/preview?rows=10");
    $("preview").hidden = false;
    $("preview-summary").textContent = p.name + ": " + p.rows + " rows, " + p.columns.length + " columns; first " +
      p.head.length + " rows:";
    const fmt = v => v == null ? "" : (typeof v === "number" ? +v.toPrecision(6) : v);
    const stats = $("preview-stats").querySelector("tbody"); stats.innerHTML = "";
    for (const c of p.columns) {
      const tr = document.createElement("tr");
      tr.append(text("td", c.name), text("td", c.dtype), text("td", c.count), text("td", c.nulls),
                text("td", fmt(c.min)), text("td", fmt(c.max)), text("td", fmt(c.mean)));
      stats.appendChild(tr);
    }
    const head = $("preview-head");
    head.querySelector("thead").innerHTML = ""; head.querySelector("tbody").innerHTML = "";
    const names = p.columns.map(c => c.name);
    const hr = document.createElement("tr"); names.forEach(n => hr.appendChild(text("th", n)));
    head.querySelector("thead").appendChild(hr);
    for (const record of p.head) {
      const tr = document.createElement("tr"); names.forEach(n => tr.appendChild(text("td", fmt(record[n]))));
      head.querySelector("tbody").appendChild(tr);
    }
  }

  async function showDetail(id) {
    shown = id;
    const r = await api("/api/etl/results/" + id);
    shownRow = r;
    $("detail").hidden = false;
    $("detail-title").textContent = detailTitle(r, r.status, r.progress);
    const tr = document.querySelector('#results tbody tr[data-id="' + r.id + '"]');
    if (tr) setRowStatus(tr, r.status, r.progress);
    const file = files[r.data_file_id];
    $("detail-meta").textContent = "file " + r.data_file_id + (file ? " " + file.name : "") + " · parameters " + JSON.stringify(r.parameters) +
      (r.task_run_id ? " · task run " + r.task_run_id + (r.worker ? " on " + r.worker : "") : "") +
      (r.flow_run_id ? " · flow run " + r.flow_run_id : "");
    $("detail-error").textContent = r.error || "";
    $("chart").hidden = true; $("chart-tools").hidden = true; $("quality").hidden = true; $("detail-json").hidden = true;
    $("legend").textContent = ""; $("schema-failures").textContent = "";
    const data = r.result_data;
    if (data && data.series) drawChart(r).catch(e => { $("legend").textContent = e.message; });
    else if (data && data.processing_type === "data_quality") qualityTable(data);
    else if (data) { $("detail-json").hidden = false; $("detail-json").textContent = JSON.stringify(data.result, null, 2); }
    for (const format of ["json", "csv"]) {
      $("export-" + format).onclick = async ev => {
        ev.preventDefault();
        const response = await fetch("/api/etl/results/" + id + "/export?format=" + format,
                                     {headers: {Authorization: "Bearer " + token}});
        const url = URL.createObjectURL(await response.blob());
        const a = document.createElement("a"); a.href = url; a.download = "result-" + id + "." + format; a.click();
      };
    }
  }

  // Parameter forms generated from each processor's JSON schema (GET /api/etl/processors).
  let schemas = {};
  async function loadSchemas() { schemas = await api("/api/etl/processors"); paramFields(); }

  function fieldType(prop) {
    const options = prop.anyOf ? prop.anyOf.filter(o => o.type !== "null") : [prop];
    return (options[0] || {}).type || "object";
  }

  function paramFields() {
    const box = $("param-fields"); box.innerHTML = "";
    const schema = (schemas[$("type").value] || {}).parameters;
    if (!schema) return;
    let current = {};
    try { current = JSON.parse($("params").value || "{}"); } catch (e) { current = {}; }
    const required = schema.required || [];
    for (const [name, prop] of Object.entries(schema.properties || {})) {
      const type = fieldType(prop);
      const label = document.createElement("label");
      label.title = prop.description || "";
      label.append(text("span", name + (required.includes(name) ? " *" : "")));
      const input = document.createElement("input");
      input.dataset.name = name; input.dataset.type = type;
      if (type === "boolean") { input.type = "checkbox"; input.checked = Boolean(current[name] ?? prop.default); }
      else {
        input.type = (type === "integer" || type === "number") ? "number" : "text";
        if (type === "number") input.step = "any";
        const value = current[name];
        input.value = value == null ? "" : (typeof value === "object" ? (Array.isArray(value) && type === "array"
          ? value.join(", ") : JSON.stringify(value)) : value);
        input.placeholder = prop.default == null ? (type === "array" ? "a, b" : "") : String(prop.default);
      }
      input.onchange = collectParams;
      label.appendChild(input); box.appendChild(label);
    }
  }

  function collectParams() {
    const out = {};
    for (const input of $("param-fields").querySelectorAll("input")) {
      const type = input.dataset.type, name = input.dataset.name;
      if (type === "boolean") { if (input.checked) out[name] = true; continue; }
      if (input.value.trim() === "") continue;
      if (type === "integer" || type === "number") out[name] = Number(input.value);
      else if (type === "array") out[name] = input.value.split(",").map(v => v.trim()).filter(Boolean);
      else if (type === "object") { try { out[name] = JSON.parse(input.value); } catch (e) { out[name] = input.value; } }
      else out[name] = input.value;
    }
    $("params").value = JSON.stringify(out);
  }

  async function start() {
    $("token").value = token;
    if (!token) return;
    try { await loadFiles(); await loadResults(); connect(); await loadSchemas(); }
    catch (e) { $("submit-status").textContent = String(e.message); }
  }

  $("save-token").onclick = () => { token = $("token").value.trim(); localStorage.setItem("clinicflow-token", token); start(); };
  $("type").onchange = () => { $("params").value = JSON.stringify(DEFAULT_PARAMS[$("type").value]); paramFields(); };
  $("zoom-in").onclick = () => ResultChart.current && ResultChart.current.zoom(0.5);
  $("zoom-out").onclick = () => ResultChart.current && ResultChart.current.zoom(2);
  $("pan-left").onclick = () => ResultChart.current && ResultChart.current.pan(-0.5);
  $("pan-right").onclick = () => ResultChart.current && ResultChart.current.pan(0.5);
  $("zoom-reset").onclick = () => ResultChart.current && ResultChart.current.reset();
  $("filter-status").onchange = () => { offset = 0; loadResults(); };
  $("page-prev").onclick = () => { offset = Math.max(0, offset - PAGE); loadResults(); };
  $("page-next").onclick = () => { offset += PAGE; loadResults(); };
  $("upload-form").onsubmit = async ev => {
    ev.preventDefault();
    const file = $("file-input").files[0];
    if (!file) return;
    const form = new FormData(); form.append("file", file);
    try {
      const row = await api("/api/etl/files", {method: "POST", body: form});
      $("upload-status").textContent = "uploaded as file " + row.id + (row.note ? " (" + row.note + ")" : "");
      await loadFiles(); $("file-select").value = row.id;
      await showPreview(row.id);
    } catch (e) { $("upload-status").textContent = e.message; }
  };
  $("process-form").onsubmit = async ev => {
    ev.preventDefault();
    $("submit-status").textContent = "submitting...";
    let parameters;
    try { parameters = JSON.parse($("params").value || "{}"); }
    catch (e) { $("submit-status").textContent = "parameters: not JSON"; return; }
    try {
      const row = await api("/api/etl/process", {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({data_file_id: +$("file-select").value, processing_type: $("type").value, parameters})});
      $("submit-status").textContent = "submitted as result " + row.id;
      await loadResults(); showDetail(row.id);
    } catch (e) { $("submit-status").textContent = e.message; }
  };
  start();
})();
