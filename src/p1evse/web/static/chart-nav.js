// Zoom and pan along the time axis of a uPlot chart, for the status page and for
// `p1evse simulate --plot FILE.html` (which inlines this file): the wheel zooms in and
// out around the pointer, a drag with Shift held (or with the middle button) pans.
// uPlot's own drag still zooms to the part dragged across. `reset(u)` is called when
// the wheel zooms out past all the data: the caller goes back to its own range.
"use strict";

window.p1evseChartNav = function (reset) {
  const ZOOM_STEP = 0.75; // each wheel step shows this much of the span

  function attach(u) {
    const over = u.over;
    const pointer = (event) => event.clientX - over.getBoundingClientRect().left;

    over.addEventListener(
      "wheel",
      (event) => {
        const xs = u.data[0];
        if (xs.length < 2) return;
        event.preventDefault();
        const first = xs[0];
        const last = xs[xs.length - 1];
        const { min, max } = u.scales.x;
        const at = u.posToVal(pointer(event), "x");
        const factor = event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP;
        const from = at - (at - min) * factor;
        const to = at + (max - at) * factor;
        if (to - from >= last - first) {
          reset(u);
          return;
        }
        // kept within the data: zooming out near an edge moves away from it
        const shift = Math.max(0, first - from) - Math.max(0, to - last);
        u.setScale("x", { min: from + shift, max: to + shift });
      },
      { passive: false }
    );

    // in the capturing phase, so that it comes before uPlot's own drag to zoom
    over.addEventListener(
      "mousedown",
      (event) => {
        if (!event.shiftKey && event.button !== 1) return;
        event.preventDefault();
        event.stopImmediatePropagation();
        const { min, max } = u.scales.x;
        const perPixel = (max - min) / over.clientWidth;
        const start = event.clientX;
        const move = (e) => {
          const dt = (start - e.clientX) * perPixel;
          u.setScale("x", { min: min + dt, max: max + dt });
        };
        const up = () => {
          document.removeEventListener("mousemove", move);
          document.removeEventListener("mouseup", up);
        };
        document.addEventListener("mousemove", move);
        document.addEventListener("mouseup", up);
      },
      true
    );
  }

  return { hooks: { ready: [attach] } };
};
