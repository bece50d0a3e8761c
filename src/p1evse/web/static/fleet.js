// The fleet's page: its summary and its sites, a page at a time, refreshed every 5 s.
"use strict";
(() => {
  const PAGE = 50;
  const REFRESH_MS = 5000;
  const token = new URLSearchParams(location.search).get("token");
  const withToken = (path, sep) => path + (token ? sep + "token=" + encodeURIComponent(token) : "");
  const $ = (id) => document.getElementById(id);
  let offset = 0;
  let total = 0;

  const watts = (w) => (w === null ? "—" : (w > 0 ? "+" : "") + w.toLocaleString("en") + " W");
  const age = (s) => (s === null ? "never" : s < 90 ? Math.round(s) + " s ago" : Math.round(s / 60) + " min ago");

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function render(page) {
    total = page.total;
    const body = $("rows");
    body.replaceChildren();
    for (const site of page.sites) {
      const row = body.insertRow();
      row.dataset.site = site.id;
      if (site.stale) row.className = "stale";
      const link = document.createElement("a");
      link.href = withToken("site/" + encodeURIComponent(site.id), "?");
      link.textContent = site.id;
      row.insertCell().append(link);
      cell(row, watts(site.watts), "num");
      cell(row, (site.stale ? "stale, " : "") + age(site.reading_age_s));
      cell(row, site.charger.amps === null ? "—" : site.charger.amps + " A", "num");
      cell(row, (site.paused ? "paused by p1evse · " : "") + (site.charger.state ?? "—"));
    }
    const last = Math.min(offset + page.sites.length, total);
    $("range").textContent = total ? `${offset + 1}–${last} of ${total}` : "no sites";
    $("prev").disabled = offset === 0;
    $("next").disabled = last >= total;
  }

  function summarize(state) {
    const fleet = state.fleet;
    $("sites-count").textContent = `${fleet.sites} of at most ${fleet.max_sites}`;
    $("stale-count").textContent = fleet.stale;
    $("paused-count").textContent = fleet.paused;
    $("charging-count").textContent = fleet.charging;
    const share = fleet.members ? `${fleet.member}, one of ${fleet.members.length} members`
      : fleet.shard ? `shard ${fleet.shard}`
      : fleet.share_group ? `the meters the broker deals to it (group ${fleet.share_group})`
      : "serves every site";
    $("member").textContent = share;
    const live = $("live");
    live.dataset.state = state.broker.connected ? "live" : "offline";
    $("live-text").textContent = state.broker.connected ? "broker connected" : "broker not connected";
  }

  async function get(path) {
    const response = await fetch(withToken(path, path.includes("?") ? "&" : "?"), { cache: "no-store" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  async function refresh() {
    const query = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
    for (const name of ["stale", "charging"]) if ($(name).value) query.set(name, $(name).value);
    try {
      const [state, page] = await Promise.all([get("api/state"), get("api/sites?" + query)]);
      summarize(state);
      render(page);
    } catch (error) {
      $("live").dataset.state = "offline";
      $("live-text").textContent = "no answer from p1evse";
    }
  }

  $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); refresh(); });
  $("next").addEventListener("click", () => { if (offset + PAGE < total) offset += PAGE; refresh(); });
  for (const name of ["stale", "charging"]) $(name).addEventListener("change", () => { offset = 0; refresh(); });
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
