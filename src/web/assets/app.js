// fleetpoll's status page: refresh in place, sort and filter the remote list, the
// timeframe selector (remembered in localStorage), live hour charts from
// api/v1/live, hover values, and "collect now" with the API token kept in
// sessionStorage. Every URL is relative to the page (data-base on <body>).
"use strict";
(function () {
  const body = document.body;
  const base = body.dataset.base || "./";
  const status = document.getElementById("status");
  const say = (text) => { if (status) status.textContent = text; };

  // ---- refresh: fetch this page again and swap every [data-live] part.
  const refreshSecs = Number(body.dataset.refresh || 0);
  async function refresh() {
    try {
      const r = await fetch(location.href, { headers: { Accept: "text/html" } });
      if (!r.ok) { say("refresh failed: " + r.status); return; }
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      for (const el of document.querySelectorAll("[data-live]")) {
        const fresh = doc.querySelector('[data-live="' + el.dataset.live + '"]');
        if (fresh) el.innerHTML = fresh.innerHTML;
      }
      applyTable();
      say("updated " + new Date().toLocaleTimeString());
    } catch (e) {
      say("refresh failed: " + e.message);
    }
  }
  if (refreshSecs > 0) setInterval(refresh, refreshSecs * 1000);

  // ---- the remote list: sort by a column, filter by state and text.
  const table = document.getElementById("remotes");
  let sortKey = "remote", sortDir = 1, sortNumeric = false;
  function applyTable() {
    if (!table) return;
    const tbody = table.tBodies[0];
    const state = document.getElementById("state-filter").value;
    const text = document.getElementById("text-filter").value.trim().toLowerCase();
    const rows = Array.from(tbody.rows);
    const value = (row) => {
      const cell = row.querySelector('[data-key="' + sortKey + '"]');
      const v = cell ? cell.dataset.v : "";
      return sortNumeric ? Number(v) : v;
    };
    rows.sort((a, b) => {
      const x = value(a), y = value(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
    let shown = 0;
    for (const row of rows) {
      const ok = (!state || row.dataset.state === state) && (!text || row.dataset.text.includes(text));
      row.hidden = !ok;
      if (ok) shown++;
      tbody.appendChild(row);
    }
    document.getElementById("shown").textContent = shown + " of " + rows.length + " shown";
    for (const b of table.querySelectorAll("th button")) {
      b.parentElement.setAttribute("aria-sort", b.dataset.sort === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
    }
  }
  if (table) {
    for (const b of table.querySelectorAll("th button")) {
      b.addEventListener("click", () => {
        if (sortKey === b.dataset.sort) sortDir = -sortDir; else { sortKey = b.dataset.sort; sortDir = 1; }
        sortNumeric = !!b.dataset.numeric;
        applyTable();
      });
    }
    document.getElementById("state-filter").addEventListener("change", applyTable);
    document.getElementById("text-filter").addEventListener("input", applyTable);
    applyTable();
  }

  // ---- charts: timeframe and cf remembered across visits, live hour view, hover.
  const charts = document.getElementById("charts");
  let live = null, liveTimer = null, loads = 0;
  async function loadCharts() {
    // Only the newest request may draw: a live redraw of the hour that answers after
    // the switch to another timeframe must not overwrite it.
    const seq = ++loads;
    const d = charts.dataset;
    const url = base + "ui/charts?remote=" + encodeURIComponent(d.remote) + "&entity=" +
      encodeURIComponent(d.entity) + "&timeframe=" + d.timeframe + "&cf=" + d.cf;
    const r = await fetch(url);
    const text = await r.text();
    if (seq !== loads) return;
    if (r.ok) { charts.innerHTML = text; charts.dataset.loaded = String(Date.now()); }
    else say("charts: " + r.status);
  }
  function followLive() {
    if (live) { live.close(); live = null; }
    clearTimeout(liveTimer);
    const liveState = document.getElementById("live-state");
    if (charts.dataset.timeframe !== "hour") { liveState.textContent = ""; return; }
    const d = charts.dataset;
    live = new EventSource(base + "api/v1/live?remote=" + encodeURIComponent(d.remote) +
      "&entity=" + encodeURIComponent(d.entity));
    live.onopen = () => { liveState.textContent = "live"; };
    live.onerror = () => { liveState.textContent = "live: reconnecting"; };
    live.addEventListener("samples", () => {
      // Several batches arrive together: redraw once they have.
      clearTimeout(liveTimer);
      liveTimer = setTimeout(loadCharts, 500);
    });
  }
  function choose(timeframe, cf) {
    charts.dataset.timeframe = timeframe;
    charts.dataset.cf = cf;
    localStorage.setItem("fleetpoll.timeframe", timeframe);
    localStorage.setItem("fleetpoll.cf", cf);
    for (const b of document.querySelectorAll("[data-timeframe]")) {
      if (b !== charts) b.setAttribute("aria-pressed", String(b.dataset.timeframe === timeframe));
    }
    for (const b of document.querySelectorAll("button[data-cf]")) {
      b.setAttribute("aria-pressed", String(b.dataset.cf === cf));
    }
    loadCharts();
    followLive();
  }
  if (charts) {
    for (const b of document.querySelectorAll("button[data-timeframe]")) {
      b.addEventListener("click", () => choose(b.dataset.timeframe, charts.dataset.cf));
    }
    for (const b of document.querySelectorAll("button[data-cf]")) {
      b.addEventListener("click", () => choose(charts.dataset.timeframe, b.dataset.cf));
    }
    const t = localStorage.getItem("fleetpoll.timeframe"), c = localStorage.getItem("fleetpoll.cf");
    if ((t && t !== charts.dataset.timeframe) || (c && c !== charts.dataset.cf)) {
      choose(t || charts.dataset.timeframe, c || charts.dataset.cf);
    } else {
      charts.dataset.loaded = "0";
      followLive();
    }
  }

  const tooltip = document.getElementById("tooltip");
  function fmt(unit, v) {
    if (unit === "share") return (v * 100).toFixed(1) + " %";
    if (unit === "bytes" || unit === "bytes/s") {
      const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
      while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
      return v.toFixed(i ? 1 : 0) + " " + u[i] + (unit === "bytes/s" ? "/s" : "");
    }
    return Number(v.toFixed(2)).toString();
  }
  function hover(ev) {
    const rect = ev.target.closest("rect.hover");
    if (!rect) { tooltip.hidden = true; return; }
    const svg = rect.ownerSVGElement;
    const ts = svg.dataset.t.split(",").map(Number);
    const box = svg.getBoundingClientRect();
    const vbw = Number(rect.dataset.vbw), left = Number(rect.dataset.left), width = Number(rect.dataset.width);
    const x = (ev.clientX - box.left) / box.width * vbw;
    const frac = Math.min(1, Math.max(0, (x - left) / width));
    const t0 = Number(svg.dataset.start), t1 = Number(svg.dataset.end);
    const t = t0 + frac * (t1 - t0);
    let i = 0;
    for (let j = 0; j < ts.length; j++) if (Math.abs(ts[j] - t) < Math.abs(ts[i] - t)) i = j;
    const lines = [new Date(ts[i] * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC"];
    for (const g of svg.querySelectorAll("g.series")) {
      const v = g.dataset.v.split(",")[i];
      lines.push(g.dataset.name + ": " + (v === "" || v === undefined ? "—" : fmt(svg.dataset.unit, Number(v))));
    }
    tooltip.textContent = lines.join("\n");
    tooltip.hidden = false;
    tooltip.style.left = (ev.pageX + 12) + "px";
    tooltip.style.top = (ev.pageY + 12) + "px";
    const cursor = svg.querySelector("line.cursor");
    const cx = left + (ts[i] - t0) / Math.max(1, t1 - t0) * width;
    cursor.setAttribute("x1", cx); cursor.setAttribute("x2", cx);
    cursor.setAttribute("visibility", "visible");
  }
  document.addEventListener("mousemove", hover);

  // ---- collect now: POST api/v1/collect, asking for the token once when needed.
  function askToken() {
    const dialog = document.getElementById("token-dialog");
    const input = document.getElementById("token-input");
    input.value = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        resolve(dialog.returnValue === "ok" && input.value ? input.value : null);
      }, { once: true });
      dialog.showModal();
    });
  }
  async function collect(button) {
    const out = button.parentElement.querySelector(".collect-result");
    button.disabled = true;
    out.textContent = "collecting…";
    try {
      if (!sessionStorage.getItem("fleetpoll.token")) {
        // Ask for the token before the first change, not after a refusal.
        const d = await (await fetch(base + "api/v1/daemon")).json();
        if (d.token_required) {
          const t = await askToken();
          if (!t) { out.textContent = "cancelled: the daemon needs its API token"; return; }
          sessionStorage.setItem("fleetpoll.token", t);
        }
      }
      for (let attempt = 0; attempt < 3; attempt++) {
        const headers = { "Content-Type": "application/json" };
        const token = sessionStorage.getItem("fleetpoll.token");
        if (token) headers.Authorization = "Bearer " + token;
        const r = await fetch(base + "api/v1/collect", {
          method: "POST", headers, body: JSON.stringify({ remote: button.dataset.remote, wait: true }),
        });
        if (r.status === 401) {
          sessionStorage.removeItem("fleetpoll.token");
          const t = await askToken();
          if (!t) { out.textContent = "cancelled: the daemon needs its API token"; return; }
          sessionStorage.setItem("fleetpoll.token", t);
          continue;
        }
        const v = await r.json();
        if (!r.ok) { out.textContent = "failed: " + (v.error || r.status); return; }
        const res = (v.results || [])[0] || {};
        out.textContent = !res.ok ? "failed: " + res.error
          : res.result.outcome === "stored" ? "stored " + res.result.points + " points"
          : "skipped: " + (res.result.reason || "");
        await refresh();
        return;
      }
    } catch (e) {
      out.textContent = "failed: " + e.message;
    } finally {
      button.disabled = false;
    }
  }
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button.collect");
    if (b) collect(b);
  });
})();
