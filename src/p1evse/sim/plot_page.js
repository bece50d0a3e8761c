// `p1evse simulate --plot day.html`: the day's figure (JSON in #plot-data) drawn by uPlot.
// Each series comes with its own times (downsampled apart); they are put on the union
// of all times here, a line's value between its points interpolated, a step's held,
// so the cursor reads every series wherever it is.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("plot-data").textContent);
  const chart = document.getElementById("chart");
  const dark = window.matchMedia("(prefers-color-scheme: dark)");

  function union(lists) {
    const all = new Set();
    for (const list of lists) for (const t of list) all.add(t);
    return Float64Array.from(all).sort();
  }

  // `series` (its own t, v; null a gap) at every time of `xs`
  function align(series, xs) {
    const t = series.t, v = series.v, out = new Array(xs.length).fill(null);
    const step = series.style === "step";
    let j = 0;
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i];
      while (j + 1 < t.length && t[j + 1] <= x) j++;
      if (x < t[0] || x > t[t.length - 1]) continue;
      if (t[j] === x || step) { out[i] = v[j]; continue; }
      const a = v[j], b = v[j + 1];
      if (a === null || b === null) continue;
      out[i] = a + (b - a) * (x - t[j]) / (t[j + 1] - t[j]);
    }
    return out;
  }

  // times come as steps in tenths of a second, exact as integers
  for (const s of data.series) {
    let t = 0;
    s.t = s.dt.map((step) => (t += step));
  }
  const times = union(data.series.map((s) => s.t));
  const aligned = [Array.from(times, (t) => data.x0 + t / 10)];
  for (const s of data.series) aligned.push(align(s, times));

  function extent(axis) {
    let lo = 0, hi = 0;
    data.series.forEach((s, k) => {
      if (s.axis !== axis) return;
      for (const v of aligned[k + 1]) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    });
    return [lo, hi];
  }
  const [kwLow, kwHigh] = extent("kW");
  const kwRange = uPlot.rangeNum(kwLow, Math.max(kwHigh, 0.5), 0.1, true);
  const ampsTop = Math.max(extent("A")[1], 6) * 1.15;
  // 0 A level with 0 kW
  const ampsRange = [kwRange[0] / kwRange[1] * ampsTop, ampsTop];

  function rgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }

  function value(axis) {
    return (u, v) => (v === null || v === undefined ? "–" : axis === "A"
      ? `${v.toFixed(1)} A` : `${v.toFixed(2)} kW`);
  }

  function seriesOptions(s) {
    const options = {
      label: s.label,
      stroke: s.colour,
      width: s.width,
      scale: s.axis,
      value: value(s.axis),
      points: { show: false },
    };
    if (s.style === "area") options.fill = rgba(s.colour, 0.2);
    if (s.style === "step") options.paths = uPlot.paths.stepped({ align: 1 });
    if (s.dash !== "solid") options.dash = s.dash === "dashed" ? [6, 4] : [2, 3];
    return options;
  }

  function px(n) { return n * uPlot.pxRatio; }

  // the day's own clock: the times are its wall clock as if in UTC
  const clock = uPlot.fmtDate("{HH}:{mm}");
  const clockSeconds = uPlot.fmtDate("{HH}:{mm}:{ss}");
  const stamp = uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}");
  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
  function clockTicks(u, splits) {
    const format = splits.length > 1 && splits[1] - splits[0] < 60 ? clockSeconds : clock;
    return splits.map((ts) => format(utc(ts)));
  }

  function shade(u) {
    const ctx = u.ctx, { top, height } = u.bbox;
    ctx.save();
    ctx.fillStyle = dark.matches ? "rgba(156, 163, 175, 0.18)" : "rgba(156, 163, 175, 0.25)";
    for (const span of data.shaded) {
      const a = u.valToPos(data.x0 + span.start, "x", true);
      const b = u.valToPos(data.x0 + span.end, "x", true);
      ctx.fillRect(a, top, Math.max(b - a, 1), height);
    }
    ctx.restore();
  }

  function marks(u) {
    const ctx = u.ctx, { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.font = `${px(12)}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    for (const span of data.shaded) {
      const a = u.valToPos(data.x0 + span.start, "x", true);
      const b = u.valToPos(data.x0 + span.end, "x", true);
      ctx.fillStyle = dark.matches ? "#e5e7eb" : "#374151";
      ctx.fillText(span.label, (a + b) / 2, top + height - px(6));
    }
    ctx.fillStyle = data.starts_colour;
    for (const start of data.starts) {
      const x = u.valToPos(data.x0 + start, "x", true), y = top + px(2);
      ctx.beginPath();
      ctx.moveTo(x - px(5), y);
      ctx.lineTo(x + px(5), y);
      ctx.lineTo(x, y + px(8));
      ctx.closePath();
      ctx.fill();
    }
    ctx.restore();
  }

  // when the chart was first drawn, ms after navigation began: for a test or a benchmark
  function drawn() {
    if (!document.body.dataset.drawn) document.body.dataset.drawn = performance.now().toFixed(1);
  }

  function size() {
    return {
      width: Math.max(chart.clientWidth, 300),
      height: Math.max(280, Math.min(560, window.innerHeight - 260)),
    };
  }

  function options() {
    const ink = dark.matches ? "#d1d5db" : "#374151";
    const grid = { stroke: dark.matches ? "#374151" : "#e5e7eb", width: 1 };
    return {
      ...size(),
      tzDate: utc,
      cursor: { drag: { x: true, y: false }, focus: { prox: 16 } },
      focus: { alpha: 0.35 },
      scales: {
        x: { time: true },
        kW: { range: () => kwRange },
        A: { range: () => ampsRange },
      },
      series: [
        { label: "time", value: (u, ts) => (ts === null ? "–" : stamp(utc(ts))) },
        ...data.series.map(seriesOptions),
      ],
      axes: [
        { stroke: ink, grid, ticks: grid, values: clockTicks },
        { scale: "kW", label: "power (kW)", stroke: ink, grid, ticks: grid },
        {
          scale: "A",
          side: 1,
          label: "pilot (A)",
          stroke: ink,
          grid: { show: false },
          ticks: { show: false },
          filter: (u, splits) => splits.map((v) => (v < 0 ? null : v)),
          show: data.series.some((s) => s.axis === "A"),
        },
      ],
      hooks: { drawClear: [shade], draw: [marks, drawn] },
      plugins: [p1evseChartNav((u) => u.setScale("x", { min: u.data[0][0], max: u.data[0][u.data[0].length - 1] }))],
    };
  }

  let plot = null;
  function draw() {
    if (plot) plot.destroy();
    plot = new uPlot(options(), aligned, chart);
    window.p1evsePlot = plot; // for a test or a console
  }
  draw();
  dark.addEventListener("change", draw);
  window.addEventListener("resize", () => plot.setSize(size()));
})();
