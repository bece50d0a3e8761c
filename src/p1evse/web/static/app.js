// p1evse status page: live state over Server-Sent Events and a chart of the last hour,
// drawn on a canvas by this file alone (no libraries, nothing fetched from elsewhere).
"use strict";

(function () {
  const HOUR_S = 3600;
  const CLOCK_SHOWN_FROM_S = 60; // a meter clock this far from ours is shown
  const REFUSED_RETRY_MS = 5000; // a refused stream is tried again after 5-10 s
  const $ = (id) => document.getElementById(id);

  const token = new URLSearchParams(location.search).get("token");
  const eventsUrl = "api/events" + (token ? "?token=" + encodeURIComponent(token) : "");

  let state = null;
  let skewS = 0; // server clock minus this browser's clock
  let rows = []; // [t (epoch s), meter W | null, sent W | null, charger A | null], oldest first

  const serverNow = () => Date.now() / 1000 + skewS;

  // -- formatting ----------------------------------------------------------------------

  function watts(w) {
    const abs = Math.abs(w);
    if (abs < 1000) return Math.round(abs) + " W";
    return (abs / 1000).toFixed(abs < 10000 ? 2 : 1) + " kW";
  }

  function signed(w) {
    const rounded = Math.round(w);
    return (rounded > 0 ? "+" : rounded < 0 ? "\u2212" : "") + watts(rounded);
  }

  function duration(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s";
    if (s < HOUR_S) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / HOUR_S) + " h " + Math.floor((s % HOUR_S) / 60) + " min";
  }

  const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");

  function ago(t) {
    const s = serverNow() - t;
    return s < 1.5 ? "just now" : duration(s) + " ago";
  }

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  // -- the state -----------------------------------------------------------------------

  function render() {
    if (!state) return;
    const meter = state.meter;
    const now = $("now");
    now.dataset.stale = state.stale ? "true" : "false";
    if (meter) {
      const direction = meter.net_w > 0 ? "import" : meter.net_w < 0 ? "export" : "none";
      now.dataset.direction = direction;
      $("direction").dataset.direction = direction;
      setText(
        "direction",
        direction === "import"
          ? "Importing from the grid"
          : direction === "export"
            ? "Exporting to the grid"
            : "Balanced: nothing in or out"
      );
      setText("grid-value", watts(meter.net_w));
      $("grid-value").dataset.watts = String(meter.net_w);
      setText("import", watts(meter.import_w));
      setText("export", watts(meter.export_w));
      setText("age", ago(meter.at));
      // a meter's clock far from ours is worth knowing (its telegrams still count)
      const offset = meter.clock ? meter.clock.offset_s : 0;
      $("meter-clock-fact").hidden = Math.abs(offset) < CLOCK_SHOWN_FROM_S;
      setText(
        "meter-clock",
        duration(Math.abs(offset)) + (offset > 0 ? " ahead of" : " behind") + " this machine"
      );
    }

    const sent = state.published;
    if (sent) {
      setText("sent-value", signed(sent.watts));
      $("sent-value").dataset.watts = String(sent.watts);
      const what = sent.failsafe
        ? "fail-safe value"
        : "mean of " + sent.readings + (sent.readings === 1 ? " reading" : " readings");
      setText("sent-detail", what + " to " + sent.to + ", " + ago(sent.at));
    }

    renderStale();
    renderLinks();

    const c = state.counters;
    const rejected = Object.entries(c.rejected)
      .map(([reason, n]) => n + " " + reason.replace(/_/g, " "))
      .join(", ");
    setText(
      "counters",
      plural(c.readings, "reading") + " · " + plural(c.published, "value") + " sent · " +
        (rejected ? "rejected: " + rejected : "nothing rejected") + " · " +
        (c.stale_entered ? "stale " + c.stale_entered + "× (" + duration(c.stale_s) + ")" : "never stale")
    );
    setText("version", "p1evse " + state.version);
  }

  function renderStale() {
    const banner = $("stale");
    const stale = state.stale;
    banner.hidden = !stale;
    if (!stale) return;
    const cfg = state.config;
    const quiet = state.meter ? serverNow() - state.meter.at : null;
    setText(
      "stale-title",
      quiet === null
        ? "No meter reading since start-up"
        : "No meter reading for " + duration(quiet)
    );
    const did = {
      pause: stale.charger_spared
        ? "OpenEVSE is in normal mode: p1evse leaves that charge alone and does not pause it."
        : "Charging is paused: p1evse claimed OpenEVSE disabled (" + cfg.claim_to +
          "). It releases the claim with the next fresh reading.",
      import:
        "p1evse sends the fail-safe " + watts(cfg.failsafe_import_w) + " import to OpenEVSE" +
        " every " + (cfg.interval_s || 5) + " s, so solar divert winds down.",
      none: "Nothing is sent: OpenEVSE keeps charging at its last rate.",
    }[stale.action];
    setText("stale-text", did || "");
    banner.dataset.action = stale.action;
  }

  function renderLinks() {
    const links = state.links;
    const words = {
      source: { connected: "receiving", connecting: "waiting for a reading", disconnected: "silent" },
      broker: { connected: "connected", connecting: "connecting", disconnected: "disconnected" },
      charger: {
        connected: "reporting",
        connecting: "no report yet",
        disconnected: "silent",
        unknown: "not monitored",
      },
    };
    for (const name of ["source", "broker", "charger"]) {
      const link = links[name];
      const li = $("link-" + name);
      li.dataset.state = link.state;
      li.querySelector(".state").textContent = (words[name] || {})[link.state] || link.state;
      li.querySelector(".detail").textContent = link.detail;
    }
  }

  // -- the chart's rows ----------------------------------------------------------------

  function merge(history, full) {
    if (full) rows = [];
    if (history.t0 === null) return;
    for (const [k, meter, sent, charger] of history.rows) {
      // trailing nulls are left out of a row
      const row = [history.t0 + k * history.step_s, meter ?? null, sent ?? null, charger ?? null];
      let i = rows.length;
      while (i > 0 && rows[i - 1][0] > row[0] + 1e-6) i--;
      if (i > 0 && Math.abs(rows[i - 1][0] - row[0]) < 1e-6) rows[i - 1] = row;
      else rows.splice(i, 0, row);
    }
    const oldest = serverNow() - HOUR_S;
    let drop = 0;
    while (drop < rows.length && rows[drop][0] < oldest) drop++;
    if (drop) rows.splice(0, drop);
  }

  // -- drawing ---------------------------------------------------------------------------

  const canvas = $("chart");

  function niceStep(range) {
    const raw = range / 4;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
    return 10 * power;
  }

  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function clock(t) {
    const d = new Date((t - skewS) * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const end = serverNow();
    const start = end - HOUR_S;
    let lo = 0;
    let hi = 0;
    for (const [, meter, sent] of rows) {
      for (const v of [meter, sent]) {
        if (v === null) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    // zero is never at the edge: both import and export keep some room
    const span = Math.max(hi - lo, 500);
    hi = Math.max(hi, span * 0.12);
    lo = Math.min(lo, -span * 0.12);
    const step = niceStep(hi - lo);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const kw = Math.max(Math.abs(lo), Math.abs(hi)) >= 1000;
    // as many decimals as the step needs: 0.25 kW, 0.5 kW, 1 kW
    let decimals = 0;
    while (kw && decimals < 3 && Math.abs(Math.round((step / 1000) * 10 ** decimals) -
      (step / 1000) * 10 ** decimals) > 1e-9) decimals++;
    const label = (v) => (kw ? (v / 1000).toFixed(decimals) + " kW" : v + " W");

    ctx.font = "11px system-ui, sans-serif";
    const labelWidth = Math.max(ctx.measureText(label(lo)).width, ctx.measureText(label(hi)).width);
    // the charger's current, when it reports one: its own axis on the right, 0 A at 0 W
    let ampMax = 0;
    for (const row of rows) if (row[3] !== null && row[3] > ampMax) ampMax = row[3];
    const amps = rows.some((row) => row[3] !== null);
    ampMax = Math.max(16, Math.ceil(ampMax / 8) * 8);
    $("legend-charger").hidden = !amps;

    const left = Math.ceil(labelWidth) + 10;
    const right = width - (amps ? Math.ceil(ctx.measureText(ampMax + " A").width) + 12 : 6);
    const top = 8;
    const bottom = height - 20;
    const x = (t) => left + ((t - start) / HOUR_S) * (right - left);
    const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
    const yAmps = (a) => y(0) - (a / ampMax) * (y(0) - top);

    // horizontal grid and labels
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let v = lo; v <= hi + step / 2; v += step) {
      ctx.strokeStyle = v === 0 ? color("--zero-line") : color("--grid-line");
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y(v)) + 0.5);
      ctx.lineTo(right, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.fillStyle = color("--muted");
      ctx.fillText(label(v), left - 6, y(v));
    }
    if (amps) {
      ctx.textAlign = "left";
      ctx.fillStyle = color("--charger");
      for (const a of [0, ampMax / 2, ampMax]) ctx.fillText(a + " A", right + 6, yAmps(a));
    }

    // time axis: every 10 minutes
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const tenMin = 600;
    for (let t = Math.ceil(start / tenMin) * tenMin; t <= end; t += tenMin) {
      const px = x(t);
      ctx.strokeStyle = color("--grid-line");
      ctx.beginPath();
      ctx.moveTo(Math.round(px) + 0.5, top);
      ctx.lineTo(Math.round(px) + 0.5, bottom);
      ctx.stroke();
      if (px > left + 16 && px < right - 16) {
        ctx.fillStyle = color("--muted");
        ctx.fillText(clock(t), px, bottom + 5);
      }
    }

    // lines break where the data has a gap longer than the stale timeout
    const gap = state ? Math.max(state.config.stale_after_s, 2) : 30;
    const zero = y(0);
    const halves = [
      [top, zero, color("--import")],
      [zero, bottom, color("--export")],
    ];
    for (const [from, to, stroke] of halves) {
      // the meter: an area from zero, orange where the house imports, green where it exports
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, from, right - left, to - from);
      ctx.clip();
      ctx.globalAlpha = 0.22;
      ctx.fillStyle = stroke;
      meterArea(ctx, x, y, gap, zero);
      ctx.fill();
      ctx.globalAlpha = 1;
      series(ctx, 1, x, y, gap, stroke, 1, false);
      ctx.restore();
    }
    ctx.strokeStyle = color("--zero-line");
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(zero) + 0.5);
    ctx.lineTo(right, Math.round(zero) + 0.5);
    ctx.stroke();
    series(ctx, 2, x, y, gap, color("--sent"), 2, true);
    ctx.setLineDash([5, 3]);
    series(ctx, 3, x, yAmps, gap, color("--charger"), 1.5, true);
    ctx.setLineDash([]);
    // where each line is now
    for (const [column, name] of [[1, "--text"], [2, "--sent"]]) {
      for (let i = rows.length - 1; i >= 0; i--) {
        const v = rows[i][column];
        if (v === null) continue;
        ctx.fillStyle = color(name);
        ctx.beginPath();
        ctx.arc(x(rows[i][0]), y(v), 3, 0, 2 * Math.PI);
        ctx.fill();
        break;
      }
    }

    const counts = [0, 0, 0, 0];
    for (const row of rows) for (let i = 1; i < 4; i++) if (row[i] !== null) counts[i]++;
    canvas.dataset.meterPoints = String(counts[1]);
    canvas.dataset.sentPoints = String(counts[2]);
    canvas.dataset.chargerPoints = String(counts[3]);
  }

  function meterArea(ctx, x, y, gap, zero) {
    ctx.beginPath();
    let last = null;
    for (const row of rows) {
      if (row[1] === null) continue;
      if (last === null || row[0] - last[0] > gap) {
        if (last !== null) ctx.lineTo(x(last[0]), zero);
        ctx.moveTo(x(row[0]), zero);
      }
      ctx.lineTo(x(row[0]), y(row[1]));
      last = row;
    }
    if (last !== null) ctx.lineTo(x(last[0]), zero);
    ctx.closePath();
  }

  function series(ctx, column, x, y, gap, stroke, width, steps) {
    ctx.strokeStyle = stroke;
    ctx.lineWidth = width;
    ctx.lineJoin = "round";
    ctx.beginPath();
    let last = null;
    for (const row of rows) {
      const v = row[column];
      if (v === null) continue;
      if (last === null || row[0] - last[0] > gap) {
        if (last !== null && steps) ctx.lineTo(x(last[0] + Math.min(gap, 5)), y(last[1]));
        ctx.moveTo(x(row[0]), y(v));
      } else {
        if (steps) ctx.lineTo(x(row[0]), y(last[1]));
        ctx.lineTo(x(row[0]), y(v));
      }
      last = [row[0], v];
    }
    if (last !== null) {
      // a lone point still shows; the last sent value holds until now
      const until = steps ? Math.min(serverNow(), last[0] + gap) : last[0];
      ctx.lineTo(Math.max(x(until), x(last[0]) + 1.5), y(last[1]));
    }
    ctx.stroke();
  }

  // -- the live stream -----------------------------------------------------------------

  function connect() {
    const live = $("live");
    const source = new EventSource(eventsUrl);
    source.addEventListener("open", () => {
      live.dataset.state = "live";
      setText("live-text", "live");
    });
    source.addEventListener("error", () => {
      live.dataset.state = "lost";
      setText("live-text", "reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        // refused (503: as many live pages as web.max_streams are open): the browser
        // gives such a stream up, so the page tries again by itself
        setTimeout(connect, REFUSED_RETRY_MS * (1 + Math.random()));
      }
    });
    source.addEventListener("state", (event) => {
      const message = JSON.parse(event.data);
      state = message.state;
      skewS = state.now - Date.now() / 1000;
      merge(message.history, message.full);
      render();
      draw();
    });
  }

  window.addEventListener("resize", draw);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);
  // ages count up and the chart's window slides even when nothing new arrives
  setInterval(render, 1000);
  setInterval(draw, 5000);
  connect();
})();
