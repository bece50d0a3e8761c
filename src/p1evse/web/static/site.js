// One site of a fleet: its values now, and what was sent to its charger in the last hour
// (the last value in each 10 s), refreshed every 10 s.
"use strict";
(() => {
  const REFRESH_MS = 10000;
  const token = new URLSearchParams(location.search).get("token");
  const withToken = (path) => path + (token ? "?token=" + encodeURIComponent(token) : "");
  const $ = (id) => document.getElementById(id);
  const site = ((last) => {
    try { return decodeURIComponent(last); } catch { return last; } // a broken %-escape
  })(location.pathname.split("/").filter(Boolean).pop() || "");
  $("site-id").textContent = site;
  document.title = "p1evse · " + site;
  $("back").href = withToken("../");
  let plot = null;

  const watts = (w) => (w === null ? "—" : (w > 0 ? "+" : "") + w.toLocaleString("en") + " W");
  const age = (s) => (s === null ? "never" : s < 90 ? Math.round(s) + " s ago" : Math.round(s / 60) + " min ago");

  function draw(history) {
    const times = history.rows.map((row) => row[0]);
    const values = history.rows.map((row) => row[1]);
    const data = [times, values];
    if (plot) { plot.setData(data); return; }
    const width = Math.max(300, $("chart").clientWidth || 600);
    plot = new uPlot({
      width, height: 240,
      scales: { x: { time: true } },
      series: [{}, { label: "Sent to OpenEVSE (W)", stroke: "#6d28d9", width: 2, spanGaps: false }],
      axes: [{}, { size: 60 }],
    }, data, $("chart"));
  }

  async function refresh() {
    let response;
    try {
      response = await fetch(withToken("../api/sites/" + encodeURIComponent(site)), { cache: "no-store" });
    } catch (error) {
      $("live").dataset.state = "offline";
      $("live-text").textContent = "no answer from p1evse";
      return;
    }
    $("missing").hidden = response.status !== 404;
    if (!response.ok) return;
    const state = await response.json();
    $("live").dataset.state = state.stale ? "offline" : "live";
    $("live-text").textContent = state.stale ? "meter stale" : "meter fresh";
    $("sent").textContent = watts(state.watts) + (state.sent_age_s === null ? "" : ", " + age(state.sent_age_s));
    $("reading").textContent = (state.stale ? "stale, " : "") + age(state.reading_age_s);
    $("amps").textContent = state.charger.amps === null ? "—" : state.charger.amps + " A";
    $("state").textContent = (state.paused ? "paused by p1evse · " : "") + (state.charger.state ?? "—");
    draw(state.history);
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
