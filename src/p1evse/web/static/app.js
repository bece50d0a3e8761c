// p1evse status page: live state over Server-Sent Events, and a chart of the meter, the
// values sent and the charger's current, drawn by uPlot (vendored, served by p1evse:
// nothing is fetched from elsewhere).
"use strict";

(function () {
  const HOUR_S = 3600;
  const RANGES = { quarter: 900, hour: HOUR_S, today: null }; // s shown, at most
  const RANGE_TITLES = { quarter: "Last 15 min", hour: "Last hour", today: "Today" };
  const MIN_SPAN_S = 10; // the chart spans at least this, right after start-up
  const CHARGER_HOLD_S = 30; // the charger's current is charted every 10 s while fresh
  const DAY_REFRESH_MS = 60000; // "today"'s minute rows are fetched again this often
  const VOLTAGE_FROM = {
    charger: "the charger's voltage",
    meter: "the meter's voltage",
    nominal: "nominal voltage: neither the charger nor the meter reports one",
  };
  const CLOCK_SHOWN_FROM_S = 60; // a meter clock this far from ours is shown
  const REFUSED_RETRY_MS = 5000; // a refused stream is tried again after 5-10 s
  const $ = (id) => document.getElementById(id);

  const token = new URLSearchParams(location.search).get("token");
  const withToken = (path, sep) => path + (token ? sep + "token=" + encodeURIComponent(token) : "");
  const eventsUrl = withToken("api/events", "?");

  let state = null;
  let skewS = 0; // server clock minus this browser's clock
  let rows = []; // [t (epoch s), meter W | null, sent W | null, charger A | null], oldest first
  let dayRows = []; // the same, a row a minute since midnight (fetched for "today")
  let range = "hour"; // the chosen range: kept while the page is open
  let zoom = null; // [from, to] while zoomed in by a drag; null: the range

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

  function clock(t) {
    const d = new Date((t - skewS) * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  function midnight() {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    return d.getTime() / 1000 + skewS;
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
      setText("sent-detail", "to " + sent.to);
      $("sent-why").hidden = false;
      setText("sent-why", sentWhy(sent));
    }

    if (state.sim_clock) setText("sim-time", state.sim_clock);
    $("sim-clock").hidden = !state.sim_clock;
    renderCar();
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

  function sentWhy(sent) {
    if (sent.failsafe) return "The fail-safe import: no valid reading came for too long.";
    const over = sent.over_s === null ? "" : " over the " + duration(sent.over_s) + " before it";
    const what = sent.held
      ? "The value sent before, again: the mean of " + plural(sent.readings, "reading") +
        over + " stayed within " + state.config.band_w + " W of it"
      : sent.readings === 1
        ? "One reading, sent as it came"
        : "The mean of " + sent.readings + " readings" + over;
    return what + ", sent " + ago(sent.at) + ". OpenEVSE wants a value every few seconds, " +
      "not every reading, so it differs from Grid now (the latest reading).";
  }

  function kwh(v) {
    return v.toFixed(v < 10 ? 2 : 1) + " kWh";
  }

  function renderCar() {
    const car = state.car;
    const charger = state.charger;
    if (car) {
      setText("car-power", watts(car.power_w));
      setText(
        "car-detail",
        charger.current_a.toFixed(1) + " A × " + Math.round(car.voltage_v) + " V (" +
          VOLTAGE_FROM[car.voltage_from] + ")"
      );
    } else {
      setText("car-power", "—");
      setText("car-detail", "The charger does not report the current the car draws.");
    }
    const pause = state.pause;
    const el = $("pause");
    el.dataset.claimed = pause.claimed ? "true" : "false";
    let text = "none";
    if (pause.claimed) text = "active since " + clock(pause.since);
    else if (state.stale && state.stale.charger_spared) text = "none: normal mode is spared";
    else if (state.config.on_stale !== "pause") text = "never (on_stale: " + state.config.on_stale + ")";
    setText("pause", text);
    const energy = state.energy;
    setText("solar-kwh", kwh(energy.solar_kwh));
    setText("grid-kwh", kwh(energy.grid_kwh));
    setText(
      "energy-note",
      "Estimated: while the car draws C W and the meter shows an import of P W, " +
        "min(P, C) is from the grid and the rest from solar; summed since " +
        (energy.since_start_up ? "start-up at " + clock(energy.since) : "midnight") + "."
    );
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

  function expand(history) {
    if (history.t0 === null) return [];
    return history.rows.map(([k, meter, sent, charger]) => [
      history.t0 + k * history.step_s, meter ?? null, sent ?? null, charger ?? null, history.step_s,
    ]);
  }

  async function fetchDay() {
    try {
      const response = await fetch(withToken("api/history?range=today", "&"), { cache: "no-store" });
      if (!response.ok) return;
      dayRows = expand(await response.json());
      draw();
    } catch (error) {
      // the stream's reconnect says that the service is away; the next try comes soon
    }
  }

  // The rows the chosen range shows: the last hour at 1 s, and for "today" the minute
  // rows since midnight before it.
  function shownRows() {
    const fine = rows.map((row) => [...row, 1]);
    if (range !== "today") return fine;
    const from = fine.length ? fine[0][0] : Infinity;
    const today = midnight();
    return dayRows.filter((row) => row[0] >= today - 60 && row[0] < from).concat(fine);
  }

  // Columns for uPlot: a break (nulls) where the data has a gap longer than the stale
  // timeout; the value sent holds until the next one (a stepped line), as the charger's
  // current does.
  function columns(shown) {
    const cfg = state ? state.config : { stale_after_s: 30, interval_s: 5 };
    const gap = Math.max(cfg.stale_after_s, 2);
    const hold = Math.max(cfg.stale_after_s, 2 * cfg.interval_s, 2);
    const xs = [], meter = [], sent = [], amps = [];
    let last = null, sentV = null, sentT = -Infinity, ampsV = null, ampsT = -Infinity;
    for (const [t, m, s, a, step] of shown) {
      if (last !== null && t - last > Math.max(gap, 2 * step)) {
        xs.push(last + step); meter.push(null); sent.push(null); amps.push(null);
      }
      if (s !== null) { sentV = s; sentT = t; }
      if (a !== null) { ampsV = a; ampsT = t; }
      xs.push(t);
      meter.push(m);
      sent.push(t - sentT <= Math.max(hold, 2 * step) ? sentV : null);
      amps.push(t - ampsT <= Math.max(CHARGER_HOLD_S, 2 * step) ? ampsV : null);
      last = t;
    }
    return [xs, meter, sent, amps];
  }

  // -- the chart -----------------------------------------------------------------------

  const box = $("chart");
  let plot = null;
  let data = [[], [], [], []];
  let yRange = [-500, 500];
  let ampMax = 16;
  let hasAmps = false;
  let asked = null; // the x range the chart last asked for

  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function windowRange() {
    const end = serverNow();
    const first = data[0].length ? data[0][0] : end;
    let start = range === "today" ? Math.max(first, midnight()) : Math.max(first, end - RANGES[range]);
    if (end - start < MIN_SPAN_S) start = end - MIN_SPAN_S;
    return [start, end];
  }

  function scaleRanges() {
    // zero is never at the edge: import and export both keep some room
    let lo = 0, hi = 0, amps = 0;
    for (const column of [data[1], data[2]]) {
      for (const v of column) {
        if (v === null) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    hasAmps = false;
    for (const v of data[3]) {
      if (v === null) continue;
      hasAmps = true;
      if (v > amps) amps = v;
    }
    const span = Math.max(hi - lo, 500);
    yRange = [Math.min(lo, -span * 0.12) * 1.05, Math.max(hi, span * 0.12) * 1.05];
    ampMax = Math.max(16, Math.ceil(amps / 8) * 8);
  }

  function kw(v) {
    const abs = Math.abs(v);
    const sign = v < 0 ? "\u2212" : "";
    if (abs < 1000) return sign + Math.round(abs) + " W";
    return sign + (abs / 1000).toFixed(abs < 10000 && abs % 1000 ? 1 : 0) + " kW";
  }

  // the time of day, with seconds when the ticks are less than a minute apart
  function timeLabels(u, splits, axis, space, step) {
    return splits.map((t) => clock(t) + (step < 60 ? ":" + String(Math.round(t % 60)).padStart(2, "0") : ""));
  }

  function splitStyle(u, above, below) {
    // one colour above zero (import), another below (export)
    const { top, height } = u.bbox;
    if (!height) return above;
    const zero = Math.min(1, Math.max(0, (u.valToPos(0, "W", true) - top) / height));
    const gradient = u.ctx.createLinearGradient(0, top, 0, top + height);
    gradient.addColorStop(0, above);
    gradient.addColorStop(zero, above);
    gradient.addColorStop(zero, below);
    gradient.addColorStop(1, below);
    return gradient;
  }

  // stale periods and the pause claims: bands under the lines
  function shade(u) {
    const { left, top, width, height } = u.bbox;
    const [from, to] = [u.scales.x.min, u.scales.x.max];
    const periods = state ? state.periods : { stale: [], paused: [] };
    const counts = { stale: 0, paused: 0 };
    const ctx = u.ctx;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    for (const kind of ["stale", "paused"]) {
      for (const [start, end] of periods[kind]) {
        const a = Math.max(start, from);
        const b = Math.min(end ?? serverNow(), to);
        if (b <= a) continue;
        const x0 = u.valToPos(a, "x", true);
        const x1 = Math.max(u.valToPos(b, "x", true), x0 + 2);
        if (kind === "stale") {
          ctx.fillStyle = color("--stale-band");
          ctx.fillRect(x0, top, x1 - x0, height);
        } else {
          // hatched, so it shows on top of a stale band
          ctx.strokeStyle = color("--pause-band");
          ctx.lineWidth = 2 * devicePixelRatio;
          ctx.beginPath();
          for (let x = x0 - height; x < x1; x += 8 * devicePixelRatio) {
            ctx.moveTo(x, top + height);
            ctx.lineTo(x + height, top);
          }
          ctx.save();
          ctx.beginPath();
          ctx.rect(x0, top, x1 - x0, height);
          ctx.clip();
          ctx.stroke();
          ctx.restore();
        }
        counts[kind]++;
      }
    }
    ctx.restore();
    box.dataset.staleBands = String(counts.stale);
    box.dataset.pauseBands = String(counts.paused);
  }

  // what the test and a reader can check: the range shown and how much of it has data
  function drawn(u) {
    const xs = data[0];
    let first = null, last = null;
    for (let i = 0; i < xs.length; i++) {
      if (data[1][i] === null || xs[i] < u.scales.x.min || xs[i] > u.scales.x.max) continue;
      if (first === null) first = xs[i];
      last = xs[i];
    }
    const width = u.bbox.width / devicePixelRatio;
    box.dataset.xMin = String(u.scales.x.min);
    box.dataset.xMax = String(u.scales.x.max);
    box.dataset.dataSpan = first === null || !width
      ? "0"
      : ((u.valToPos(last, "x") - u.valToPos(first, "x")) / width).toFixed(3);
    box.dataset.zoomed = zoom ? "true" : "false";
  }

  function plotSize() {
    const wide = window.matchMedia("(min-width: 760px)").matches;
    return { width: Math.max(box.clientWidth, 100), height: wide ? 300 : 230 };
  }

  function latest(column) {
    for (let i = column.length - 1; i >= 0; i--) if (column[i] !== null) return column[i];
    return null;
  }

  function create() {
    const muted = color("--muted");
    const grid = { stroke: color("--grid-line"), width: 1 };
    const font = "11px system-ui, sans-serif";
    // the values under the cursor; with the cursor off the chart, each series' latest
    const value = (format) => (u, v, series, idx) => {
      if (idx === null || idx === undefined) v = latest(u.data[series]);
      return v === null || v === undefined ? "—" : format(v);
    };
    plot = new uPlot(
      {
        ...plotSize(),
        pxAlign: 0,
        cursor: {
          drag: { x: true, y: false, setScale: true },
          points: { size: 7 },
        },
        legend: { live: true },
        scales: {
          x: { time: true },
          W: { range: () => yRange },
          // the charger's current on its own axis, over the chart's full height: while
          // the car charges from the sun, the meter sits near 0 W or below it
          A: { range: () => [0, ampMax * 1.05] },
        },
        series: [
          { label: "Time", value: value((t) => clock(t) + ":" + String(Math.floor(t % 60)).padStart(2, "0")) },
          {
            label: "Meter",
            scale: "W",
            width: 1.25,
            stroke: (u) => splitStyle(u, color("--import"), color("--export")),
            fill: (u) => splitStyle(u, color("--import-fill"), color("--export-fill")),
            points: { show: false },
            value: value(signed),
          },
          {
            label: "Sent to OpenEVSE",
            scale: "W",
            width: 2,
            stroke: color("--sent"),
            paths: uPlot.paths.stepped({ align: 1 }),
            points: { show: false },
            value: value(signed),
          },
          {
            label: "Charger current",
            scale: "A",
            width: 1.5,
            dash: [5, 3],
            stroke: color("--charger"),
            paths: uPlot.paths.stepped({ align: 1 }),
            points: { show: false },
            value: value((a) => a.toFixed(1) + " A"),
          },
        ],
        axes: [
          { stroke: muted, font, grid, ticks: grid, values: timeLabels },
          { scale: "W", stroke: muted, font, grid, ticks: grid, size: 60, values: (u, splits) => splits.map(kw) },
          {
            scale: "A",
            side: 1,
            stroke: color("--charger"),
            font,
            size: 40,
            grid: { show: false },
            ticks: { show: false },
            incrs: [2, 4, 8, 16],
            // labelled only while the charger reports a current
            values: (u, splits) => splits.map((a) => (a >= 0 && hasAmps ? a + " A" : "")),
          },
        ],
        // the wheel and Shift-drag zoom and pan; zoomed out past the data: the range again
        plugins: [
          window.p1evseChartNav(() => {
            zoom = null;
            draw();
          }),
        ],
        hooks: {
          drawClear: [shade],
          draw: [drawn],
          setScale: [
            (u, key) => {
              // a drag zooms in: kept, as the data goes on arriving, until a double-click
              const { min, max } = u.scales.x;
              const moved = !asked || Math.abs(min - asked[0]) > 1e-3 || Math.abs(max - asked[1]) > 1e-3;
              if (key === "x" && moved) zoom = [min, max];
            },
          ],
        },
      },
      data,
      box
    );
    // a double-click resets the zoom to the chosen range
    plot.root.addEventListener("dblclick", () => {
      zoom = null;
      draw();
    });
    // a finger on the chart shows the values under it, as a mouse does
    const over = plot.over;
    const touch = (event) => {
      const rect = over.getBoundingClientRect();
      const t = event.touches[0];
      if (t) plot.setCursor({ left: t.clientX - rect.left, top: t.clientY - rect.top });
    };
    over.addEventListener("touchstart", touch, { passive: true });
    over.addEventListener("touchmove", touch, { passive: true });
  }

  function draw() {
    data = columns(shownRows());
    scaleRanges();
    const counts = [0, 0, 0, 0];
    for (const row of rows) for (let i = 1; i < 4; i++) if (row[i] !== null) counts[i]++;
    box.dataset.meterPoints = String(counts[1]);
    box.dataset.sentPoints = String(counts[2]);
    box.dataset.chargerPoints = String(counts[3]);
    box.dataset.range = range;
    box.dataset.dayRows = String(dayRows.length);
    if (!plot) create();
    asked = zoom || windowRange();
    plot.batch(() => {
      plot.setData(data, true);
      plot.setScale("x", { min: asked[0], max: asked[1] });
    });
    const [start] = windowRange();
    const title = RANGE_TITLES[range];
    const clipped = data[0].length && !zoom && start > serverNow() - (RANGES[range] || 0) + 1 &&
      range !== "today";
    setText("chart-title", clipped ? title + " · since " + clock(start) : zoom ? title + " · zoomed" : title);
  }

  function choose(next) {
    range = next;
    zoom = null;
    for (const button of document.querySelectorAll("[data-range]")) {
      button.setAttribute("aria-pressed", button.dataset.range === range ? "true" : "false");
    }
    if (range === "today") fetchDay();
    draw();
  }

  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => choose(button.dataset.range));
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

  new ResizeObserver(() => {
    if (plot) plot.setSize(plotSize());
  }).observe(box);
  // the theme's colours are read when the chart is made
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    plot.destroy();
    plot = null;
    draw();
  });
  // ages count up and the chart's window slides even when nothing new arrives
  setInterval(render, 1000);
  setInterval(draw, 1000);
  setInterval(() => {
    if (range === "today") fetchDay();
  }, DAY_REFRESH_MS);
  connect();
})();
